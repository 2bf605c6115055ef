"""Training from the window: live plots fill, pause/resume/stop keep a checkpoint, closing stops cleanly,
failures are shown and what was trained is kept."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QThread, Qt

from .conftest import checkpoint_of, stop_and_wait, tiny_run_values

pytestmark = pytest.mark.gui
RUN_TIMEOUT_MS = 90_000


def start_tiny_run(qtbot, window, **kwargs):
    training = window.training
    training.form.set_values(tiny_run_values(training.form, **kwargs))
    assert training.form.is_valid, training.form.errors
    assert training.start_run()
    return training


def test_a_tiny_run_fills_the_plots_and_finishes(qtbot, window, tmp_runs):
    training = start_tiny_run(qtbot, window, max_steps=4)  # 6 steps per epoch: the limit ends the run
    assert training.state == "starting" and not training.header.start.isEnabled()
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        pass
    assert ended.args == ["max_steps"]
    training.refresher.flush_all()
    curves = training.monitor.curves
    for name in ("train_loss", "train_accuracy", "macs", "lr", "images_per_s", "iterations_0", "iterations_3"):
        assert len(curves[name]) > 0, name
        x, y = curves[name].item.getData()
        assert x is not None and len(x) == len(curves[name]), f"{name} was not drawn"
    assert len(curves["val_accuracy"]) >= 1
    caps = [line.value() for line in training.monitor.cap_lines]
    assert caps == [1, 2, 2, 1]
    assert training.session is None and training.state == "idle"
    assert training.header.start.isEnabled()
    assert Path(training.last_run_dir).parent == tmp_runs
    assert training.header.open_study.isVisibleTo(training) and training.header.use_model.isVisibleTo(training)
    assert training.checkpoint_path().endswith("best.pt")
    assert window.run_status() == "Run finished (step limit)"
    log = training.log.lines()
    assert any(line.startswith("Epoch 1/1") for line in log)


def test_finished_run_opens_in_study_and_use(qtbot, window, monkeypatch):
    training = start_tiny_run(qtbot, window, max_steps=4)
    qtbot.waitUntil(lambda: training.session is None and training.outcome is not None, timeout=RUN_TIMEOUT_MS)
    shown, loaded = [], []
    monkeypatch.setattr(window.view("Study"), "show_run", lambda path: shown.append(path))
    monkeypatch.setattr(window.view("Use"), "load_checkpoint", lambda path: loaded.append(path) or True)
    training.header.open_study.click()
    assert shown == [training.last_run_dir] and window.tabs.tabText(window.tabs.currentIndex()) == "Study"
    training.header.use_model.click()
    assert loaded == [training.checkpoint_path()] and window.tabs.tabText(window.tabs.currentIndex()) == "Use"


def test_pause_resume_then_stop_keeps_a_loadable_checkpoint(qtbot, window):
    from iamnn_studio.engine.checkpoint import load_checkpoint

    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running" and len(training.monitor.curves["train_loss"]) > 0,
                    timeout=RUN_TIMEOUT_MS)
    assert not training.form.isEnabled()  # the run keeps the settings it started with
    training.header.pause.click()
    qtbot.waitUntil(lambda: training.state == "paused", timeout=RUN_TIMEOUT_MS)
    assert training.header.pause.text() == "Resume" and training.header.pause.isEnabled()
    steps_when_paused = len(training.monitor.curves["train_loss"])
    qtbot.wait(400)
    assert len(training.monitor.curves["train_loss"]) == steps_when_paused  # nothing trains while paused

    training.header.pause.click()
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    assert training.header.pause.text() == "Pause"
    training.header.stop.click()
    assert training.state == "stopping" and not training.header.stop.isEnabled()
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        pass
    assert ended.args == ["stopped"]
    assert window.run_status() == "Run stopped"
    last = Path(training.last_run_dir, "checkpoints", "last.pt")
    checkpoint = load_checkpoint(last)
    assert checkpoint.model_config.iterations == (1, 2, 2, 1)
    assert training.header.continue_run.isVisibleTo(training)
    assert training.form.isEnabled()


def test_closing_during_a_run_stops_it_then_closes(qtbot, window, monkeypatch):
    import iamnn_studio.gui.main_window as main_window

    asked = []
    monkeypatch.setattr(main_window, "confirm_stop_on_close", lambda parent, **_: asked.append(parent) or True)
    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    thread = training.session._thread
    assert thread is not None and thread.isRunning()

    assert window.close() is False  # not yet: the run stops first, the window stays responsive
    assert asked == [window] and window.isVisible()
    assert training.state == "stopping" and "Stopping" in window.run_status()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=RUN_TIMEOUT_MS)
    assert training.session is None and training.outcome == "stopped"
    assert Path(training.last_run_dir, "checkpoints", "last.pt").is_file()


def test_declining_to_close_keeps_the_run_going(qtbot, window, monkeypatch):
    import iamnn_studio.gui.main_window as main_window

    monkeypatch.setattr(main_window, "confirm_stop_on_close", lambda parent, **_: False)
    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    assert window.close() is False
    assert window.isVisible() and training.state == "running"


class FailingTrainer:
    """Stands in for the engine's Trainer: starts, then reports one failure the way the real one does."""

    def __init__(self, config, *, runs_dir, run_dir, resume, listeners):
        self.listeners, self.runs_dir = listeners, runs_dir

    def emit(self, kind, **data):
        from iamnn_studio.engine.events import Event

        for listener in self.listeners:
            listener(Event(kind, data))

    def run(self):
        self.emit("started", run_dir=None, config={}, total_steps=6, total_epochs=1, device="cpu")
        reason = "out of GPU memory at epoch 1 step 3 with batch size 32: try a smaller batch size"
        self.emit("failed", reason=reason, run_dir=None)

    def stop(self):
        pass


