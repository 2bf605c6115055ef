"""The app starts fast and whole: window first, engine in the background, settings remembered, drops routed."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage
from PySide6.QtWidgets import QApplication

from .conftest import ENGINE_TIMEOUT_MS, checkpoint_of

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


def test_window_shows_before_the_engine_and_then_loads_it(qtbot, styled_app, tmp_runs):
    from iamnn_studio.gui.engine_loader import EngineLoader
    from iamnn_studio.gui.main_window import MainWindow

    loader = EngineLoader()  # a fresh loader: this window must see the loading state
    window = MainWindow(runs_dir=str(tmp_runs), loader=loader)
    qtbot.addWidget(window)
    window.show()
    assert window.windowTitle() == "IamNN Studio"
    assert window.isVisible()
    assert window.engine_label.text() == "Loading engine…"
    assert not window.export_action.isEnabled()
    with qtbot.waitSignal(loader.ready, timeout=ENGINE_TIMEOUT_MS) as ready:
        pass
    assert ready.args[0].torch_version
    qtbot.waitUntil(lambda: window.engine_ready)
    assert window.engine_label.text().startswith("Engine ready")
    assert window.export_action.isEnabled() and window.open_checkpoint_action.isEnabled()
    for name in ("Use", "Study", "Runs"):
        assert window.view(name) is not None, window.hosts[name].message.text()


def test_a_window_that_is_never_painted_still_loads_its_engine(qtbot, styled_app, tmp_runs):
    from iamnn_studio.gui.engine_loader import EngineLoader
    from iamnn_studio.gui.main_window import MainWindow

    loader = EngineLoader()
    window = MainWindow(runs_dir=str(tmp_runs), loader=loader)  # never shown: no paint to wait for
    qtbot.addWidget(window)
    with qtbot.waitSignal(loader.ready, timeout=ENGINE_TIMEOUT_MS):
        pass
    qtbot.waitUntil(lambda: window.engine_ready)


def test_gui_modules_for_the_first_window_do_not_import_torch():
    """The start-up budget depends on it: torch loads only after the window is shown."""
    code = textwrap.dedent(
        """
        import json, sys
        import iamnn_studio.gui.app
        iamnn_studio.gui.app.import_pyqtgraph_without_cuda()
        assert sys.modules.get("cuda.bindings.runtime", "absent") is not None  # not left blocked
        import iamnn_studio.gui.main_window, iamnn_studio.gui.training_view
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")
                       or m.startswith("iamnn_studio.engine"))
        print(json.dumps(heavy))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_app_icon_is_found():
    from iamnn_studio.gui.app import icon_path

    path = icon_path()
    assert path is not None and Path(path).read_text(encoding="utf-8").lstrip().startswith("<svg")


def test_last_session_comes_back(qtbot, window, tmp_path):
    from iamnn_studio.gui.main_window import MainWindow

    window.training.form.model.width.setValue(24)
    window._select_tab("Runs")
    window.set_runs_dir(str(tmp_path / "elsewhere"))
    window.close()
    assert not window.isVisible()
    saved_geometry = window.geometry_b64
    assert saved_geometry

    again = MainWindow()
    qtbot.addWidget(again)
    again.show()
    qtbot.waitUntil(lambda: again.engine_ready, timeout=ENGINE_TIMEOUT_MS)
    assert again.tabs.tabText(again.tabs.currentIndex()) == "Runs"
    assert again.runs_dir == str(tmp_path / "elsewhere")
    assert again.training.form.values()["model"]["width"] == 24
    assert again.geometry_b64 == saved_geometry  # restoreGeometry got it (offscreen clamps sizes to its screen)
    again.training.form.wait_for_background()


