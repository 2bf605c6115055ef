"""The export dialog: formats from the engine's registry, a background export, overwrite and error handling."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
torch = pytest.importorskip("torch")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

from iamnn_studio.engine.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from iamnn_studio.engine.config import ModelConfig  # noqa: E402
from iamnn_studio.engine.model import build_model  # noqa: E402
from iamnn_studio.gui.export_dialog import COPY, ExportDialog  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT = 120_000  # an ONNX export traces the whole graph


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(iterations=(1, 2, 1, 1), width=4, image_size=16, num_classes=3))
    path = tmp_path_factory.mktemp("run") / "checkpoints" / "best.pt"
    path.parent.mkdir()
    return save_checkpoint(path, model.eval(), classes=["a", "b", "c"], mean=[0.5], std=[0.25])


@pytest.fixture
def dialog(qtbot, checkpoint):
    widget = ExportDialog(str(checkpoint))
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)  # the format list comes from the registry
    return widget


def export(qtbot, dialog, fmt: str, target) -> None:
    assert dialog.set_format(fmt)
    dialog.output_edit.setText(str(target))
    with qtbot.waitSignal(dialog.exported, timeout=TIMEOUT):
        assert dialog.start_export()


@pytest.fixture
def in_process_exports(monkeypatch):
    """The export child's work done in this process, for the tests of what the dialog asks for and says rather
    than of the child (a child imports torch anew: seconds each). The same CLI command with the request's own
    arguments, its JSON answer read by the same parser, reported later in the event loop as a child's is; the
    tests of the child itself (window kept live, cancel, crash, its environment) run a real one."""
    import contextlib
    import io

    from PySide6.QtCore import QProcess, QTimer

    from iamnn_studio.cli import main
    from iamnn_studio.gui.export_process import EXPORT_COMMAND, ExportProcess, error_line, parse_outcome

    def start(self, request):
        assert not self.is_running()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*EXPORT_COMMAND[3:], *request.arguments()])  # the child's argv after "-m iamnn_studio"
        self._process = self._request = request  # running until the answer is delivered

        def answer():
            self._process = None
            if code == 0:
                self.succeeded.emit(parse_outcome(out.getvalue()))
            else:
                self.failed.emit(error_line(err.getvalue(), code, QProcess.ExitStatus.NormalExit))

        QTimer.singleShot(0, answer)

    monkeypatch.setattr(ExportProcess, "start", start)


def test_formats_come_from_the_registry_and_the_output_is_named_after_the_checkpoint(dialog, checkpoint):
    assert dialog.formats()[0] == COPY and {"onnx", "torchscript"} <= set(dialog.formats())
    assert dialog.set_format("onnx")
    suggested = dialog.output_edit.text()
    assert suggested.endswith(".onnx") and checkpoint.parent.parent.name in suggested


def test_exports_in_the_background_and_reports_the_path_and_what_a_never_calibrated_model_means(
        qtbot, dialog, tmp_path):
    """A built-in format exported by a real child, its JSON answer read (TorchScript: an ONNX export took 3 times
    as long; the ONNX exporter's silence on stdout is test_export's). The fixture's halting head was never
    fitted, so the message says what the export's iterations mean."""
    target = tmp_path / "model.pt"
    export(qtbot, dialog, "torchscript", target)
    assert target.is_file() and target.stat().st_size > 0
    assert dialog.last_path == str(target) and str(target) in dialog.result.text()
    assert dialog.reveal_button.isVisibleTo(dialog)
    assert "never calibrated" in dialog.result.text() and dialog.result.kind == "warning"


def test_a_file_suffix_that_does_not_suit_the_format_is_noted_in_the_message(qtbot, in_process_exports, dialog,
                                                                           tmp_path):
    """TorchScript: a quicker format than ONNX, and the note is the engine's for either (the format's own words
    are test_export's)."""
    from iamnn_studio.engine.export import suffix_mismatch

    target = tmp_path / "model.ts.txt"
    export(qtbot, dialog, "torchscript", target)
    assert target.is_file()  # written all the same, as the CLI does with its warning
    assert f"Note: {suffix_mismatch('torchscript', target)}." in dialog.result.text()
    assert "ends in .txt, not .pt" in dialog.result.text() and dialog.result.kind == "warning"
    export(qtbot, dialog, "torchscript", tmp_path / "model.pt")  # a suffix that suits
    assert (tmp_path / "model.pt").is_file() and "ends in" not in dialog.result.text()


def test_an_existing_file_of_another_suffix_is_never_replaced_as_the_cli_refuses(qtbot, dialog, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: asked.append(args) or QMessageBox.StandardButton.Yes)
    settings = tmp_path / "run.toml"
    settings.write_text("keep me")  # QA: "Replace it?" then the run settings became an ONNX model
    assert dialog.set_format("onnx")
    dialog.output_edit.setText(str(settings))
    assert dialog.start_export() is False
    assert asked == [] and settings.read_text() == "keep me"
    assert dialog.last_error == "run.toml exists and its suffix is not that of onnx files: not replaced " \
                                "(remove it first, or choose another name)."


def test_a_checkpoint_copy_loads_like_the_original(qtbot, dialog, checkpoint, tmp_path):
    target = tmp_path / "copy.pt"
    export(qtbot, dialog, COPY, target)
    assert load_checkpoint(target).classes == ["a", "b", "c"]