class CrashingTrainer(FailingTrainer):
    def run(self):
        self.emit("started", run_dir=None, config={}, total_steps=6, total_epochs=1, device="cpu")
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_the_log_says_a_checkpoint_saved_again_after_calibration_holds_the_calibrated_model(window):
    training = window.training
    training._event_checkpoint({"path": "/runs/r/checkpoints/best.pt", "step": 30, "best": True, "calibrated": False})
    training._event_checkpoint({"path": "/runs/r/checkpoints/best.pt", "step": 30, "best": True, "calibrated": True})
    # QA: the same "Saved best checkpoint best.pt at step 30" twice read as a glitch
    assert training.log.lines()[-2:] == ["Saved best checkpoint best.pt at step 30",
                                         "Saved the calibrated model to best.pt"]


def test_a_warning_from_the_trainer_stands_out_in_the_run_log(window):
    from iamnn_studio.gui.style import COLORS

    training = window.training
    training._event_log({"message": "calibrating the halting head on 600 held-out images"})
    training._event_log({"message": "could not save the test evaluation to /r/eval.json", "level": "warning"})
    assert training.log.lines()[-2:] == ["calibrating the halting head on 600 held-out images",
                                         "Warning: could not save the test evaluation to /r/eval.json"]
    page = training.log.document().toHtml().lower()
    assert page.count(COLORS["warning"].lower()) == 1  # only the warning line is drawn in the warning colour


@pytest.mark.parametrize("trainer, words", [(FailingTrainer, "out of GPU memory"), (CrashingTrainer, "ran out of memory")])
def test_a_training_failure_is_shown_and_the_window_stays_usable(qtbot, window, monkeypatch, record_dialogs,
                                                                 trainer, words):
    import iamnn_studio.gui.worker as worker

    monkeypatch.setattr(worker, "create_trainer", trainer)
    training = start_tiny_run(qtbot, window)
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        pass
    assert ended.args == ["failed"]
    assert [(kind, title) for kind, title, _ in record_dialogs] == [("critical", "Training failed")]
    assert words in record_dialogs[0][2]
    assert words in window.run_status() and window.run_status().startswith("Run failed")
    assert window.run_label.toolTip() == window.run_status()
    assert words in training.header.result.text()
    assert training.header.start.isEnabled()


class DownloadStoppedTrainer(FailingTrainer):
    """Stopped while its dataset downloads, as the engine ends it: a stop before training, no run folder."""

    def run(self):
        self.emit("finished", reason="stopped", message=DOWNLOAD_STOPPED, best_accuracy=None, run_dir=None,
                  epoch=None, step=None)


DOWNLOAD_STOPPED = "the download of Fashion-MNIST into /data was stopped; no partial file was kept"


def test_a_run_stopped_while_its_dataset_downloads_reads_stopped_and_says_what_was_stopped(
        qtbot, window, monkeypatch, record_dialogs):
    import iamnn_studio.gui.worker as worker

    monkeypatch.setattr(worker, "create_trainer", DownloadStoppedTrainer)
    training = start_tiny_run(qtbot, window)
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        pass
    assert ended.args == ["stopped"] and record_dialogs == []  # the user's own stop: no warning, no failure
    assert window.run_status() == "Stopped before training"
    assert training.log.lines()[-1] == f"Stopped · {DOWNLOAD_STOPPED}"
    assert not training.header.continue_run.isVisibleTo(training) and training.header.start.isEnabled()


def test_a_continue_stopped_while_its_dataset_downloads_brings_back_the_page_and_settings(
        qtbot, window, monkeypatch, record_dialogs):
    """Nothing trained: as for a run refused before training, the previous run's plots, the page and the form
    the user had come back (they showed an empty run page with a progress bar), without a warning."""
    import iamnn_studio.gui.worker as worker

    training = window.training
    run_dir = stopped_run(qtbot, window)
    plotted = {name: len(curve) for name, curve in training.monitor.curves.items()}
    training.pages.setCurrentIndex(0)  # the user looks at the dataset preview
    training.form.set_values(other_settings(training.form))
    monkeypatch.setattr(worker, "create_trainer", DownloadStoppedTrainer)
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        window.continue_run(run_dir)
    assert ended.args == ["stopped"] and record_dialogs == []
    header = training.header
    assert header.subtitle.text() == "Stopped before training" and window.run_status() == "Stopped before training"
    assert training.log.lines()[-1] == f"Stopped · {DOWNLOAD_STOPPED}"
    assert not header.actions.isVisibleTo(training) and not header.progress_row.isVisibleTo(training)
    assert {name: len(curve) for name, curve in training.monitor.curves.items()} == plotted
    assert training.pages.currentIndex() == 0
    assert training.form.values()["name"] == "other-model" and training.form.isEnabled()
    assert header.start.isEnabled() and training.state == "idle"


def test_a_run_that_fails_before_its_folder_exists_points_at_no_earlier_run(qtbot, window, record_dialogs, tmp_path):
    training = start_tiny_run(qtbot, window, max_steps=2)
    qtbot.waitUntil(lambda: training.session is None and training.outcome is not None, timeout=RUN_TIMEOUT_MS)
    assert training.last_run_dir is not None
    values = tiny_run_values(training.form, max_steps=2)
    weights = checkpoint_of(training.form.values()["model"], tmp_path / "weights.pt")  # the form reads it: it fits
    values["init_from"] = str(weights)
    training.form.set_values(values)
    qtbot.waitUntil(training.header.start.isEnabled, timeout=30_000)
    weights.write_text("no weights any more")  # replaced after the form read it: the engine refuses it
    assert training.start_run()
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        pass
    assert ended.args == ["not_started"] and training.failure.startswith("init_from")
    assert training.last_run_dir is None and training.checkpoint_path() is None  # nothing to export or continue
    assert not training.header.continue_run.isVisibleTo(training)
    # in the form's words: the field's label, marked in red (it said "Init_from: …")
    assert [(kind, title) for kind, title, _ in record_dialogs] == [("warning", "Could not start training")]
    assert record_dialogs[0][2].startswith("Start from: weights.pt is not an IamNN Studio checkpoint")
    assert training.log.lines()[-1].startswith("Could not start: Start from: weights.pt is not")
    assert training.form.training.rows["init_from"].error.startswith("weights.pt is not an IamNN Studio checkpoint")