@pytest.mark.parametrize("mode, threshold", [("fixed:2", None), ("adaptive", 0.5)])
def test_the_use_tabs_halting_comes_back_with_its_checkpoint(qtbot, window, tmp_path, mode, threshold):
    """QA: a threshold set to 0.500 before quitting came back as the checkpoint's own 0.900."""
    from iamnn_studio.gui.main_window import MainWindow

    from .test_inference_view import constant_halting_checkpoint

    checkpoint = str(constant_halting_checkpoint(tmp_path / "best.pt", threshold=0.9))
    use = window.view("Use")
    with qtbot.waitSignal(use.checkpoint_loaded, timeout=ENGINE_TIMEOUT_MS):
        window.open_checkpoint(checkpoint)
    use.apply_halting_setting(mode, threshold)
    assert use.halting_setting() == (mode, threshold)
    window.close()

    again = MainWindow()
    qtbot.addWidget(again)
    again.show()
    qtbot.waitUntil(lambda: again.engine_ready, timeout=ENGINE_TIMEOUT_MS)
    reopened = again.view("Use")
    qtbot.waitUntil(lambda: reopened.checkpoint_path() == checkpoint, timeout=ENGINE_TIMEOUT_MS)
    assert reopened.halting_setting() == (mode, threshold)
    again.training.form.wait_for_background()


def _drop(window, mime: QMimeData) -> None:
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


def _urls(*paths: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def test_dropped_images_go_to_the_use_tab(window, monkeypatch, tmp_path):
    received = []
    use = window.view("Use")
    monkeypatch.setattr(use, "add_image_files", lambda paths: received.append(paths))
    image = tmp_path / "shoe.png"
    QImage(8, 8, QImage.Format.Format_RGB32).save(str(image))
    _drop(window, _urls(image, tmp_path / "notes.txt", tmp_path))
    # every file that is not a run config goes to the Use tab, which says why one cannot be read
    assert received == [[str(image), str(tmp_path / "notes.txt"), str(tmp_path)]]
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Use"


def test_dropped_checkpoint_opens_in_use_and_dropped_config_fills_the_form(window, monkeypatch, tmp_path):
    opened = []
    monkeypatch.setattr(window.view("Use"), "load_checkpoint", lambda path: opened.append(path) or True)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not really")
    _drop(window, _urls(checkpoint))
    assert opened == [str(checkpoint)]
    lightning_style = tmp_path / "model.ckpt"  # the Use tab's and the File menu's suffixes, on the window too
    lightning_style.write_bytes(b"not really")
    _drop(window, _urls(lightning_style))
    assert opened[-1] == str(lightning_style)
    assert window.last_checkpoint != str(checkpoint)  # remembered only once it has loaded

    from iamnn_studio.engine.config import RunConfig

    config = RunConfig(name="dropped", epochs=3)
    config.model.width = 12
    path = tmp_path / "dropped.toml"
    config.save(path)
    _drop(window, _urls(path))
    values = window.training.form.values()
    assert (values["name"], values["epochs"], values["model"]["width"]) == ("dropped", 3, 12)
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Train"


def test_a_drop_of_a_config_and_a_checkpoint_says_both_in_the_status_bar(qtbot, window, tmp_path):
    """QA: a config, a checkpoint and images dropped at once said "Loaded x.toml", replaced at once by
    "Opened best.pt": the status bar says both. A checkpoint opened afterwards says only its own."""
    from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig

    config = tmp_path / "dropped.toml"
    RunConfig(name="dropped", data=DataConfig(name="synthetic")).save(config)
    model = ModelConfig(iterations=(1, 1, 1, 1), width=4, image_size=16, num_classes=2).to_dict()
    best, other = checkpoint_of(model, tmp_path / "best.pt"), checkpoint_of(model, tmp_path / "other.pt")
    image = tmp_path / "shoe.png"
    QImage(8, 8, QImage.Format.Format_RGB32).save(str(image))
    use = window.view("Use")
    with qtbot.waitSignal(use.checkpoint_loaded, timeout=30_000):
        _drop(window, _urls(config, best, image))
    message = window.statusBar().currentMessage()
    assert message.startswith("Loaded dropped.toml") and message.endswith(" · Opened best.pt"), message
    assert window.training.form.values()["name"] == "dropped"
    with qtbot.waitSignal(use.checkpoint_loaded, timeout=30_000):
        window.open_checkpoint(str(other))
    assert window.statusBar().currentMessage() == "Opened other.pt"


def test_pasted_image_goes_to_the_use_view(window, monkeypatch):
    received = []
    monkeypatch.setattr(window.view("Use"), "add_image", lambda image, name: received.append((image, name)))
    image = QImage(6, 6, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.red)
    QApplication.clipboard().setImage(image)
    window.paste()
    assert len(received) == 1 and received[0][0].width() == 6
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Use"


def test_engine_failure_is_said_in_the_window(qtbot, styled_app, tmp_runs):
    from iamnn_studio.gui.engine_loader import EngineLoader
    from iamnn_studio.gui.main_window import MainWindow

    class BrokenLoader(EngineLoader):
        def start(self):
            self.error = "ImportError: libtorch_cpu.so: cannot open shared object file"
            self._replay_later()

        def _replay_later(self):
            from PySide6.QtCore import QTimer

            QTimer.singleShot(0, self._replay)

    window = MainWindow(runs_dir=str(tmp_runs), loader=BrokenLoader())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: "failed" in window.engine_label.text())
    assert "libtorch_cpu.so" in window.engine_label.text()
    assert "libtorch_cpu.so" in window.training.form.loading.text()
    assert "failed to load" in window.hosts["Use"].message.text()
    assert not window.engine_ready and not window.training.header.start.isEnabled()