def test_an_unwritable_path_shows_an_error(qtbot, dialog, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file, not a folder")
    assert dialog.set_format("onnx")
    dialog.output_edit.setText(str(blocker / "model.onnx"))
    assert dialog.start_export() is False  # at once, before an export that would fail to write
    assert dialog.last_error == f"Cannot write {blocker / 'model.onnx'}: {blocker} is a file, not a folder."
    assert dialog.result.kind == "error" and "\n" not in dialog.last_error
    assert dialog.export_button.isEnabled()

    dialog.output_edit.setText(str(tmp_path / "elsewhere.onnx"))  # the message spoke of the old path
    assert dialog.result.isHidden() and dialog.last_error is None


def unwritable_folder(tmp_path):
    """A folder that takes no new file, even for root (whom permissions do not stop): /sys, whose files only the
    kernel makes; for another user, a folder without write permission. None where neither is there."""
    import os

    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder
    return Path("/sys") if Path("/sys").is_dir() and not _can_create_in(Path("/sys")) else None


def _can_create_in(folder) -> bool:
    try:
        (folder / "iamnn-write-test").touch()
    except OSError:
        return False
    (folder / "iamnn-write-test").unlink()
    return True


@pytest.mark.parametrize("fmt", ["onnx", COPY])
def test_a_folder_that_takes_no_file_is_refused_before_the_export_starts(dialog, tmp_path, fmt):
    """QA: export to a read-only mount ran the whole export (4-5 s) and only then said "Read-only file system"."""
    folder = unwritable_folder(tmp_path)
    if folder is None:
        pytest.skip("no folder here refuses new files")
    assert dialog.set_format(fmt)
    for target in (folder / "model.onnx", folder / "new" / "sub" / "model.onnx"):  # in it, or a folder to make in it
        dialog.output_edit.setText(str(target))
        assert dialog.start_export() is False and not dialog.is_busy()
        assert dialog.last_error.startswith(f"Cannot write in {folder}: ") and "Choose another folder" in \
            dialog.last_error, dialog.last_error
        assert dialog.result.kind == "error" and dialog.export_button.isEnabled()
        assert not target.exists()


def test_an_existing_file_is_replaced_only_after_confirmation(qtbot, dialog, tmp_path, monkeypatch):
    target = tmp_path / "taken.pt"
    target.write_bytes(b"keep me")
    answers = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **kwargs: answers.append(args) or QMessageBox.StandardButton.No)
    assert dialog.set_format(COPY)
    dialog.output_edit.setText(str(target))
    dialog.result.show_error("an earlier export's message")
    assert dialog.start_export() is False
    assert len(answers) == 1 and target.read_bytes() == b"keep me"
    assert dialog.result.isHidden()  # declining leaves no message of an earlier export behind

    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(dialog.exported, timeout=TIMEOUT):
        assert dialog.start_export()
    assert target.read_bytes() != b"keep me"


def test_a_missing_checkpoint_is_refused_at_once(dialog, tmp_path):
    dialog.checkpoint_edit.setText(str(tmp_path / "missing.pt"))
    dialog.output_edit.setText(str(tmp_path / "out.onnx"))
    assert dialog.start_export() is False
    assert "No checkpoint file" in dialog.last_error


def test_a_runs_own_files_and_devices_are_refused_before_any_question(dialog, checkpoint, tmp_path, monkeypatch):
    run = checkpoint.parent.parent
    (run / "config.toml").write_text("name = 'run'\n")
    (run / "status.json").write_text("{}")
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: pytest.fail("asked to replace"))
    for fmt, target in ((COPY, run / "config.toml"), ("onnx", run / "status.json"), ("onnx", "/dev/null")):
        assert dialog.set_format(fmt)
        dialog.output_edit.setText(str(target))
        assert dialog.start_export() is False
        assert dialog.last_error.startswith(f"Cannot write {target}: it is ")
    assert (run / "config.toml").read_text() == "name = 'run'\n"


def type_output(dialog, text: str) -> None:
    dialog.output_edit.setText(text)
    dialog.output_edit.textEdited.emit(text)  # as a user's typing does


def test_a_typed_output_keeps_its_folder_and_name_when_the_format_changes(dialog, checkpoint, tmp_path):
    run = checkpoint.parent.parent.name
    assert dialog.set_format("onnx")
    type_output(dialog, str(tmp_path) + "/")  # a folder: the suggested file name goes inside it
    assert dialog.set_format("torchscript")
    assert dialog.output_edit.text() == str(tmp_path / f"{run}-best.torchscript.pt")  # was: <tmp_path>.pt beside it
    assert dialog.set_format("onnx")
    assert dialog.output_edit.text() == str(tmp_path / f"{run}-best.onnx")  # not "-best.torchscript.onnx"
    type_output(dialog, ".")
    assert dialog.set_format("torchscript")  # was: ValueError from Path('.').with_suffix
    assert dialog.output_edit.text() == f"{run}-best.torchscript.pt"  # in the current folder
    type_output(dialog, str(tmp_path / "model.v2"))
    assert dialog.set_format("onnx")
    assert dialog.output_edit.text() == str(tmp_path / "model.v2.onnx")  # the user's ".v2" is part of the name
    assert dialog.set_format("torchscript")
    assert dialog.output_edit.text() == str(tmp_path / "model.v2.pt")  # a format's own suffix is swapped