def test_opening_a_run_config_while_a_run_trains_is_refused(qtbot, window, record_dialogs, tmp_path):
    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    saved = tmp_path / "other.toml"
    saved.write_text("name = 'other'\n")
    before = training.form.values()
    assert window.load_config_file(str(saved)) is False
    assert record_dialogs[-1][1] == "A run is already training" and "other.toml" in record_dialogs[-1][2]
    assert training.form.values() == before
    training.stop_run()
    qtbot.waitUntil(lambda: training.session is None, timeout=RUN_TIMEOUT_MS)


def test_a_resume_that_cannot_load_its_checkpoint_says_why_and_offers_no_continue(qtbot, window, record_dialogs):
    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    training.stop_run()
    qtbot.waitUntil(lambda: training.session is None, timeout=RUN_TIMEOUT_MS)
    last = Path(training.last_run_dir, "checkpoints", "last.pt")
    last.write_bytes(last.read_bytes()[:200])  # damaged on disk
    training.header.continue_run.click()
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        pass
    assert ended.args == ["not_started"]
    assert "last.pt is damaged" in (training.failure or ""), training.failure
    assert record_dialogs[-1][:2] == ("warning", f"Could not continue {Path(training.last_run_dir).name}")
    assert not training.header.continue_run.isVisibleTo(training)  # it would fail the same way again
    assert training.form.isEnabled() and training.header.start.isEnabled()


def test_continue_from_last_checkpoint_resumes_the_stopped_run(qtbot, window):
    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running" and len(training.monitor.curves["train_loss"]) > 0,
                    timeout=RUN_TIMEOUT_MS)
    training.stop_run()
    qtbot.waitUntil(lambda: training.session is None, timeout=RUN_TIMEOUT_MS)
    run_dir = training.last_run_dir
    assert training.header.continue_run.isVisibleTo(training)
    events = []
    training.header.continue_run.click()
    assert training.session is not None
    training.session.event.connect(lambda kind, data: events.append((kind, data)))
    qtbot.waitUntil(lambda: any(kind == "started" for kind, _ in events), timeout=RUN_TIMEOUT_MS)
    started = next(data for kind, data in events if kind == "started")
    assert started["run_dir"] == run_dir and started["resumed_from_step"] is not None

    # The earlier points come back from metrics.jsonl, before the new ones.
    loss = training.monitor.curves["train_loss"]
    qtbot.waitUntil(lambda: len(loss) > 0 and loss.data()[0][0] <= started["resumed_from_step"], timeout=30_000)
    steps = loss.data()[0]
    assert (np.diff(steps) >= 0).all()


def stopped_run(qtbot, window, name: str = "first") -> str:
    """A run trained a few steps, then stopped: it can be continued."""
    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000, name=name)
    qtbot.waitUntil(lambda: training.state == "running" and len(training.monitor.curves["train_loss"]) > 0,
                    timeout=RUN_TIMEOUT_MS)
    training.stop_run()
    qtbot.waitUntil(lambda: training.session is None, timeout=RUN_TIMEOUT_MS)
    return training.last_run_dir


def other_settings(form) -> dict:
    """The form filled for another model than the stopped run's (name, blocks, width, epochs)."""
    values = tiny_run_values(form, name="other-model")
    values["model"].update(width=8, iterations=[2, 2, 2, 2])
    values.update(epochs=3, max_steps=None)
    return values


def test_continuing_the_stopped_run_keeps_its_log_and_a_new_run_starts_a_fresh_one(qtbot, window):
    """The log was cleared on Continue: where and why the run had stopped vanished from the window."""
    run_dir = stopped_run(qtbot, window)
    training = window.training
    stopped_line = training.log.lines()[-1]
    assert stopped_line.startswith("Stopped at step")
    training.header.continue_run.click()
    qtbot.waitUntil(lambda: any(line.startswith("Resumed at step") for line in training.log.lines()),
                    timeout=RUN_TIMEOUT_MS)
    lines = training.log.lines()
    assert lines.index(stopped_line) < next(i for i, line in enumerate(lines) if line.startswith("Resumed at step"))
    assert training.last_run_dir == run_dir
    training.stop_run()
    qtbot.waitUntil(lambda: training.session is None, timeout=RUN_TIMEOUT_MS)

    start_tiny_run(qtbot, window, name="second")
    qtbot.waitUntil(lambda: Path(training.last_run_dir or "").name == "second", timeout=RUN_TIMEOUT_MS)
    assert training.log.lines()[0].startswith("Started")
    assert stopped_line not in training.log.lines()


def test_continuing_a_run_shows_its_own_settings_in_the_locked_form(qtbot, window):
    training = window.training
    run_dir = stopped_run(qtbot, window)
    training.form.set_values(other_settings(training.form))
    assert training.form.values()["name"] == "other-model"

    window.continue_run(run_dir)  # as the Runs tab's "Continue training" does
    assert training.session is not None and not training.form.isEnabled()
    shown = training.form.values()
    assert shown["name"] == "first" and shown["epochs"] == 1 and shown["max_steps"] == 2000
    assert shown["model"]["width"] == 4 and shown["model"]["iterations"] == [1, 2, 2, 1]
    assert training.header.title.text() == "first"


def test_a_continue_refused_before_training_is_not_a_failed_run(qtbot, window, record_dialogs, monkeypatch):
    from iamnn_studio.engine.runs import RunDirectory

    training = window.training
    run_dir = stopped_run(qtbot, window)
    plotted = {name: len(curve) for name, curve in training.monitor.curves.items()}
    assert plotted["train_loss"] > 0
    training.pages.setCurrentIndex(0)  # the user looks at the dataset preview
    mine = other_settings(training.form)
    training.form.set_values(mine)
    monkeypatch.setattr(RunDirectory, "is_being_trained", lambda self: True)  # the CLI trains it now

    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        window.continue_run(run_dir)
    assert ended.args == ["not_started"]
    assert [(kind, title) for kind, title, _ in record_dialogs] == [("warning", "Could not continue first")]
    assert "another process is training it" in record_dialogs[0][2]
    # No "failed" anywhere: the header says why it did not start, the status bar too.
    header = training.header
    for text in (header.title.text(), header.subtitle.text(), window.run_status()):
        assert "fail" not in text.lower(), text
    assert header.subtitle.text().startswith("Could not start") and "another process" in header.subtitle.text()
    assert window.run_status().startswith("Could not start") and "another process" in window.run_status()
    assert not header.actions.isVisibleTo(training) and not header.progress_row.isVisibleTo(training)
    # The previous run's plots, the page the user was on and the user's settings are as they were.
    assert {name: len(curve) for name, curve in training.monitor.curves.items()} == plotted
    assert training.pages.currentIndex() == 0
    assert training.form.values()["name"] == "other-model" and training.form.isEnabled()
    assert header.start.isEnabled() and training.state == "idle"


