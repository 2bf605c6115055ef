"""Closing the window asks before it throws work away: a run training or paused, an evaluation in the Study tab."""
from __future__ import annotations

import threading

import pytest
from PySide6.QtWidgets import QMessageBox

from .test_analysis_view import _run_with_checkpoint
from .test_training_view import RUN_TIMEOUT_MS, start_tiny_run

pytestmark = pytest.mark.gui


@pytest.fixture
def questions(monkeypatch):
    """Every question box shown records (title, text, details, default button) and is answered Cancel."""
    asked: list[tuple[str, str, str, str]] = []

    def record(box) -> int:
        default = box.defaultButton()
        asked.append((box.windowTitle(), box.text(), box.informativeText(), default.text() if default else ""))
        return 0  # closed without a click: as Cancel or Escape

    monkeypatch.setattr(QMessageBox, "exec", record)
    return asked


@pytest.fixture
def endless_evaluation(monkeypatch):
    """The engine's evaluation runs until it is asked to stop (a long one on a CPU); ``started`` is set once it
    runs. Released at the end of the test, whatever happened."""
    from iamnn_studio.engine import evaluate

    started, release = threading.Event(), threading.Event()
    real = evaluate.evaluate

    def until_stopped(*args, should_stop, **kwargs):
        started.set()
        while not should_stop() and not release.wait(0.02):
            pass
        return real(*args, should_stop=should_stop, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate", until_stopped)
    yield started
    release.set()


def test_closing_while_the_study_tab_evaluates_asks_and_cancel_keeps_it_going(qtbot, window, tmp_runs, questions,
                                                                            endless_evaluation, monkeypatch):
    run = _run_with_checkpoint(tmp_runs.parent)
    study = window.view("Study")
    with qtbot.waitSignal(study.report_shown, timeout=30_000):
        window.open_run_in_study(str(run))
    study.evaluate_now()
    qtbot.waitUntil(endless_evaluation.is_set, timeout=30_000)

    assert window.close() is False  # QA: it closed at once and threw the evaluation away, without a word
    title, text, details, default = questions[-1]
    assert text == "An evaluation is running — stop it and close?" and default == "Cancel"
    assert "eval.json" in details
    assert window.isVisible() and study.is_evaluating()

    import iamnn_studio.gui.main_window as main_window

    monkeypatch.setattr(main_window, "confirm_stop_evaluation_on_close", lambda parent: True)
    assert window.close() is True
    qtbot.waitUntil(lambda: not study.is_evaluating(), timeout=30_000)
    assert not (run / "eval.json").exists()  # stopped, not finished behind the closed window


def test_closing_while_a_run_is_paused_says_it_is_paused(qtbot, window, questions):
    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    training.toggle_pause()
    qtbot.waitUntil(lambda: training.state == "paused", timeout=RUN_TIMEOUT_MS)

    assert window.close() is False
    title, text, details, default = questions[-1]
    assert "paused" in text and "training" not in text  # QA: "A run is still training." for a paused run
    assert "progress is saved" in details and default == "Cancel"
    assert window.isVisible() and training.state == "paused"


class _FakeSession:
    """A run's session as the Train tab holds it: stop() asks it to stop, the run ends later."""

    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_stop_and_close_with_a_run_and_an_evaluation_asks_only_once(qtbot, window, monkeypatch):
    """QA: after "Stop and close", the run's end closed again and asked about the evaluation a second time
    (a stopped evaluation looks busy until its cancelled result reaches the UI thread)."""
    import iamnn_studio.gui.main_window as main_window

    asked: list[str] = []

    def agree(kind: str):
        return lambda *args, **kwargs: asked.append(kind) or True

    monkeypatch.setattr(main_window, "confirm_stop_on_close", agree("run"))
    monkeypatch.setattr(main_window, "confirm_stop_evaluation_on_close", agree("evaluation"))
    study, training = window.view("Study"), window.training
    monkeypatch.setattr(study, "is_evaluating", lambda: True)  # still busy: the cancelled job has not come back
    monkeypatch.setattr(study, "stop_evaluation", lambda: None)
    session = _FakeSession()
    training.session = session

    assert window.close() is False  # waits for the run to save its checkpoint
    assert session.stopped and asked == ["run"] and window.isVisible()

    training.session = None  # the run saved last.pt and ended
    training.run_ended.emit("stopped")
    assert asked == ["run"]  # not asked again about the evaluation
    assert not window.isVisible()


def test_closing_while_a_run_is_stopping_says_it_is_stopping(qtbot, window, questions):
    """QA: after Stop, closing asked "A run is still training." while the run was saving its checkpoint."""
    training = window.training
    training.session = _FakeSession()
    try:
        training.stop_run()
        assert training.state == "stopping"

        assert window.close() is False
        title, text, details, default = questions[-1]
        assert "stopping" in text and "training" not in text
        assert "waits" in details and default == "Cancel"
        assert window.isVisible()
    finally:
        training.session = None  # the fake run is gone: the window's teardown has nothing to wait for