def test_opened_as_the_app_does_export_and_close_are_enabled_once_the_formats_load(qtbot, checkpoint):
    from PySide6.QtWidgets import QMainWindow

    window = QMainWindow()
    qtbot.addWidget(window)
    widget = ExportDialog(str(checkpoint), window)  # as File > Export does: nothing typed, nothing chosen
    widget.show()
    assert widget.close_button.isEnabled()  # the format list is read in the background: Close need not wait
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)
    qtbot.waitUntil(widget.export_button.isEnabled, timeout=5_000)  # was: disabled for good, only Esc closed it
    assert widget.close_button.isEnabled()
    assert "onnx" in widget.formats() and widget.output_edit.text()
    widget.close()


@pytest.mark.parametrize("name", ["x" * 300 + ".ts", "a\0b.onnx"], ids=["too-long", "nul-byte"])
def test_a_file_name_the_system_refuses_is_the_dialogs_own_message(dialog, tmp_path, name):
    assert dialog.set_format("torchscript")
    type_output(dialog, str(tmp_path / name))
    assert dialog.set_format("onnx")  # was: OSError / ValueError from _suggest_output
    dialog.output_edit.setText(str(tmp_path / name))
    assert dialog.start_export() is False  # was: OSError [Errno 36] / ValueError: embedded null byte
    assert dialog.last_error.startswith("Cannot use this file name: ") and dialog.result.kind == "error"
    assert "\n" not in dialog.last_error and len(dialog.last_error) < 200  # not the 300-character name
    assert not dialog.is_busy() and dialog.export_button.isEnabled()


def test_a_checkpoint_path_the_system_refuses_is_the_dialogs_own_message(dialog, tmp_path):
    dialog.checkpoint_edit.setText(str(tmp_path / ("x" * 300 + ".pt")))
    dialog.output_edit.setText(str(tmp_path / "out.onnx"))
    assert dialog.start_export() is False
    assert dialog.last_error.startswith("Cannot use this checkpoint path: ")


def test_a_blank_file_name_asks_for_one(dialog):
    dialog.output_edit.setText("   ")
    assert not dialog.export_button.isEnabled()
    assert dialog.start_export() is False
    assert dialog.last_error == "Give a file name to save as."  # was: ". is a folder: give a file name."


def test_a_relative_file_name_goes_beside_the_suggestion_and_the_message_says_where(qtbot, dialog, checkpoint,
                                                                                   tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the app's working folder is nothing the user sees
    assert dialog.set_format(COPY)
    folder = checkpoint.parent.parent  # where the dialog suggests writing
    assert dialog.output_edit.text().startswith(str(folder))
    export(qtbot, dialog, COPY, "relative-copy.pt")
    expected = folder / "relative-copy.pt"
    assert expected.is_file() and not (tmp_path / "relative-copy.pt").exists()
    assert dialog.last_path == str(expected)
    assert dialog.result.text().startswith(f"Exported to {expected}.")  # was: "Exported to relative-copy.pt."
    expected.unlink()


def test_a_missing_folder_is_created_and_the_message_says_so(qtbot, dialog, tmp_path):
    target = tmp_path / "new" / "sub" / "copy.pt"
    export(qtbot, dialog, COPY, target)
    assert target.is_file()
    assert dialog.result.text() == f"Exported to {target} (created the folder {target.parent})."
    export(qtbot, dialog, COPY, tmp_path / "new" / "sub" / "again.pt")
    assert "created" not in dialog.result.text()


def test_a_run_folder_exports_its_checkpoint_as_the_cli_does(qtbot, dialog, checkpoint, tmp_path):
    run = checkpoint.parent.parent
    dialog.checkpoint_edit.setText(str(run))
    assert dialog.set_format(COPY)
    assert dialog.output_edit.text() == str(run / f"{run.name}-best-copy.pt")  # named as for its best.pt
    export(qtbot, dialog, COPY, tmp_path / "from-run.pt")  # was: "No checkpoint file at .../run"
    assert load_checkpoint(tmp_path / "from-run.pt").classes == ["a", "b", "c"]

    empty = tmp_path / "empty-run"
    empty.mkdir()
    dialog.checkpoint_edit.setText(str(empty))
    dialog.output_edit.setText(str(tmp_path / "none.pt"))
    assert dialog.start_export() is False
    assert "folder without a checkpoint" in dialog.last_error


def test_browse_opens_where_export_would_write_a_relative_name_with_the_name_chosen(qtbot, dialog, checkpoint,
                                                                                   tmp_path, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.chdir(tmp_path)  # the app's working folder is nothing the user sees
    opened: list[str] = []
    chosen = tmp_path / "chosen" / "picked.onnx"

    def save_file_name(parent, caption, start, *args, **kwargs):
        opened.append(start)
        return str(chosen), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_file_name))
    assert dialog.set_format("onnx")
    run = checkpoint.parent.parent  # the folder of the suggested output
    type_output(dialog, "relative.onnx")
    qtbot.mouseClick(dialog.browse_output, Qt.MouseButton.LeftButton)
    assert opened == [str(run / "relative.onnx")]  # was: "relative.onnx", i.e. the app's working folder
    assert dialog.output_edit.text() == str(chosen)

    type_output(dialog, "../sub/../beside.onnx")
    qtbot.mouseClick(dialog.browse_output, Qt.MouseButton.LeftButton)
    assert opened[-1] == str(run.parent / "beside.onnx")  # where Export writes it: one rule for both
    assert dialog._checked_paths("../sub/../beside.onnx")[1] == run.parent / "beside.onnx"