def test_no_display_gets_one_clear_sentence_instead_of_a_qt_abort():
    from iamnn_studio.gui.app import display_problem

    answers = lambda environ: True  # noqa: E731
    assert "no display" in display_problem(environ={}, platform="linux")
    assert display_problem(environ={"DISPLAY": ":0"}, platform="linux", reachable=answers) is None
    assert display_problem(environ={"WAYLAND_DISPLAY": "wayland-0"}, platform="linux", reachable=answers) is None
    assert display_problem(environ={"QT_QPA_PLATFORM": "offscreen"}, platform="linux") is None
    assert display_problem(environ={}, platform="darwin") is None


def test_a_display_left_over_from_an_ended_session_is_named_instead_of_a_qt_abort(tmp_path):
    import socket

    from iamnn_studio.gui.app import display_problem, display_reachable

    stale = {"DISPLAY": ":987", "WAYLAND_DISPLAY": "wayland-gone", "XDG_RUNTIME_DIR": str(tmp_path)}
    assert not display_reachable(stale)
    problem = display_problem(environ=stale, platform="linux")
    assert problem.startswith("the display in WAYLAND_DISPLAY=wayland-gone and DISPLAY=:987 does not answer")
    assert display_reachable({"DISPLAY": "remote-host:0"})  # not checked: assumed to answer
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:  # a live Wayland socket
        server.bind(str(tmp_path / "wayland-live"))
        server.listen(1)
        assert display_reachable({"WAYLAND_DISPLAY": "wayland-live", "XDG_RUNTIME_DIR": str(tmp_path)})