def test_the_training_thread_is_never_the_ui_thread(qtbot, window, monkeypatch):
    """Trainer.run() must run in the worker thread; the UI thread only receives signals."""
    import iamnn_studio.gui.worker as worker

    threads = []

    class RecordingTrainer(FailingTrainer):
        def run(self):
            threads.append(QThread.currentThread())
            for listener in self.listeners:
                from iamnn_studio.engine.events import Event

                listener(Event("finished", {"reason": "completed", "run_dir": None}))

    monkeypatch.setattr(worker, "create_trainer", RecordingTrainer)
    training = start_tiny_run(qtbot, window)
    qtbot.waitUntil(lambda: training.session is None, timeout=RUN_TIMEOUT_MS)
    assert threads and threads[0] is not QThread.currentThread()
    assert training.outcome == "completed"


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_the_training_thread_and_its_openmp_team_yield_to_the_ui_thread(qtbot, window, monkeypatch):
    """SCHED_BATCH for the trainer's thread and the OpenMP threads its first parallel op starts: the kernel
    then lets the UI thread run first when it wakes; the UI thread itself keeps the normal policy."""
    import torch

    import iamnn_studio.gui.worker as worker

    probe = []
    trial = threading.Thread(target=lambda: probe.append(worker.mark_as_batch_work()))
    trial.start()
    trial.join()
    if not probe[0]:
        pytest.skip("this system refuses SCHED_BATCH (the app then trains as before)")
    ui_policy = os.sched_getscheduler(0)
    seen = {}

    def batch_threads() -> set[int]:
        found = set()
        for task in os.listdir("/proc/self/task"):
            try:
                if os.sched_getscheduler(int(task)) == os.SCHED_BATCH:
                    found.add(int(task))
            except OSError:  # a thread that just ended
                pass
        return found

    class SchedulingTrainer(FailingTrainer):
        def run(self):
            from iamnn_studio.engine.events import Event

            before = batch_threads()
            a = torch.randn(512, 512)
            for _ in range(5):
                a = torch.tanh(a @ a)  # parallel ops: this thread's OpenMP team starts
            seen.update(own=os.sched_getscheduler(0), new=batch_threads() - before - {threading.get_native_id()},
                        threads=torch.get_num_threads())
            for listener in self.listeners:
                listener(Event("finished", {"reason": "completed", "run_dir": None}))

    monkeypatch.setattr(worker, "create_trainer", SchedulingTrainer)
    training = start_tiny_run(qtbot, window)
    qtbot.waitUntil(lambda: training.session is None, timeout=RUN_TIMEOUT_MS)
    assert seen["own"] == os.SCHED_BATCH
    if seen["threads"] > 1:
        assert seen["new"], "the OpenMP threads started by the training thread kept the normal policy"
    assert os.sched_getscheduler(0) == ui_policy != os.SCHED_BATCH  # the UI thread's own is left alone


class PhasedTrainer(FailingTrainer):
    """Trains two steps, then waits before each post-training phase until the test opens its gate."""

    gates: dict[str, threading.Event] = {}

    def run(self):
        from iamnn_studio.engine.events import Event

        def emit(kind, **data):
            for listener in self.listeners:
                listener(Event(kind, data))

        emit("started", run_dir=None, config={"calibrate_halting": True}, recipe="calibrated", total_steps=2,
             total_epochs=1, device="cpu")
        emit("step", step=2, total_steps=2, epoch=1, progress=1.0, loss=1.0, accuracy=0.5)
        self.gates["validated"].wait(30)
        emit("epoch", epoch=1, total_epochs=1, step=2, val_accuracy=0.5)
        self.gates["calibrated"].wait(30)
        emit("calibrated", threshold=0.9)
        self.gates["evaluated"].wait(30)
        emit("evaluated", top1=0.8, macs={"mean": 2e6}, split="test")
        emit("finished", reason="completed", best_accuracy=0.5, run_dir=None)

    def stop(self):
        for gate in self.gates.values():
            gate.set()


def test_after_the_last_step_the_header_names_each_phase_until_the_run_ends(qtbot, window, monkeypatch):
    import iamnn_studio.gui.worker as worker

    PhasedTrainer.gates = {name: threading.Event() for name in ("validated", "calibrated", "evaluated")}
    monkeypatch.setattr(worker, "create_trainer", PhasedTrainer)
    training = start_tiny_run(qtbot, window)
    subtitle = training.header.subtitle
    for phase, gate in (("Measuring the final model", "validated"), ("Calibrating the halting", "calibrated"), ("Evaluating", "evaluated")):
        qtbot.waitUntil(lambda: subtitle.text().startswith(phase), timeout=10_000)
        assert training.header.progress.maximum() == 0  # a busy bar, not a bar stuck at 100 %
        assert phase.split()[0] in window.run_status()
        PhasedTrainer.gates[gate].set()
    qtbot.waitUntil(lambda: training.session is None, timeout=10_000)
    assert training.header.progress.maximum() > 0 and training.phase == "training"
    assert "test accuracy 80.0% at 2.00 M MACs per image" in training.header.result.text()