# --------------------------------------------------------------------------- the Use tab's halting
def _use_tab_dialog(qtbot, checkpoint, mode="adaptive", threshold=0.5):
    from iamnn_studio.gui.export_dialog import UseTabHalting

    widget = ExportDialog(str(checkpoint), use_tab=UseTabHalting(str(checkpoint), mode, threshold))
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)  # formats, and the checkpoint's own halting
    assert widget.set_format("onnx")  # the dialog opens on a checkpoint copy, which carries the file as saved
    return widget


def _items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_the_use_tabs_threshold_is_offered_first_and_reaches_the_exported_file(qtbot, in_process_exports, tmp_path):
    import json
    import warnings

    from iamnn_studio.engine.export import read_torchscript_metadata
    from tiny_models import save_varied_checkpoint, varied_images

    checkpoint = tmp_path / "run" / "checkpoints" / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    model = save_varied_checkpoint(checkpoint)  # its own threshold: 0.7
    widget = _use_tab_dialog(qtbot, checkpoint, threshold=0.95)
    assert widget.halting_combo.isVisibleTo(widget) and widget.halting_combo.isEnabled()
    assert _items(widget.halting_combo) == ["As set on the Use tab: adaptive, threshold 0.950",
                                            "The checkpoint's own: adaptive, threshold 0.700"]
    assert widget.halting_override() == ("adaptive", 0.95)  # pre-selected: what the user chose last

    export(qtbot, widget, "torchscript", tmp_path / "use-tab.ts")
    meta = read_torchscript_metadata(tmp_path / "use-tab.ts")
    assert meta["halting"] == "adaptive, threshold 0.950" and json.loads(meta["model_config"])["threshold"] == 0.95
    assert f"Halting: {meta['halting']}, as set on the Use tab." in widget.result.text()  # the file's own words
    images = varied_images(30, seed=1).images.float() / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        exported = torch.jit.load(str(tmp_path / "use-tab.ts"))
    model.set_threshold(0.95)
    with torch.no_grad():
        want = model((images - 0.5) / 0.25).iterations
    assert torch.equal(exported(images)[1], want)  # the graph halts at the Use tab's threshold

    widget.halting_combo.setCurrentIndex(1)  # keep the checkpoint's own
    assert widget.halting_override() is None
    export(qtbot, widget, "torchscript", tmp_path / "own.ts")
    assert "Halting:" not in widget.result.text()
    assert read_torchscript_metadata(tmp_path / "own.ts")["halting"] == "adaptive, threshold 0.700"


def test_the_use_tabs_fixed_mode_is_offered_in_words(qtbot, checkpoint):
    widget = _use_tab_dialog(qtbot, checkpoint, mode="fixed:2", threshold=None)
    assert _items(widget.halting_combo) == ["As set on the Use tab: fixed:2 (iterations 1-2-1-1)",  # caps 1-2-1-1
                                            "The checkpoint's own: adaptive, threshold 0.990"]
    assert widget.halting_override() == ("fixed:2", None)


def test_a_fixed_mode_above_a_blocks_cap_says_what_really_runs(qtbot, in_process_exports, tmp_path):
    """A checkpoint saved as fixed:99 on caps 1-2-3-2 runs 1-2-3-2: the dialog said "fixed, 99 iterations per
    block". Its words are now the engine's, those of the exported file's metadata and the CLI."""
    from iamnn_studio.engine.export import read_torchscript_metadata
    from tiny_models import save_varied_checkpoint, tiny_config

    checkpoint = tmp_path / "run" / "checkpoints" / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    save_varied_checkpoint(checkpoint, tiny_config(mode="fixed:99"))  # caps 1-2-3-2
    widget = _use_tab_dialog(qtbot, checkpoint, mode="fixed:3", threshold=None)
    assert _items(widget.halting_combo) == ["As set on the Use tab: fixed:3 (iterations 1-2-3-2)",
                                            "The checkpoint's own: fixed:99 (iterations 1-2-3-2)"]
    widget.halting_combo.setCurrentIndex(1)  # the checkpoint's own
    export(qtbot, widget, "torchscript", tmp_path / "own.ts")
    assert read_torchscript_metadata(tmp_path / "own.ts")["halting"] == "fixed:99 (iterations 1-2-3-2)"


def test_the_same_setting_as_the_checkpoints_is_one_line_and_no_override(qtbot, checkpoint):
    widget = _use_tab_dialog(qtbot, checkpoint, threshold=0.99)  # the fixture's own: 1 - eps
    assert _items(widget.halting_combo) == ["The checkpoint's own, as on the Use tab: adaptive, threshold 0.990"]
    assert not widget.halting_combo.isEnabled() and widget.halting_override() is None


