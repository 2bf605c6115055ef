"""Fixtures for the GUI tests: a styled app, the engine loaded once, a main window on a temp runs folder."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from iamnn_studio.gui.forms import memory_sizing as _memory_sizing  # noqa: E402 - after the skips

ENGINE_TIMEOUT_MS = 120_000


@pytest.fixture(scope="session")
def styled_app(qapp):
    import gc
    import importlib

    from iamnn_studio.gui import engine_loader
    from iamnn_studio.gui.garbage import freeze_long_lived
    from iamnn_studio.gui.style import apply_style

    apply_style(qapp)
    # What the app's first window freezes at engine ready (torch, the engine, the views' modules), frozen here before
    # any test's window: the teardown's full collection then walks only the tests' own objects (1 ms, not 250 ms),
    # and no test window is frozen in place (kept from the collector) by being the process's first.
    import iamnn_studio.gui.main_window  # noqa: F401
    for name in (*engine_loader.REQUIRED_MODULES, *engine_loader.OPTIONAL_MODULES):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    gc.collect()  # the engine tests' garbage in this process is freed, not frozen with the rest
    freeze_long_lived()
    return qapp


@pytest.fixture(autouse=True)
def garbage_collected_on_the_ui_thread(qapp):
    """As in the app: cyclic garbage is collected on the UI thread only (a collection that a worker thread ran
    freed Qt objects mid-paint: a segfault seen in a full run)."""
    from iamnn_studio.gui.garbage import UiThreadGarbageCollector

    collector = UiThreadGarbageCollector()
    yield
    collector.stop()
    collector.deleteLater()


@pytest.fixture
def window(qtbot, styled_app, tmp_runs):
    """A shown main window whose engine and views are loaded; any run is stopped afterwards."""
    from PySide6.QtCore import QSettings

    from iamnn_studio.gui.main_window import MainWindow

    QSettings().clear()  # every test starts from the defaults, not from the previous test's window
    win = MainWindow(runs_dir=str(tmp_runs))
    win.resize(1280, 800)
    win.show()
    qtbot.waitUntil(lambda: win.engine_ready, timeout=ENGINE_TIMEOUT_MS)
    yield win
    # Not qtbot.addWidget: pytest-qt would close the window before this teardown, with a run still going.
    stop_and_wait(qtbot, win.training)
    win.training.form.wait_for_background()
    win.close()
    win.deleteLater()
    qtbot.wait(10)


#: What the app runs as its sizing child, before any test puts a fake in its place.
REAL_SIZING_COMMAND = list(_memory_sizing.SIZING_COMMAND)


class _SessionSizing:
    """One real sizing child for a test process, its answers remembered by model: every test window's form would
    otherwise start its own (a torch import, 5-7 s of CPU on a slow machine) and its teardown wait for the answer."""

    def __init__(self, make_server) -> None:
        import threading

        self.server = make_server()
        self.answers: dict[str, object] = {}
        self.lock = threading.Lock()  # one form at a time talks to the child; a superseded request is not ours

    def answer(self, model: dict, timeout_s: float):
        import json

        key = json.dumps(model, sort_keys=True)
        with self.lock:
            if key not in self.answers:
                self.server.timeout_s = timeout_s
                self.answers[key] = self.server.answer(self.server.supersede(), model)
            return self.answers[key]


class _FormSizingServer:
    """What a form's ``MemorySizer`` asks (``SizingServer``'s interface), answered by the test process's one child for
    the engine's own blocks; a plugin's block (a folder of the test's own) gets a child of its own, as in the app."""

    def __init__(self, shared: _SessionSizing, server_class, timeout_s: float) -> None:
        import threading

        self.shared, self.server_class, self.timeout_s = shared, server_class, timeout_s
        self._own = None  # the form's own child, for a plugin's block
        self._latest, self._closed = 0, False
        self._lock = threading.Lock()

    def supersede(self) -> int:
        with self._lock:
            self._latest += 1
            return self._latest

    def warm_up(self) -> None:
        pass  # the shared child starts with the first shape

    def answer(self, request: int, model: dict):
        from iamnn_studio.gui.forms.memory_sizing import SizingCancelled, built_in_model

        self._still_wanted(request)
        if built_in_model(model):
            memory = self.shared.answer(model, self.timeout_s)
        else:
            with self._lock:
                if self._closed:
                    raise SizingCancelled()
                own = self._own = self._own or self.server_class(self.timeout_s)
            own.timeout_s = self.timeout_s
            memory = own.answer(own.supersede(), model)
        self._still_wanted(request)
        return memory

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._latest += 1
            own, self._own = self._own, None
        if own is not None:
            own.close()

    @property
    def pid(self) -> int | None:
        return self.shared.server.pid

    def _still_wanted(self, request: int) -> None:
        from iamnn_studio.gui.forms.memory_sizing import SizingCancelled

        with self._lock:
            if self._closed or request != self._latest:
                raise SizingCancelled()


@pytest.fixture(scope="session")
def session_sizing():
    from iamnn_studio.gui.forms.memory_sizing import SizingServer

    # the real child, whatever a test's fake command line (test_memory_sizing) is when this one (re)starts
    shared = _SessionSizing(lambda: SizingServer(command=list(REAL_SIZING_COMMAND)))
    yield shared
    shared.server.close()


@pytest.fixture(autouse=True)
def sizing_child_shared_and_started_on_demand(request, monkeypatch):
    """The Train form's sizing child starts when a shape needs it, not with the engine, and is one child for the
    whole test process (tests marked ``own_sizing_child``, of the child itself, get the app's child per form)."""
    from iamnn_studio.gui.forms import memory_sizing

    monkeypatch.setattr(memory_sizing, "START_WITH_ENGINE", False)
    if request.node.get_closest_marker("own_sizing_child") is None:
        shared, real = request.getfixturevalue("session_sizing"), memory_sizing.SizingServer
        monkeypatch.setattr(memory_sizing, "SizingServer", lambda timeout_s=memory_sizing.SIZING_TIMEOUT_S:
                            _FormSizingServer(shared, real, timeout_s))


@pytest.fixture
def fresh_sizing_cache(tmp_path, monkeypatch):
    """An empty training-memory cache file of the test's own (ask for it before ``window``): the session's
    shared one beside the settings may already hold the shapes a test means to see sized."""
    from iamnn_studio.gui.forms import memory_sizing

    path = tmp_path / "sizing" / memory_sizing.CACHE_FILE
    monkeypatch.setattr(memory_sizing, "cache_path", lambda: path)
    return path


def stop_and_wait(qtbot, training, timeout_ms: int = 60_000) -> None:
    if training.session is not None:
        training.stop_run()
        qtbot.waitUntil(lambda: training.session is None, timeout=timeout_ms)


def tiny_run_values(form, *, max_steps: int = 8, train_size: int = 256, name: str = "tiny") -> dict:
    """The form's values for a seconds-long run on the synthetic shapes."""
    values = form.values()
    values["name"] = name
    values["data"].update(name="synthetic", options={"train_size": train_size, "test_size": 64}, val_fraction=0.25)
    values["model"].update(width=4, iterations=[1, 2, 2, 1], depth=18)
    values.update(batch_size=32, epochs=1, max_steps=max_steps, device="cpu")
    return values


def checkpoint_of(model_values: dict, path, **model_changes):
    """A checkpoint (untrained) of the network ``model_values`` describe, ``model_changes`` applied."""
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.config import ModelConfig
    from iamnn_studio.engine.model import build_model

    config = ModelConfig.from_dict({**model_values, **model_changes}).validate()
    return save_checkpoint(path, build_model(config).eval(), classes=[f"c{i}" for i in range(config.num_classes)],
                           mean=[0.5], std=[0.25])


@pytest.fixture
def record_dialogs(monkeypatch):
    """QMessageBox.critical/warning/information record (title, text) instead of blocking."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[tuple[str, str, str]] = []

    def recorder(kind):
        def show(parent, title, text, *args, **kwargs):
            shown.append((kind, title, text))
            return QMessageBox.StandardButton.Ok

        return show

    for kind in ("critical", "warning", "information"):
        monkeypatch.setattr(QMessageBox, kind, staticmethod(recorder(kind)))
    return shown


@pytest.fixture
def file_manager(monkeypatch):
    """``file_manager(opens=False)``: QDesktopServices.openUrl answers ``opens`` (False where no file manager can be
    started) instead of starting one; returns the list of the folders it is asked to show."""
    from PySide6.QtGui import QDesktopServices

    asked: list[str] = []

    def answer(*, opens: bool) -> list[str]:
        def open_url(url) -> bool:
            asked.append(url.toLocalFile())
            return opens

        monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(open_url))
        return asked

    return answer