class StoppedWhileCalibratingTrainer(PhasedTrainer):
    """Trains its two steps, then calibrates until the user stops it: the run ends as stopped with every step
    trained, as the engine's does (a stop during calibration keeps the uncalibrated checkpoints)."""

    def run(self):
        from iamnn_studio.engine.events import Event

        def emit(kind, **data):
            for listener in self.listeners:
                listener(Event(kind, data))

        emit("started", run_dir=None, config={"calibrate_halting": True}, recipe="calibrated", total_steps=2,
             total_epochs=1, device="cpu")
        emit("step", step=2, total_steps=2, epoch=1, progress=1.0, loss=1.0, accuracy=0.5)
        emit("epoch", epoch=1, total_epochs=1, step=2, val_accuracy=0.5)
        self.gates["stopped"].wait(30)
        emit("finished", reason="stopped", step=2, best_accuracy=0.5, run_dir=None)

    def stop(self):
        self.gates["stopped"].set()


def test_a_run_stopped_after_its_last_step_keeps_a_full_progress_bar(qtbot, window, monkeypatch):
    """QA: stopped while it calibrated, a run that had trained all its steps showed an empty bar beside
    "2 steps in 1 s" (the busy bar of the phase had reset the bar's value)."""
    import iamnn_studio.gui.worker as worker

    StoppedWhileCalibratingTrainer.gates = {"stopped": threading.Event()}
    monkeypatch.setattr(worker, "create_trainer", StoppedWhileCalibratingTrainer)
    training = start_tiny_run(qtbot, window)
    qtbot.waitUntil(lambda: training.header.subtitle.text().startswith("Calibrating"), timeout=10_000)
    training.header.stop.click()
    qtbot.waitUntil(lambda: training.session is None, timeout=10_000)
    assert training.outcome == "stopped"
    progress = training.header.progress
    assert (progress.minimum(), progress.maximum(), progress.value()) == (0, 1000, 1000)


class ReportingTrainer(PhasedTrainer):
    """Reaches evaluation, reports it half done, then waits for the test's gate."""

    def run(self):
        from iamnn_studio.engine.events import Event

        def emit(kind, **data):
            for listener in self.listeners:
                listener(Event(kind, data))

        emit("started", run_dir=None, config={}, recipe="plain", total_steps=2, total_epochs=1, device="cpu")
        emit("step", step=2, total_steps=2, epoch=1, progress=1.0, loss=1.0, accuracy=0.5)
        emit("phase_progress", phase="evaluating", fraction=0.5)
        self.gates["evaluated"].wait(30)
        emit("evaluated", top1=0.8, macs={"mean": 2e6}, split="test")
        emit("finished", reason="completed", best_accuracy=0.5, run_dir=None)


def test_an_after_training_phase_that_reports_progress_shows_a_real_bar(qtbot, window, monkeypatch):
    import iamnn_studio.gui.worker as worker

    ReportingTrainer.gates = {"evaluated": threading.Event()}
    monkeypatch.setattr(worker, "create_trainer", ReportingTrainer)
    training = start_tiny_run(qtbot, window)
    subtitle = training.header.subtitle
    qtbot.waitUntil(lambda: subtitle.text().startswith("Evaluating") and "50%" in subtitle.text(), timeout=10_000)
    assert training.header.progress.maximum() == 1000 and training.header.progress.value() == 500
    ReportingTrainer.gates["evaluated"].set()
    qtbot.waitUntil(lambda: training.session is None, timeout=10_000)


class FakeMonitor:
    """SystemMonitor's interface with fixed readings (this machine may or may not have a GPU)."""

    def __init__(self, gpu: bool):
        self.gpu_available = gpu
        self.gpu_message = "NVIDIA H100 80GB HBM3" if gpu else "No NVIDIA GPU found: showing CPU and RAM"
        self.closed = False

    def sample(self):
        gb = 1024**3
        gpu = dict(gpu_util=87.0, gpu_mem_used=12 * gb, gpu_mem_total=80 * gb, gpu_temp=65.0, gpu_power=None)
        none = dict.fromkeys(gpu)
        return {**(gpu if self.gpu_available else none), "cpu_util": 42.0, "ram_used": 3 * gb, "ram_total": 16 * gb}

    def close(self):
        self.closed = True


@pytest.mark.parametrize("gpu", [True, False])
def test_system_panel_plots_the_gpu_or_says_there_is_none(qtbot, styled_app, monkeypatch, gpu):
    import iamnn_studio.engine.system as system
    from iamnn_studio.gui.system_panel import SystemPanel

    monkeypatch.setattr(system, "SystemMonitor", lambda: FakeMonitor(gpu))
    panel = SystemPanel()
    qtbot.addWidget(panel)
    panel.start()
    panel.poll()
    if gpu:
        assert sorted(panel.curves) == ["gpu_mem", "gpu_power", "gpu_temp", "gpu_util"]
        assert panel.curves["gpu_util"].last() == 87.0 and panel.curves["gpu_mem"].last() == 12.0
        assert np.isnan(panel.curves["gpu_power"].last())  # not supported: a gap, not a zero
        text = panel.message.text()
        assert "NVIDIA H100" in text and "87 %" in text and "n/a" in text
    else:
        assert sorted(panel.curves) == ["cpu_util", "ram"]
        assert panel.message.text() == "CPU 42 % · RAM 3.0 / 16 GB · No NVIDIA GPU found: showing CPU and RAM"
        assert panel.curves["cpu_util"].last() == 42.0 and panel.curves["ram"].last() == 3.0
    assert len(panel.curves[next(iter(panel.curves))]) == 2
    panel.stop()
    assert panel.monitor.closed