def test_a_model_trained_without_calibration_is_offered_at_full_depth_as_the_use_tab_runs_it(qtbot, tmp_path):
    """QA: the dialog called a --no-calibrate checkpoint's own halting "adaptive, threshold 0.990" beside the Use
    tab's max, where the export (as evaluate and predict) runs it at full depth."""
    from iamnn_studio.engine.config import DataConfig, RunConfig
    from iamnn_studio.gui.export_dialog import LEFT_UNFITTED_NOTE
    from tiny_models import save_varied_checkpoint, tiny_config

    checkpoint = tmp_path / "run" / "checkpoints" / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    config = tiny_config(threshold=None)  # caps 1-2-3-2
    save_varied_checkpoint(checkpoint, config, run_config=RunConfig(data=DataConfig(name="synthetic"), model=config,
                                                                    calibrate_halting=False))
    widget = _use_tab_dialog(qtbot, checkpoint, mode="max", threshold=None)  # the Use tab runs it so
    assert _items(widget.halting_combo) == ["The checkpoint's own, as on the Use tab: max (iterations 1-2-3-2)"]
    assert widget.halting_override() is None

    plain = ExportDialog(str(checkpoint))  # not open on the Use tab: the note says what its own is
    qtbot.addWidget(plain)
    qtbot.waitUntil(lambda: not plain.is_busy(), timeout=TIMEOUT)
    assert plain.set_format("onnx")  # it opens on a checkpoint copy
    qtbot.waitUntil(lambda: plain.format_note.text() == LEFT_UNFITTED_NOTE, timeout=TIMEOUT)


def test_another_checkpoint_or_a_copy_is_exported_with_its_own_halting(qtbot, checkpoint, tmp_path):
    widget = _use_tab_dialog(qtbot, checkpoint)
    assert widget.halting_override() == ("adaptive", 0.5)
    assert widget.set_format(COPY)  # a copy is the file as saved
    assert not widget.halting_combo.isVisibleTo(widget) and widget.halting_override() is None
    assert "keeps the checkpoint's own halting setting" in widget.format_note.text()
    assert widget.set_format("onnx")
    assert widget.halting_combo.isVisibleTo(widget) and "chosen above" in widget.format_note.text()

    widget.checkpoint_edit.setText(str(tmp_path / "other.pt"))  # not the one open on the Use tab
    assert not widget.halting_combo.isVisibleTo(widget) and widget.halting_override() is None
    assert "its saved mode and threshold" in widget.format_note.text()
    widget.checkpoint_edit.setText(str(checkpoint.parent.parent))  # its run folder stands for the same file
    assert widget.halting_combo.isVisibleTo(widget) and widget.halting_override() == ("adaptive", 0.5)


def test_typing_a_checkpoint_path_looks_at_it_once_the_typing_pauses(qtbot, checkpoint, tmp_path, monkeypatch):
    """Each key looked at the path about three times on the UI thread (a slow network share froze the typing);
    now nothing while typing, then one look at the final path."""
    import os

    from PySide6.QtTest import QTest

    from iamnn_studio.gui import export_dialog

    widget = _use_tab_dialog(qtbot, checkpoint)
    assert widget.halting_combo.isVisibleTo(widget)
    widget.checkpoint_edit.setText(str(tmp_path) + os.sep)  # set, not typed: looked at at once
    # and its own halting read for the note, in the background: done before the file system calls are counted
    qtbot.waitUntil(lambda: not widget._note_runner.is_busy(), timeout=TIMEOUT)
    widget.checkpoint_edit.setFocus()
    stats, named = [], []
    for name in ("stat", "lstat"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *args, _real=real, **kwargs: stats.append(args[0]) or _real(*args, **kwargs))
    real_named = export_dialog._named_checkpoint
    monkeypatch.setattr(export_dialog, "_named_checkpoint", lambda path: named.append(str(path)) or real_named(path))

    QTest.keyClicks(widget.checkpoint_edit, "other.pt")  # eight keys, as a user types them
    assert widget.checkpoint_edit.text() == str(tmp_path / "other.pt")
    assert stats == [] and named == [], (stats, named)  # was: dozens of file system calls, about 3 per key
    qtbot.waitUntil(lambda: widget.output_edit.text() == str(tmp_path / "other.onnx"), timeout=5_000)
    assert set(named) == {str(tmp_path / "other.pt")}  # only the final path, in one look
    assert not widget.halting_combo.isVisibleTo(widget)  # not the checkpoint open on the Use tab

    QTest.keyClicks(widget.checkpoint_edit, "x")  # Export at once after a key: it looks at the final path itself
    widget.output_edit.setText(str(tmp_path / "out.onnx"))
    assert widget.start_export() is False
    assert widget.last_error == f"No checkpoint file at {tmp_path / 'other.ptx'}."


# --------------------------------------------------------------------------- widths follow the font
def test_widths_grow_with_the_font(qtbot, styled_app, checkpoint):
    """620 and 120 pixels were fixed: under a 14-pt application font the paths were cut off."""
    from PySide6.QtGui import QFont

    from iamnn_studio.gui.export_dialog import BUSY_WIDTH_CHARS, DIALOG_WIDTH_CHARS

    original = QFont(styled_app.font())
    try:
        widths = {}
        for points in (10, 14):
            font = QFont(original)
            font.setPointSizeF(points)
            styled_app.setFont(font)
            widget = ExportDialog(str(checkpoint))
            qtbot.addWidget(widget)
            chars = widget.fontMetrics().averageCharWidth()
            assert widget.minimumWidth() == DIALOG_WIDTH_CHARS * chars
            assert widget.busy.width() == BUSY_WIDTH_CHARS * chars
            widths[points] = widget.minimumWidth()
            qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)
        assert widths[14] > widths[10]
        larger = QFont(original)
        larger.setPointSizeF(18)
        widget.setFont(larger)  # a font change after opening resizes too
        assert widget.minimumWidth() == DIALOG_WIDTH_CHARS * widget.fontMetrics().averageCharWidth() > widths[14]
    finally:
        styled_app.setFont(original)


