"""Drops onto the window that are neither images nor checkpoints: a run folder opens its run, a web address is
said not to be fetched (QA: an error card "No images in this folder", a refusal without a word)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from .test_analysis_view import _run_with_checkpoint

pytestmark = pytest.mark.gui
WEB_MESSAGE = "Web addresses are not fetched: save the image to disk first, then drop the file."


def drag_and_drop(window, mime: QMimeData) -> bool:
    """Drag ``mime`` over the window and drop it if the window takes it; whether it took it."""
    enter = QDragEnterEvent(QPoint(600, 400), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    if enter.isAccepted():
        QApplication.sendEvent(window, QDropEvent(QPointF(600, 400), Qt.DropAction.CopyAction, mime,
                                                  Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    return enter.isAccepted()


def urls(*addresses: QUrl) -> QMimeData:
    mime = QMimeData()
    mime.setUrls(list(addresses))
    return mime


def current_tab(window) -> str:
    return window.tabs.tabText(window.tabs.currentIndex())


def test_a_dropped_run_folder_opens_its_checkpoint_in_use_and_its_report_in_study(qtbot, window, tmp_runs):
    run = _run_with_checkpoint(tmp_runs.parent)
    use, study = window.view("Use"), window.view("Study")
    with qtbot.waitSignal(use.checkpoint_loaded, timeout=30_000):
        assert drag_and_drop(window, urls(QUrl.fromLocalFile(str(run))))
    assert use.checkpoint_path() == str(run / "checkpoints" / "best.pt") and current_tab(window) == "Use"
    assert not use.cards  # no error card for the folder
    assert window.statusBar().currentMessage() == f"Run {run.name}: its report is in the Study tab · Opened best.pt"
    qtbot.waitUntil(lambda: study.report is not None, timeout=30_000)
    assert study.report.path == run


@pytest.mark.parametrize("has_checkpoint", [True, False])
def test_a_run_folder_dropped_with_a_trailing_slash_is_still_a_run(qtbot, window, tmp_runs, has_checkpoint):
    """macOS Finder sends a folder as file:///.../run1/ (QA: "No images in this folder", "no checkpoint")."""
    run = _run_with_checkpoint(tmp_runs.parent)
    if not has_checkpoint:
        (run / "checkpoints" / "best.pt").unlink()
    use, study = window.view("Use"), window.view("Study")
    address = QUrl.fromLocalFile(str(run) + "/")
    assert address.toLocalFile().endswith("/")
    if has_checkpoint:
        with qtbot.waitSignal(use.checkpoint_loaded, timeout=30_000):
            assert drag_and_drop(window, urls(address))
        assert use.checkpoint_path() == str(run / "checkpoints" / "best.pt")
    else:
        assert drag_and_drop(window, urls(address))
        assert current_tab(window) == "Study" and "has no checkpoint yet" in window.statusBar().currentMessage()
    assert not use.cards  # no "No images in this folder" card
    qtbot.waitUntil(lambda: study.report is not None, timeout=30_000)
    assert study.report.path == run


def test_a_dropped_run_folder_without_a_checkpoint_shows_its_report(qtbot, window, tmp_runs):
    run = _run_with_checkpoint(tmp_runs.parent)
    (run / "checkpoints" / "best.pt").unlink()
    study = window.view("Study")
    assert drag_and_drop(window, urls(QUrl.fromLocalFile(str(run))))
    assert current_tab(window) == "Study" and not window.view("Use").cards
    assert window.statusBar().currentMessage() == f"Run {run.name} has no checkpoint yet: its report is shown in " \
                                                  "the Study tab"
    qtbot.waitUntil(lambda: study.report is not None, timeout=30_000)
    assert study.report.path == run


def test_of_several_run_folders_the_one_whose_checkpoint_opens_is_shown_in_study(qtbot, window, tmp_runs):
    """Review: runA (with best.pt) and runB (none) dropped together opened runA's best.pt, but Study showed runB
    and the status bar said "Run runB: its report is in the Study tab · Opened best.pt"."""
    first = _run_with_checkpoint(tmp_runs.parent, name="run-a")
    second = _run_with_checkpoint(tmp_runs.parent, name="run-b")
    (second / "checkpoints" / "best.pt").unlink()
    use, study = window.view("Use"), window.view("Study")
    with qtbot.waitSignal(use.checkpoint_loaded, timeout=30_000):
        assert drag_and_drop(window, urls(QUrl.fromLocalFile(str(first)), QUrl.fromLocalFile(str(second))))
    assert use.checkpoint_path() == str(first / "checkpoints" / "best.pt")
    assert window.statusBar().currentMessage() == ("Run run-a: its report is in the Study tab · Opened best.pt · "
                                                   "1 more run folder not opened: drop one run at a time")
    qtbot.waitUntil(lambda: study.report is not None, timeout=30_000)
    assert study.report.path == first


def test_run_folders_a_drop_leaves_out_are_named_in_the_status_bar(qtbot, window, tmp_runs):
    """QA: of three run folders dropped at once, Use and Study took one and the status bar named only that one."""
    runs = [_run_with_checkpoint(tmp_runs.parent, name=name) for name in ("run-a", "run-b", "run-c")]
    for run in runs:
        (run / "checkpoints" / "best.pt").unlink()
    study = window.view("Study")
    assert drag_and_drop(window, urls(*(QUrl.fromLocalFile(str(run)) for run in runs)))
    assert window.statusBar().currentMessage() == (
        "Run run-c has no checkpoint yet: its report is shown in the Study tab · "
        "2 more run folders not opened: drop one run at a time")
    qtbot.waitUntil(lambda: study.report is not None, timeout=30_000)
    assert study.report.path == runs[-1]
    assert drag_and_drop(window, urls(QUrl.fromLocalFile(str(runs[0]))))  # one run: nothing left out to mention
    assert window.statusBar().currentMessage() == ("Run run-a has no checkpoint yet: its report is shown in the "
                                                   "Study tab")


def test_a_later_drop_clears_the_news_of_the_earlier_one(qtbot, window, tmp_runs):
    """QA: "Run x has no checkpoint yet" stayed its 8 s in the status bar over a drop of images that came after."""
    run = _run_with_checkpoint(tmp_runs.parent)
    (run / "checkpoints" / "best.pt").unlink()
    assert drag_and_drop(window, urls(QUrl.fromLocalFile(str(run))))
    assert "has no checkpoint yet" in window.statusBar().currentMessage()
    image = tmp_runs.parent / "photo.png"
    image.write_bytes(b"not really a png")
    assert drag_and_drop(window, urls(QUrl.fromLocalFile(str(image))))
    assert "has no checkpoint yet" not in window.statusBar().currentMessage()


@pytest.mark.parametrize("as_text", [False, True], ids=["link", "text"])
def test_a_dropped_web_address_is_said_not_to_be_fetched(window, as_text):
    mime = QMimeData()
    if as_text:
        mime.setText("https://example.com/cat.jpg")
    else:
        mime.setUrls([QUrl("https://example.com/cat.jpg")])
    assert drag_and_drop(window, mime)  # was refused, without a word
    assert window.statusBar().currentMessage() == WEB_MESSAGE
    assert not window.view("Use").cards


def test_plain_text_that_is_no_address_is_still_refused(window):
    mime = QMimeData()
    mime.setText("see https://example.com for cats")
    assert not drag_and_drop(window, mime)
    assert window.statusBar().currentMessage() == ""