def test_a_resumed_runs_history_goes_before_its_new_points(qtbot, styled_app):
    from iamnn_studio.gui.training_view import LiveMonitor

    monitor = LiveMonitor()
    qtbot.addWidget(monitor)
    monitor.reset((1, 2, 2, 1))
    for step in (11, 12):
        monitor.add_step({"step": step, "loss": 0.5, "iterations": [1, 2, 2, 1]})
    history = [{"event": "step", "step": s, "loss": 2.0 - 0.1 * s} for s in (1, 2, 3)]
    history += [{"event": "epoch", "step": 3, "val_loss": 1.5, "val_accuracy": 0.4},
                {"event": "step", "step": 15, "loss": 9.0}]  # after the resume point: a later, abandoned attempt
    monitor.prepend_history(history, upto_step=10)
    x, y = monitor.curves["train_loss"].data()
    assert x.tolist() == [1, 2, 3, 11, 12]
    assert y.tolist() == pytest.approx([1.9, 1.8, 1.7, 0.5, 0.5])
    assert monitor.curves["val_accuracy"].data()[1].tolist() == [40.0]
    assert monitor.curves["iterations_1"].data()[0].tolist() == [11, 12]


def test_a_long_history_is_thinned_to_means_of_consecutive_steps_up_to_the_resume_point():
    from iamnn_studio.gui.training_view import history_records

    events = []
    for step in range(1, 20_001):
        events.append({"event": "step", "step": step, "loss": 1.0 if step % 2 else 3.0, "iterations": [1, 3]})
        if step % 1000 == 0:
            events.append({"event": "epoch", "step": step, "val_loss": step / 1000})
    events.append({"event": "step", "step": 20_500, "loss": 9.0})  # after the resume point
    records = history_records(iter(events), upto_step=20_000, max_points=500)
    steps = [r for r in records if r["event"] == "step"]
    assert len(steps) == 500 and steps[-1]["step"] == 20_000
    assert all(r["loss"] == pytest.approx(2.0) and r["iterations"] == [1, 3] for r in steps)  # means, not samples
    assert [r["val_loss"] for r in records if r["event"] == "epoch"] == list(range(1, 21))
    assert [r["step"] for r in records] == sorted(r["step"] for r in records)  # each epoch after its steps


def replayed_loss(qtbot, run, resumed_step: int):
    """The Train tab's loss curve once Continue has replayed ``run``'s history up to ``resumed_step``."""
    from iamnn_studio.gui.training_view import TrainingView

    view = TrainingView()
    qtbot.addWidget(view)
    view._resumed_step = resumed_step
    view._replay_history(str(run))
    loss = view.monitor.curves["train_loss"]
    qtbot.waitUntil(lambda: len(loss) > 0, timeout=30_000)
    return loss


def test_replaying_a_resumed_runs_history_reads_and_thins_it_off_the_ui_thread(qtbot, styled_app, tmp_path,
                                                                                monkeypatch):
    """200,000 step events were appended to the plots one by one on the UI thread: a 2.8 s freeze."""
    import json

    import iamnn_studio.gui.training_view as training_view

    run = tmp_path / "resumed"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"event": "step", "step": s, "loss": 1.0}) + "\n"
                                               for s in range(1, 5001)))
    threads = []
    thin = training_view.history_records
    monkeypatch.setattr(training_view, "history_records",
                        lambda *a, **k: threads.append(threading.current_thread()) or thin(*a, **k))
    monkeypatch.setattr(training_view, "HISTORY_POINTS", 100)
    loss = replayed_loss(qtbot, run, resumed_step=5000)
    assert threads and threads[0] is not threading.main_thread()
    assert len(loss) == 100 and loss.data()[0][-1] == 5000


def test_epoch_points_are_named_after_the_split_they_were_measured_on(qtbot, styled_app):
    from iamnn_studio.gui.training_view import LiveMonitor

    monitor = LiveMonitor()
    qtbot.addWidget(monitor)
    monitor.resize(1000, 400)  # wide enough for every title's legend (a narrow plot shows its title alone)
    monitor.show()
    qtbot.waitUntil(lambda: monitor.plots["macs"].width() > 250)
    title = lambda: monitor.plots["accuracy"].titleLabel.text  # noqa: E731
    assert ">val<" in title() or "val</" in title()
    monitor.add_epoch({"step": 4, "val_split": "test", "val_accuracy": 0.3, "val_loss": 1.0})  # no validation split
    assert "test" in title() and "val<" not in title()
    assert "test" in monitor.plots["loss"].titleLabel.text and "test" in monitor.plots["macs"].titleLabel.text
    monitor.reset((1, 1, 1, 1))
    assert "test" not in title()