def test_the_format_note_is_as_tall_as_its_lines(qtbot, styled_app, dialog):
    """The form gave the wrapped note the height QLabel guesses for a narrower width: lines of empty room."""
    dialog.show()
    for fmt in ("onnx", COPY):
        assert dialog.set_format(fmt)
        qtbot.waitUntil(lambda: dialog.format_note.height() == dialog.format_note.heightForWidth(
            dialog.format_note.width()), timeout=5_000)


# --------------------------------------------------------------------------- the height follows the rows shown
def _band_above_buttons(widget) -> int:
    """Pixels between the last row shown (Save as, or the message under it) and the Close / Export buttons."""
    last = max(widget.output_edit.geometry().bottom(), widget.browse_output.geometry().bottom())
    if widget.result.isVisibleTo(widget):
        last = widget.result.geometry().bottom()
    return widget.close_button.geometry().top() - last


@pytest.mark.parametrize("points", [10, 14])
def test_no_empty_band_above_the_buttons_whichever_rows_show(qtbot, styled_app, checkpoint, tmp_path, points):
    """With the Halting row hidden (a copy, or a checkpoint not open on the Use tab) a band of empty room stood
    between Save as and the buttons: the height only ever grew, and a size asked for (680 x 300) was kept."""
    from PySide6.QtGui import QFont

    from iamnn_studio.gui.export_dialog import UseTabHalting

    original = QFont(styled_app.font())
    font = QFont(original)
    font.setPointSizeF(points)
    styled_app.setFont(font)
    try:
        widget = ExportDialog(str(checkpoint), use_tab=UseTabHalting(str(checkpoint), "adaptive", 0.5))
        qtbot.addWidget(widget)
        widget.resize(680, 300)  # as the screenshots ask
        widget.show()
        qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)
        line = widget.fontMetrics().lineSpacing()

        def settled_band() -> int:
            qtbot.wait(20)  # the layout settles in the event loop
            widget.layout().activate()
            return _band_above_buttons(widget)

        assert widget.set_format("onnx")
        assert widget.halting_combo.isVisible()
        assert settled_band() < 2 * line
        with_halting = widget.height()
        assert widget.set_format(COPY)  # the Halting row hides, the note is shorter
        assert not widget.halting_combo.isVisible()
        assert settled_band() < 2 * line and widget.height() < with_halting
        assert widget.set_format("onnx")  # and comes back: the dialog grows again, nothing overlaps
        assert widget.halting_combo.isVisible()
        assert settled_band() < 2 * line and widget.height() == with_halting
        assert widget.format_note.geometry().bottom() < widget.output_edit.geometry().top()
        widget.checkpoint_edit.setText(str(tmp_path / "other.pt"))  # not the one open on the Use tab
        assert not widget.halting_combo.isVisible()
        assert settled_band() < 2 * line and widget.height() < with_halting
        no_message = widget.height()
        assert not widget.start_export()  # no such file: the message shows under Save as, the dialog grows
        assert widget.result.isVisible()
        assert 0 <= settled_band() < 2 * line and widget.height() > no_message
        widget.output_edit.setText(str(tmp_path / "model.onnx"))  # another path: the message goes, and its room
        assert not widget.result.isVisible()
        assert settled_band() < 2 * line and widget.height() == no_message
        widget.resize(widget.width() + 200, 600)  # wider: the note needs fewer lines; taller is not asked for
        assert settled_band() < 2 * line
    finally:
        styled_app.setFont(original)


def test_return_right_after_pasting_a_path_exports_it(qtbot, checkpoint, tmp_path):
    """The path is looked at after a pause in the typing: Return at once met a disabled Export (no suggested
    output yet) and did nothing. Return (or leaving the field) looks at once."""
    import shutil

    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    source = tmp_path / "pasted.pt"
    shutil.copy(checkpoint, source)
    widget = ExportDialog(None)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)
    assert widget.set_format(COPY)
    widget.checkpoint_edit.setFocus()
    QTest.keyClicks(widget.checkpoint_edit, str(source))  # typed (or pasted): the look waits for a pause
    assert widget.output_edit.text() == ""
    with qtbot.waitSignal(widget.exported, timeout=TIMEOUT) as exported:
        QTest.keyClick(widget.checkpoint_edit, Qt.Key.Key_Return)
    assert exported.args == [str(tmp_path / "pasted-copy.pt")]
    assert (tmp_path / "pasted-copy.pt").read_bytes() == source.read_bytes()


def test_the_use_tabs_threshold_is_named_before_the_checkpoint_is_read(qtbot, checkpoint):
    """Until the background read of the checkpoint ended (for good, where it failed), the Use tab's choice
    read "As set on the Use tab: adaptive", without its threshold."""
    from iamnn_studio.gui.export_dialog import UseTabHalting

    widget = ExportDialog(str(checkpoint), use_tab=UseTabHalting(str(checkpoint), "adaptive", 0.5))
    qtbot.addWidget(widget)
    assert widget._own_halting is not None and widget._own_halting[1] is None  # the read has not ended
    assert _items(widget.halting_combo)[0] == "As set on the Use tab: adaptive, threshold 0.500"
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)
    assert _items(widget.halting_combo)[0] == "As set on the Use tab: adaptive, threshold 0.500"  # the engine's words


