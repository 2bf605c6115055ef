"""File > Export… from the main window: the Use tab's halting setting travels to the export dialog;
File > Quit has Ctrl+Q on every platform."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gui


@pytest.fixture
def opened(qtbot, window, tmp_path):
    """A calibrated-looking checkpoint (threshold 0.7) open on the Use tab, which is shown."""
    from tiny_models import save_varied_checkpoint

    path = tmp_path / "run" / "checkpoints" / "best.pt"
    path.parent.mkdir(parents=True)
    save_varied_checkpoint(path)
    use = window.view("Use")
    with qtbot.waitSignal(use.checkpoint_loaded, timeout=30_000):
        window.open_checkpoint(str(path))
    window._select_tab("Use")
    return path


def _dialog_of_file_export(window, monkeypatch):
    """Run File > Export… and hand back the dialog it opened (instead of blocking in exec)."""
    from iamnn_studio.gui.export_dialog import ExportDialog

    shown = []
    monkeypatch.setattr(ExportDialog, "exec", lambda self: shown.append(self) or 0)
    monkeypatch.setattr(ExportDialog, "deleteLater", lambda self: None)  # closed as exec returns: kept to look at
    window.export_action.trigger()
    assert len(shown) == 1
    return shown[0]


def test_file_export_offers_the_threshold_set_on_the_use_tab(qtbot, window, opened, monkeypatch):
    use = window.view("Use")
    assert use.halting_setting() == ("adaptive", pytest.approx(0.7))
    assert window.use_tab_halting().threshold == pytest.approx(0.7)  # untouched: the checkpoint's own
    use.threshold_slider.setValue(930)  # the user tunes the threshold
    halting = window.use_tab_halting()
    assert (halting.checkpoint, halting.mode, halting.threshold) == (str(opened), "adaptive", 0.93)

    dialog = _dialog_of_file_export(window, monkeypatch)
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=120_000)
    assert dialog.set_format("torchscript")
    assert dialog.halting_combo.currentText() == "As set on the Use tab: adaptive, threshold 0.930"
    assert dialog.halting_override() == ("adaptive", 0.93)
    dialog.deleteLater()


def test_file_export_offers_the_use_tabs_fixed_mode(qtbot, window, opened):
    use = window.view("Use")
    use.mode_combo.setCurrentIndex(use.mode_combo.findData("fixed"))
    use.fixed_spin.setValue(2)
    assert use.halting_setting() == ("fixed:2", None)  # the Use tab's public word on it, not its private controls
    halting = window.use_tab_halting()
    assert (halting.mode, halting.threshold) == ("fixed:2", None)


def test_no_halting_is_offered_without_a_checkpoint_or_for_a_resnet(qtbot, window, tmp_path):
    from tiny_models import save_varied_checkpoint, tiny_config

    assert window.use_tab_halting() is None and window.view("Use").halting_setting() is None  # nothing open
    save_varied_checkpoint(tmp_path / "resnet.pt", tiny_config(architecture="resnet"))
    with qtbot.waitSignal(window.view("Use").checkpoint_loaded, timeout=30_000):
        window.open_checkpoint(str(tmp_path / "resnet.pt"))
    assert window.use_tab_halting() is None  # nothing halts in a ResNet
    assert window.view("Use").halting_setting() is None


def test_quit_has_ctrl_q_besides_the_platforms_own_key(window):
    from PySide6.QtGui import QKeySequence

    keys = window.quit_action.shortcuts()
    assert QKeySequence("Ctrl+Q") in keys
    assert all(key in keys for key in QKeySequence.keyBindings(QKeySequence.StandardKey.Quit))
    assert keys.count(QKeySequence("Ctrl+Q")) == 1


def test_a_closed_export_dialog_is_deleted(qtbot, window, monkeypatch):
    """Each File > Export… builds a new dialog: a closed one stayed alive, hidden, with its pending checks."""
    import shiboken6

    from iamnn_studio.gui.export_dialog import ExportDialog

    shown = []
    monkeypatch.setattr(ExportDialog, "exec", lambda self: shown.append(self) or 0)  # closed at once
    window.export_action.trigger()
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=30_000)
    qtbot.waitUntil(lambda: not shiboken6.isValid(shown[0]), timeout=10_000)