def test_continuing_a_run_once_resumed_from_an_earlier_checkpoint_replays_each_step_once(qtbot, styled_app, tmp_path):
    """Steps 1-8, a resume from step 4, steps 5-8 again: the replay drew 1-8 and then 5-8 over them."""
    import json

    run = tmp_path / "resumed"
    run.mkdir()
    events = [{"event": "started", "resumed_from_step": None},
              *({"event": "step", "step": s, "loss": 1.0} for s in range(1, 9)),
              {"event": "started", "resumed_from_step": 4},
              *({"event": "step", "step": s, "loss": 0.5} for s in range(5, 9))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    xs, ys = replayed_loss(qtbot, run, resumed_step=8).data()
    assert list(ys) == [1.0] * 4 + [0.5] * 4 and sorted(xs) == list(xs) and len(set(xs)) == 8


def test_a_refusal_that_starts_with_the_run_name_keeps_its_spelling_in_the_dialog():
    """QA: "Could not continue corrupt-config: Corrupt-config reached its step limit…"."""
    from iamnn_studio.gui.training_view import _sentence

    assert _sentence("corrupt-config reached its step limit", "corrupt-config") == \
        "corrupt-config reached its step limit."
    assert _sentence("cannot resume x: it has no checkpoint", "x") == "Cannot resume x: it has no checkpoint."
    assert _sentence("no name here") == "No name here."


class WeightsRefusingTrainer(FailingTrainer):
    """Refuses before training, as the engine does a checkpoint replaced by another file after the form read it."""

    def run(self):
        self.emit("failed", reason="init_from: weights.pt is not an IamNN Studio checkpoint (not a PyTorch zip file)",
                  run_dir=None)


def test_the_header_follows_the_form_after_a_run_that_did_not_start(qtbot, window, record_dialogs, tmp_path,
                                                                    monkeypatch):
    """QA: "Could not start: …" stayed in the header after the problem was fixed, and named the old problem
    with another one present: the header must describe the form as it is now."""
    import iamnn_studio.gui.worker as worker

    training, header = window.training, window.training.header
    form = training.form
    values = tiny_run_values(form, max_steps=2)
    form.set_values(values)
    qtbot.waitUntil(lambda: form.input_shape_known, timeout=30_000)
    values = form.values()
    values["init_from"] = str(checkpoint_of(values["model"], tmp_path / "weights.pt"))  # the form lets it through
    form.set_values(values)
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    monkeypatch.setattr(worker, "create_trainer", WeightsRefusingTrainer)
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        assert training.start_run()
    assert ended.args == ["not_started"]
    assert header.subtitle.text().startswith("Could not start: Start from: weights.pt is not")
    form.revalidate()  # a check that finds the form as it was keeps the reason
    assert header.subtitle.text().startswith("Could not start: Start from: weights.pt is not")

    form.training.init_from.setText(str(tmp_path / "missing.pt"))  # another problem, which the form sees
    form.training.init_from.textEdited.emit(form.training.init_from.text())
    assert not header.start.isEnabled()
    assert header.title.text() == "Not ready to train"
    assert header.subtitle.text() == "Fix the fields marked in red first"

    form.training.init_from.setText("")  # fixed
    form.training.init_from.textEdited.emit("")
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    assert header.title.text() == "Ready to train"
    assert "Could not start" not in header.subtitle.text()
    assert "Could not start" not in window.run_status()


def test_a_refused_continue_gives_one_story_in_the_header(qtbot, window, record_dialogs, monkeypatch):
    """Review: after a refused continue the header read "Ready to train" over "Could not start: …" (the form got
    the user's settings back while the refusal was being shown). As for a new run the engine refused, the
    header names the run that did not start and why, until the form changes."""
    from iamnn_studio.engine.runs import RunDirectory

    training, header = window.training, window.training.header
    run_dir = stopped_run(qtbot, window)
    training.form.set_values(other_settings(training.form))
    monkeypatch.setattr(RunDirectory, "is_being_trained", lambda self: True)
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS):
        window.continue_run(run_dir)
    assert header.title.text() == "first"
    assert header.subtitle.text().startswith("Could not start") and "another process" in header.subtitle.text()
    training.form.revalidate()  # the form as it was: the story holds
    assert header.title.text() == "first" and header.subtitle.text().startswith("Could not start")
    training.form.training.epochs.setValue(4)  # the user edits the form: it tells what Start needs now
    assert header.title.text() == "Ready to train" and "Could not start" not in header.subtitle.text()


def test_the_log_names_a_held_out_evaluation_and_the_phase_names_no_split_before_it_is_known():
    """QA: "Evaluating on the test images…" then "Evaluated on the val split" for a folder without test/."""
    from iamnn_studio.gui import training_view

    assert "test" not in training_view.AFTER_TRAINING["evaluating"] and "test" not in training_view.EVALUATING_BASELINE
    assert training_view.evaluated_text({"split": "val", "top1": 0.5}).startswith(
        "Evaluated on the held-out images (no test split): top-1 50.0%")
    assert training_view.evaluated_text({"split": "test", "top1": 0.5}).startswith("Evaluated on the test images")


def test_the_runs_tab_resumes_the_run_paused_in_this_window(qtbot, window, record_dialogs):
    """QA: for the run paused in this window the Runs tab offered "Continue training", and clicking it said "A run is
    already training — Stop it first, then continue the other run". It is the same run: Resume carries on with it."""
    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    training.toggle_pause()
    qtbot.waitUntil(lambda: training.state == "paused", timeout=RUN_TIMEOUT_MS)
    runs = window.view("Runs")
    window._select_tab("Runs")
    qtbot.waitUntil(lambda: runs.select_run(training.last_run_dir), timeout=RUN_TIMEOUT_MS)
    assert runs.continue_button.isEnabled() and runs.continue_button.text() == "Resume training"
    assert not runs.train_from_button.isEnabled()  # it would say "a run is already training" too
    runs.continue_button.click()
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    assert record_dialogs == [] and window.tabs.tabText(window.tabs.currentIndex()) == "Train"
    assert not runs.continue_button.isEnabled()  # training in this window: nothing to continue
    stop_and_wait(qtbot, training)
    assert runs.continue_button.text() == "Continue training"


def test_the_runs_tab_says_paused_and_running_again_as_the_run_here_pauses_and_resumes(qtbot, window):
    """QA: the Runs tab's status column read "running" for the run paused in this window until the tab was shown
    again (its status.json is read at a listing, and a hidden tab lists nothing); it follows the Train tab now."""
    from iamnn_studio.gui.runs_view import COLUMNS

    training = start_tiny_run(qtbot, window, max_steps=2000, train_size=2000)
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    runs = window.view("Runs")
    window._select_tab("Runs")
    qtbot.waitUntil(lambda: runs.select_run(training.last_run_dir), timeout=RUN_TIMEOUT_MS)

    def status() -> str:
        row = next(r for r in range(runs.table.rowCount())
                   if runs.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == training.last_run_dir)
        return runs.table.item(row, COLUMNS.index("Status")).text()

    qtbot.waitUntil(lambda: status() == "running", timeout=RUN_TIMEOUT_MS)
    window._select_tab("Train")  # the Runs tab hidden: it lists nothing until shown again
    training.toggle_pause()
    qtbot.waitUntil(lambda: training.state == "paused", timeout=RUN_TIMEOUT_MS)
    assert not runs.isVisible() and status() == "paused"
    training.toggle_pause()
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    assert status() == "running"

    window._select_tab("Runs")  # shown, it lists the folder: the run's status.json may say "paused" a moment longer
    training.toggle_pause()
    qtbot.waitUntil(lambda: training.state == "paused", timeout=RUN_TIMEOUT_MS)
    assert status() == "paused"
    training.toggle_pause()
    qtbot.waitUntil(lambda: training.state == "running", timeout=RUN_TIMEOUT_MS)
    assert status() == "running"
    qtbot.wait(300)  # a listing of the paused run's status.json coming in late does not undo it
    assert status() == "running"
    stop_and_wait(qtbot, training)