# --------------------------------------------------------------------------- a ResNet baseline
def test_the_note_for_a_resnet_checkpoint_speaks_of_no_halting(qtbot, checkpoint, tmp_path):
    """QA: a ResNet's note said the export "applies the halting as masks … at its saved mode and threshold";
    a ResNet has no halting."""
    torch.manual_seed(0)
    resnet = build_model(ModelConfig(architecture="resnet", depth=18, width=4, image_size=16, num_classes=3))
    source = tmp_path / "resnet" / "checkpoints" / "best.pt"
    source.parent.mkdir(parents=True)
    save_checkpoint(source, resnet.eval(), classes=["a", "b", "c"], mean=[0.5], std=[0.25])
    widget = ExportDialog(str(source))
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)
    assert widget.set_format("onnx")

    qtbot.waitUntil(lambda: "ResNet" in widget.format_note.text(), timeout=10_000)  # read in the background
    note = widget.format_note.text()
    assert "halting" not in note.replace("no halting", "") and "threshold" not in note, note
    assert "every unit of every block" in note
    assert not widget.halting_combo.isVisibleTo(widget)

    widget.checkpoint_edit.setText(str(checkpoint))  # an IamNN checkpoint again: its halting note
    qtbot.waitUntil(lambda: "applies the halting as masks" in widget.format_note.text(), timeout=10_000)
    assert "its saved mode and threshold" in widget.format_note.text()


def test_show_in_folder_gives_the_path_when_no_file_manager_opens_it(qtbot, dialog, tmp_path, file_manager,
                                                                     record_dialogs):
    """QA: where no file manager could be started, "Show in folder" did nothing and said nothing."""
    asked = file_manager(opens=False)
    export(qtbot, dialog, COPY, tmp_path / "copy.pt")
    dialog.reveal_button.click()
    assert asked == [str(tmp_path)]
    assert [(kind, title) for kind, title, _ in record_dialogs] == [("warning", "Cannot open the folder")]
    assert str(tmp_path) in record_dialogs[0][2]


# --------------------------------------------------------------------------- the export runs in a child process
PLUGIN_EXPORTERS = '''
import atexit, os, resource, time
from iamnn_studio.engine.export import Exporter

def hold_the_gil(seconds):
    """Long C calls that never release the GIL, as torch.export and the ONNX exporter make."""
    n = 10**5
    while True:
        start = time.perf_counter(); sum(range(n)); took = time.perf_counter() - start
        if took > 0.05:
            break
        n *= 4
    n = int(n * 0.6 / took)  # one call: about 0.6 s
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(n))

def gil(checkpoint, path, *, batch_size=1):
    hold_the_gil(2.0)
    path.write_bytes(b"exported")

def slow(checkpoint, path, *, batch_size=1):
    path.write_bytes(b"half")
    time.sleep(120)
    path.write_bytes(b"exported")

def boom(checkpoint, path, *, batch_size=1):
    path.write_bytes(b"half")
    raise RuntimeError("exporter exploded")

def abort(checkpoint, path, *, batch_size=1):
    path.write_bytes(b"half")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
    os.abort()  # as a C++ writer does when the disk fills mid-file

def linger(checkpoint, path, *, batch_size=1):
    path.write_bytes(b"exported")
    atexit.register(time.sleep, 120)  # the file is in place and the answer printed; then torch's slow teardown

def register(api):
    for name, export in (("gil", gil), ("slow", slow), ("boom", boom), ("abort", abort), ("linger", linger)):
        api.exporters.register(name, Exporter(name, name, "." + name, export))
'''