def test_an_explicit_xcb_or_wayland_platform_with_no_server_is_one_sentence_and_exit_2(tmp_path):
    """QT_QPA_PLATFORM=xcb used to skip the display check, and Qt aborted (exit 134, core dump)."""
    import os

    from iamnn_studio.gui.app import display_problem, display_reachable

    number = next(n for n in range(970, 1000) if not os.path.exists(f"/tmp/.X11-unix/X{n}")
                  and not display_reachable({"DISPLAY": f":{n}"}))
    env = {key: value for key, value in os.environ.items() if key not in ("WAYLAND_DISPLAY", "WAYLAND_SOCKET")}
    env.update(QT_QPA_PLATFORM="xcb", DISPLAY=f":{number}", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_RUNTIME_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "iamnn_studio"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line, no Qt messages
    assert done.stderr.startswith(f"error: the display in DISPLAY=:{number} does not answer")

    # Only the servers the platform names are checked; platforms without a display server are Qt's.
    stale = {"DISPLAY": f":{number}", "XDG_RUNTIME_DIR": str(tmp_path)}
    assert "QT_QPA_PLATFORM=xcb but DISPLAY is unset" in display_problem(
        environ={"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"}, platform="linux", reachable=lambda e: True)
    assert display_problem(environ={**stale, "QT_QPA_PLATFORM": "wayland"}, platform="linux").startswith(
        "the display in WAYLAND_DISPLAY (unset, so wayland-0) does not answer")
    assert display_problem(environ={**stale, "QT_QPA_PLATFORM": "xcb:foo=1"}, platform="linux").startswith(
        f"the display in DISPLAY=:{number} does not answer")
    assert display_problem(environ={**stale, "QT_QPA_PLATFORM": "xcb;offscreen"}, platform="linux") is None
    assert display_problem(environ={**stale, "QT_QPA_PLATFORM": "vnc"}, platform="linux") is None
    assert display_problem(environ={"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, platform="linux",
                           reachable=lambda e: True) is None


LDD_MISSING_TWO = """\
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f5ba0ca4000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f5ba0bba000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5b9f21e000)
\tlibxcb-icccm.so.4 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f5ba0d76000)
"""


def test_missing_x11_libraries_of_qt_are_named_with_their_packages_instead_of_a_qt_abort(tmp_path):
    """QA: `xvfb-run -a iamnn-studio` aborted Qt with a core dump (exit 134) where libxcb-icccm4 and
    libxcb-keysyms1 were not installed, Qt's message naming xcb-cursor, which was installed."""
    import os
    import socket

    from iamnn_studio.gui.app import display_reachable

    # a display that answers (a listening socket), and an `ldd` that finds two of the plugin's libraries missing
    number = next(n for n in range(940, 970) if not display_reachable({"DISPLAY": f":{n}"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ldd").write_text(f"#!/bin/sh\ncat <<'EOF'\n{LDD_MISSING_TWO}EOF\n")
    (bin_dir / "ldd").chmod(0o755)
    env = {key: value for key, value in os.environ.items()
           if key not in ("WAYLAND_DISPLAY", "WAYLAND_SOCKET", "QT_QPA_PLATFORM", "XDG_SESSION_TYPE")}
    env.update(DISPLAY=f":{number}", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_RUNTIME_DIR=str(tmp_path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(f"\0/tmp/.X11-unix/X{number}")
        server.listen(8)
        done = subprocess.run([sys.executable, "-m", "iamnn_studio"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no Qt messages
    line = done.stderr.strip()
    assert line.startswith("error: Qt's X11 platform plugin cannot load: libxcb-icccm.so.4 and libxcb-keysyms.so.1 "
                           "are missing"), line
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in line and "make desktop-deps" in line
    assert "cursor" not in line


def test_the_x11_library_check_never_stops_a_qt_that_would_start(tmp_path):
    from iamnn_studio.gui.app import missing_libraries, xcb_libraries_problem

    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    all_found = "\n".join(line for line in LDD_MISSING_TWO.splitlines() if "not found" not in line)
    x11 = {"DISPLAY": ":0"}

    def check(environ, output=LDD_MISSING_TWO, platform="linux"):
        asked = []

        def ldd(path):
            asked.append(path)
            return output

        return xcb_libraries_problem(environ, platform, plugin=plugin, ldd=ldd), asked

    assert check(x11)[0].startswith("Qt's X11 platform plugin cannot load")
    assert check({**x11, "QT_QPA_PLATFORM": "xcb"})[0] is not None
    assert check(x11, all_found) == (None, [plugin])
    assert check(x11, "") == (None, [plugin])  # ldd said nothing (not there, or failed): no alarm
    # where Qt may use another platform, the xcb plugin's libraries are not its business
    for environ in ({**x11, "QT_QPA_PLATFORM": "offscreen"}, {**x11, "QT_QPA_PLATFORM": "xcb;offscreen"},
                    {**x11, "QT_QPA_PLATFORM": "wayland"}, {**x11, "WAYLAND_DISPLAY": "wayland-0"},
                    {**x11, "XDG_SESSION_TYPE": "wayland"}, {**x11, "QT_QPA_PLATFORM_PLUGIN_PATH": str(tmp_path)}):
        assert check(environ) == (None, []), environ
    assert check(x11, platform="darwin") == (None, [])
    assert xcb_libraries_problem(x11, "linux", plugin=tmp_path / "absent.so", ldd=lambda path: LDD_MISSING_TWO) is None
    # a real ldd on a file that is no library answers without "not found"
    assert missing_libraries(plugin) == []


def test_the_x11_packages_named_are_those_make_desktop_deps_installs():
    import re

    from iamnn_studio.gui.app import XCB_PACKAGES

    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^XCB_LIBS := (.*?)(?<!\\)\n", makefile, re.S | re.M).group(1)
    assert sorted(XCB_PACKAGES.values()) == sorted(listed.replace("\\", " ").split())


def test_a_damaged_checkpoint_is_reported_in_the_status_bar_and_not_remembered(qtbot, window, tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"PK\x03\x04 cut short")
    with qtbot.waitSignal(window.view("Use").checkpoint_failed, timeout=30_000):
        window.open_checkpoint(str(damaged))
    message = window.statusBar().currentMessage()
    assert "damaged.pt" in message and not message.startswith("Opened")
    assert window.last_checkpoint != str(damaged)


def test_an_unexpected_error_in_a_slot_is_one_sentence_in_the_window_with_a_log(window, monkeypatch):
    import sys

    from iamnn_studio.gui.error_report import install_error_hook

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    hook = install_error_hook(window.show_unexpected_error)
    try:
        raise KeyError("no such column")
    except KeyError as error:
        hook(type(error), error, error.__traceback__)
    message = window.statusBar().currentMessage()
    assert message.startswith("Something went wrong (KeyError: 'no such column')")
    log = Path(message.rsplit("Details: ", 1)[1])
    assert "Traceback" in log.read_text() and "no such column" in log.read_text()
    log.unlink()


def test_file_export_starts_from_the_checkpoint_open_in_the_use_tab(qtbot, window, tmp_path, monkeypatch):
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.config import ModelConfig
    from iamnn_studio.engine.model import build_model

    model = build_model(ModelConfig(iterations=(1, 1, 1, 1), width=4, image_size=16, num_classes=2)).eval()
    opened = save_checkpoint(tmp_path / "opened.pt", model, classes=["a", "b"], mean=[0.5], std=[0.25])
    with qtbot.waitSignal(window.view("Use").checkpoint_loaded, timeout=30_000):
        window.open_checkpoint(str(opened))
    monkeypatch.setattr(window.training, "checkpoint_path", lambda: str(tmp_path / "the-run" / "best.pt"))  # a run
    window._select_tab("Use")
    assert window.export_source() == str(opened)  # what the user is looking at
    window._select_tab("Train")
    assert window.export_source() == str(tmp_path / "the-run" / "best.pt")


def test_train_longer_fills_the_form_with_the_runs_settings_and_weights(qtbot, window, tmp_path):
    from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig

    run = tmp_path / "runs-elsewhere" / "finished"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(b"weights")
    RunConfig(name="finished", data=DataConfig(name="synthetic"), model=ModelConfig(width=8), epochs=3,
              max_steps=40, lr=0.05).save(run / "config.toml")
    window._select_tab("Runs")
    window.train_from_run(str(run))
    config = window.training.form.config()
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Train"
    assert (config.init_from, config.name, config.model.width, config.lr) == (str(run), "finished-longer", 8, 0.05)
    assert config.max_steps is None  # the old cap would end the new run at once


def test_train_longer_says_it_checks_the_dataset_and_no_red_field_while_the_folder_check_runs(qtbot, window,
                                                                                            tmp_path):
    """QA: the status bar said "fix the fields marked in red, then Start" for 15 s with no field red, because the
    form is not valid until the folder check lands; half a second later the header said Ready."""
    from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig

    from iamnn_studio.engine.data import declared_input_shape

    run = tmp_path / "runs-elsewhere" / "finished"
    (run / "checkpoints").mkdir(parents=True)
    shape = declared_input_shape(DataConfig(name="synthetic"))
    checkpoint_of(ModelConfig(width=8).to_dict(), run / "checkpoints" / "best.pt", in_channels=shape.channels,
                  image_size=shape.size, num_classes=shape.classes)  # read in the background too
    folder = tmp_path / "data"  # a folder typed for the dataset: its verdict comes from a background check
    folder.mkdir()
    RunConfig(name="finished", data=DataConfig(name="synthetic", root=str(folder)), model=ModelConfig(width=8),
              epochs=3, lr=0.05).save(run / "config.toml")
    form = window.training.form
    window.train_from_run(str(run))
    message = window.statusBar().currentMessage()
    assert form.dataset.checking() and not form.errors  # what QA saw
    assert "marked in red" not in message and "checking its dataset and weights" in message
    qtbot.waitUntil(lambda: not form.dataset.checking() and form.is_valid, timeout=30_000)
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().endswith(
        "choose the epochs (and a smaller learning rate), then Start"), timeout=5_000)
    assert "finished" in window.statusBar().currentMessage()


def test_train_longers_next_step_leaves_the_status_bar_once_the_run_starts(qtbot, window, tmp_path, record_dialogs):
    """QA: "Settings of <run>, starting from its weights: choose the epochs…, then Start" stayed up to 15 s, after
    Start and even once that run had finished."""
    from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig
    from iamnn_studio.engine.data import declared_input_shape

    run = tmp_path / "runs-elsewhere" / "finished"
    (run / "checkpoints").mkdir(parents=True)
    data = DataConfig(name="synthetic", options={"train_size": 256, "test_size": 64}, val_fraction=0.25)
    model = ModelConfig(width=4, iterations=(1, 2, 2, 1))
    shape = declared_input_shape(data)  # the form reads the weights: they must fit
    checkpoint_of(model.to_dict(), run / "checkpoints" / "best.pt", in_channels=shape.channels, image_size=shape.size,
                  num_classes=shape.classes)
    RunConfig(name="finished", data=data, model=model, epochs=1, batch_size=32, lr=0.05,
              device="cpu").save(run / "config.toml")
    training, bar = window.training, window.statusBar()
    window.train_from_run(str(run))
    qtbot.waitUntil(lambda: training.form.is_valid and bar.currentMessage().endswith("then Start"), timeout=30_000)
    assert bar.currentMessage().startswith("Settings of finished, starting from its weights: ")
    with qtbot.waitSignal(training.run_ended, timeout=90_000) as ended:
        assert training.start_run()
        assert "Settings of finished" not in bar.currentMessage()  # its step is done
    assert ended.args != ["not_started"], record_dialogs
    assert "Settings of finished" not in bar.currentMessage()


def test_after_train_longer_the_header_says_what_start_will_do(qtbot, window, tmp_path):
    """QA: after "Train longer…" the header still read "Ready to train · Choose a dataset and a model"; only a
    15-second status-bar message said the run would start from the other run's weights."""
    from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig
    from iamnn_studio.engine.data import declared_input_shape

    run = tmp_path / "runs-elsewhere" / "finished"
    (run / "checkpoints").mkdir(parents=True)
    shape = declared_input_shape(DataConfig(name="synthetic"))  # the form reads the weights: they must fit
    checkpoint_of(ModelConfig(width=8).to_dict(), run / "checkpoints" / "best.pt", in_channels=shape.channels,
                  image_size=shape.size, num_classes=shape.classes)
    RunConfig(name="finished", data=DataConfig(name="synthetic"), model=ModelConfig(width=8), epochs=3,
              lr=0.05).save(run / "config.toml")
    form, header = window.training.form, window.training.header
    qtbot.waitUntil(lambda: form.is_valid, timeout=30_000)
    assert header.title.text() == "Ready to train"
    window.train_from_run(str(run))
    qtbot.waitUntil(lambda: form.is_valid and header.title.text() == "Ready to train longer", timeout=30_000)
    assert "finished's weights" in header.subtitle.text() and "epochs" in header.subtitle.text()
    form.training.epochs.setValue(5)  # the step the header asks for: still from those weights
    qtbot.waitUntil(lambda: form.values()["epochs"] == 5, timeout=5_000)
    assert header.title.text() == "Ready to train longer"
    checkpoint = str(run / "checkpoints" / "best.pt")
    form.training.init_from.setText(checkpoint)  # the user types one checkpoint of it
    form.training.init_from.textEdited.emit(checkpoint)
    qtbot.waitUntil(lambda: "finished's best.pt" in header.subtitle.text(), timeout=5_000)
    form.training.init_from.clear()  # new weights after all: an ordinary run again
    form.training.init_from.textEdited.emit("")
    qtbot.waitUntil(lambda: header.title.text() == "Ready to train", timeout=5_000)
    assert "finished" not in header.subtitle.text()