class FinishingTrainer(FailingTrainer):
    """Trains nothing: writes its run folder (config.toml, an untrained best.pt of its network) and ends at its step
    limit, as a finished run does."""

    def __init__(self, config, *, runs_dir, run_dir, resume, listeners):
        super().__init__(config, runs_dir=runs_dir, run_dir=run_dir, resume=resume, listeners=listeners)
        self.config = config

    def run(self):
        run_dir = Path(self.runs_dir) / self.config.name
        (run_dir / "checkpoints").mkdir(parents=True)
        self.config.save(run_dir / "config.toml")
        checkpoint_of(self.config.to_dict()["model"], run_dir / "checkpoints" / "best.pt")
        self.emit("started", run_dir=str(run_dir), config=self.config.to_dict(), total_steps=2, total_epochs=1,
                  device="cpu")
        self.emit("finished", reason="max_steps", best_accuracy=0.5, run_dir=str(run_dir), epoch=1, step=2)


def finished_run(qtbot, window, monkeypatch, name: str) -> str:
    """A run named ``name`` that ended at its step limit in this window (trained by ``FinishingTrainer``)."""
    import iamnn_studio.gui.worker as worker

    monkeypatch.setattr(worker, "create_trainer", FinishingTrainer)
    training = start_tiny_run(qtbot, window, name=name)
    with qtbot.waitSignal(training.run_ended, timeout=RUN_TIMEOUT_MS):
        pass
    return training.last_run_dir


def test_train_longer_after_a_run_ended_here_says_what_start_will_do(qtbot, window, monkeypatch):
    """QA: after a run finished in this window, "Train longer…" filled the form for "quick-longer" but the header
    still read "quick · Run finished (step limit)" with quick's result and its Open in Study / Use this model."""
    training, header = window.training, window.training.header
    run_dir = finished_run(qtbot, window, monkeypatch, "quick")
    assert (header.title.text(), header.subtitle.text()) == ("quick", "Run finished (step limit)")
    training.form.training.epochs.setValue(3)  # an edit that starts from no other weights keeps the result
    assert header.title.text() == "quick" and header.open_study.isVisibleTo(training)

    window.train_from_run(run_dir)  # as the Runs tab's (or Study's) "Train longer…" does
    qtbot.waitUntil(lambda: header.title.text() == "Ready to train longer", timeout=30_000)
    assert "quick's weights" in header.subtitle.text() and training.form.values()["name"] == "quick-longer"
    for shown in (header.actions, header.open_study, header.use_model, header.progress_row):
        assert not shown.isVisibleTo(training)

    training.form.training.init_from.clear()  # the user changes the form away from it: an ordinary run
    training.form.training.init_from.textEdited.emit("")
    qtbot.waitUntil(lambda: header.title.text() == "Ready to train", timeout=5_000)
    assert "quick" not in header.subtitle.text() and not header.actions.isVisibleTo(training)


def test_a_start_from_typed_after_a_run_ended_here_turns_the_header_to_training_longer(qtbot, window, monkeypatch):
    training, header = window.training, window.training.header
    run_dir = finished_run(qtbot, window, monkeypatch, "quick")
    training.form.training.init_from.setText(run_dir)
    training.form.training.init_from.textEdited.emit(run_dir)
    qtbot.waitUntil(lambda: header.title.text() == "Ready to train longer", timeout=30_000)
    assert "quick's weights" in header.subtitle.text() and not header.actions.isVisibleTo(training)


def test_a_long_run_name_takes_one_line_in_the_header_and_is_whole_in_its_tooltip(qtbot, window, monkeypatch):
    """QA: "a-rather-long-run-name-for-the-header-check" broke at its hyphens into four lines at 960 x 640; the
    header grew to ~270 px and pushed the plots down. Study shortens the same title with "…"."""
    name = "a-rather-long-run-name-for-the-header-check"
    window.resize(960, 640)
    run_dir = finished_run(qtbot, window, monkeypatch, name)
    title = window.training.header.title
    qtbot.waitUntil(lambda: title.width() > 0 and title.toolTip() == name, timeout=5_000)
    assert title.text() == name and title.shown_text().endswith("…")
    assert title.height() < 2 * title.fontMetrics().lineSpacing()  # one line
    window.train_from_run(run_dir)  # what the tab is ready for wraps in the narrow column, it is not cut short
    qtbot.waitUntil(lambda: title.text() == "Ready to train longer", timeout=30_000)
    qtbot.wait(50)
    assert title.shown_text() == "Ready to train longer" and title.toolTip() == ""
    assert title.height() >= title.heightForWidth(title.width()) > title.fontMetrics().lineSpacing()
    # the sentence names the run shortened (it broke at the hyphens over many lines), whole in its tooltip
    subtitle = window.training.header.subtitle
    assert "…" in subtitle.text() and name not in subtitle.text() and run_dir in subtitle.toolTip()
    lines = subtitle.heightForWidth(subtitle.width()) / subtitle.fontMetrics().lineSpacing()
    assert lines <= 5.5, lines  # the whole name broke it into 7 lines at 960 x 640
    assert window.training.start_run()  # the run's sentences have no start-from path to show (review: it stayed as tooltip)
    qtbot.waitUntil(lambda: not subtitle.text().startswith("Starts from"), timeout=30_000)
    assert subtitle.toolTip() == ""


def test_after_stop_the_log_tells_each_save_of_last_pt_once(qtbot, window):
    """QA: "Saved checkpoint last.pt at step 14" twice, around "recomputing the saved model's batchnorm statistics".
    The engine saves twice (the progress at once, then the model with recomputed statistics): each line says which."""
    stopped_run(qtbot, window)
    lines = window.training.log.lines()
    recomputing = next(i for i, line in enumerate(lines) if line.startswith("recomputing the saved model's batchnorm"))
    first, second = lines[recomputing - 1], lines[recomputing + 1]
    assert first.startswith("Saved checkpoint last.pt at step") and lines.count(first) == 1
    assert second == "Saved last.pt again with refreshed batchnorm statistics"