@pytest.fixture
def test_exporters(tmp_path, monkeypatch):
    """Plugin exporters, loaded here (for the format list) and by the export's child (from the same folder)."""
    from iamnn_studio.engine import plugins

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "test_exporters.py").write_text(PLUGIN_EXPORTERS)
    monkeypatch.setenv(plugins.PLUGINS_ENV, str(folder))
    plugins.load_plugins(force=True)
    yield folder / "test_exporters.py"
    plugins.unload_plugins()
    plugins.load_plugins(force=True)  # the repository's own plugins, for the tests that follow


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_window_keeps_answering_while_an_exporter_holds_the_gil(qtbot, test_exporters, dialog, tmp_path):
    """QA: torch.export and the ONNX exporter held the GIL for up to 1.3 s at a time in the dialog's thread,
    and the window froze. In a child process the UI thread's 20 ms timer keeps ticking."""
    import time

    from PySide6.QtCore import QTimer

    ticks = [time.monotonic()]
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    out = tmp_path / "out"
    export(qtbot, dialog, "gil", out / "model.gil")
    timer.stop()

    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.3, f"the UI thread stood still for {max(gaps):.2f} s"
    assert (out / "model.gil").read_bytes() == b"exported" and _leftovers(out) == ["model.gil"]
    assert dialog.result.text().startswith(f"Exported to {out / 'model.gil'} (created the folder {out}).")


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-file"])
def test_cancel_kills_the_export_and_leaves_no_file(qtbot, test_exporters, dialog, tmp_path, monkeypatch, existing):
    import os

    out = tmp_path / "new" / "sub"
    target = out / "model.slow"
    if existing:
        out.mkdir(parents=True)
        target.write_bytes(b"keep me")
        monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Yes)
    assert dialog.set_format("slow")
    dialog.output_edit.setText(str(target))
    assert dialog.start_export()
    assert dialog.is_busy() and dialog.cancel_button.isVisibleTo(dialog) and not dialog.close_button.isEnabled()
    pid = dialog._export.pid()
    qtbot.waitUntil(lambda: any(name.endswith(".tmp") for name in _leftovers(out)), timeout=TIMEOUT)  # writing

    dialog.cancel_button.click()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child is gone (killed and reaped), not left to finish
    assert not dialog.is_busy() and dialog.close_button.isEnabled() and dialog.export_button.isEnabled()
    assert dialog.result.text() == "Export cancelled: nothing was written." and dialog.last_error is None
    if existing:
        assert _leftovers(out) == ["model.slow"] and target.read_bytes() == b"keep me"
    else:
        assert not (tmp_path / "new").exists()  # the folders it made go too
    qtbot.wait(200)
    assert dialog.last_path is None and dialog.last_error is None  # no late word from the killed child


def test_a_cancel_after_the_child_replaced_the_file_says_the_export_finished(qtbot, test_exporters, dialog, tmp_path,
                                                                            monkeypatch):
    """Review: Cancel pressed while the child tore torch down, after it had replaced the file, said "nothing
    was written" of a file that was in fact replaced."""
    out = tmp_path / "out"
    out.mkdir()
    target = out / "model.linger"
    target.write_bytes(b"old")
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Yes)
    assert dialog.set_format("linger")
    dialog.output_edit.setText(str(target))
    assert dialog.start_export()
    qtbot.waitUntil(lambda: target.read_bytes() == b"exported", timeout=TIMEOUT)  # replaced; the child lingers
    qtbot.waitUntil(lambda: bytes(dialog._export._process.peek(1 << 16)).endswith(b"}\n"),
                    timeout=TIMEOUT)  # and its answer printed
    assert dialog.is_busy()

    dialog.cancel_button.click()

    assert not dialog.is_busy() and dialog.last_error is None and dialog.last_path == str(target)
    # with the child's answer: its caveat (this checkpoint was never calibrated)
    assert dialog.result.text().startswith(f"The export had finished before Cancel. Exported to {target}. Note: ")
    assert dialog.reveal_button.isVisibleTo(dialog) and _leftovers(out) == ["model.linger"]


def test_a_cancel_finds_a_target_written_before_the_child_printed_its_answer(qtbot, tmp_path):
    from iamnn_studio.gui.export_process import ExportProcess, ExportRequest

    target = tmp_path / "model.onnx"
    process = ExportProcess()
    process.start(ExportRequest(tmp_path / "no-such.pt", "onnx", target, replace=False))  # no event seen yet
    target.write_bytes(b"written")  # as the child's os.replace does, just before its JSON answer

    cancelled = process.cancel()

    assert cancelled is not None and cancelled.finished is not None and cancelled.finished.path == str(target)
    assert process.cancel() is None  # none running now
    qtbot.wait(10)  # the killed child's QProcess is deleted (later) while its parent still lives


def test_a_failing_export_shows_the_clis_one_line_error(qtbot, test_exporters, dialog, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert dialog.set_format("boom")
    dialog.output_edit.setText(str(out / "model.boom"))
    assert dialog.start_export()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=TIMEOUT)

    assert dialog.last_error.startswith("Export failed: the boom exporter of plugin test_exporters failed: "
                                        f"RuntimeError: exporter exploded [{test_exporters}] (details in ")
    assert "\n" not in dialog.last_error and "Traceback" not in dialog.last_error
    assert dialog.result.kind == "error" and dialog.export_button.isEnabled() and _leftovers(out) == []


def test_an_exporter_that_aborts_ends_its_child_not_the_app(qtbot, test_exporters, dialog, tmp_path):
    """A C++ writer aborts the process when the disk fills mid-file: in the dialog's thread that was the app."""
    out = tmp_path / "out"
    out.mkdir()
    assert dialog.set_format("abort")
    dialog.output_edit.setText(str(out / "model.abort"))
    assert dialog.start_export()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=TIMEOUT)

    assert dialog.last_error == "Export failed: the export process crashed (an exporter may have aborted); " \
                                "no file was written"
    assert _leftovers(out) == []  # its temp file, left by the abort, is removed


def test_the_child_imports_this_copy_of_the_package(tmp_path):
    """An installed iamnn_studio elsewhere must not answer for the one the app runs from."""
    import os
    import subprocess
    import sys

    import iamnn_studio
    from iamnn_studio.gui.export_process import child_environment

    environment = child_environment()
    env = {name: environment.value(name) for name in environment.keys()}
    found = subprocess.run([sys.executable, "-c", "import iamnn_studio; print(iamnn_studio.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert found == iamnn_studio.__file__
    assert env["IAMNN_STUDIO_PLUGINS"] == os.environ["IAMNN_STUDIO_PLUGINS"]  # the same plugins
