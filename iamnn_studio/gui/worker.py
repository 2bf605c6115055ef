"""Background work for the GUI: a training run in a QThread, and short jobs in a small thread pool.

``TrainingSession`` runs the engine's ``Trainer.run()`` in its own QThread. The worker is a thin
adaptor: every engine ``Event`` becomes one queued ``event(kind, data)`` signal (the trainer already
throttles step events to <= 10/s); stop, pause and resume call the trainer's thread-safe methods
directly. The thread is never terminated and never deleted while it runs: ``finished`` fires once
it has ended, and only then are the thread and worker released.

``BackgroundTasks`` runs short jobs (build a model to count its parameters, decode a dataset
preview) off the UI thread; a newer request under the same key supersedes an older one, whose
result is dropped (Orange's "cancel on new input"). ``DetachedTasks`` runs calls that may never return
(a check of a folder on a dead network drive) each in its own daemon thread, with a time limit.

Neither imports torch or the engine at module import: both run after the engine loader is ready.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QRunnable, Qt, QThread, QThreadPool, QTimer, Signal, Slot

TERMINAL_EVENTS = ("finished", "failed")


def create_trainer(config: Any, *, runs_dir: str, run_dir: str | None, resume: bool, listeners: tuple) -> Any:
    """The engine's Trainer (a seam: tests replace it to simulate failures)."""
    from iamnn_studio.engine.trainer import Trainer

    return Trainer(config, runs_dir=runs_dir, run_dir=run_dir, resume=resume, listeners=listeners)


def describe_error(error: BaseException) -> str:
    """One human sentence for an exception that escaped the trainer."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "out of memory" in text.lower():
        return f"The GPU ran out of memory ({text}). Try a smaller batch size or width."
    if isinstance(error, ValueError):
        return text
    return f"{type(error).__name__}: {text}"


def mark_as_batch_work() -> bool:
    """Schedule the calling thread, and every thread or process it starts (torch's OpenMP team; the engine's
    split-inference pool takes the normal policy back), as CPU-bound batch work
    (Linux ``SCHED_BATCH``): same share of the CPU as before, but the kernel no longer lets it preempt a
    thread that wakes up, so the UI thread's timers and repaints come first. Measured in the app while
    training (``benchmarks/bench_ui_lag.py``, 2 cores): UI lag p99 13.4-13.6 -> 10.2-11.0 ms, images/s
    unchanged (a nice of 10 gave 6-8 ms, but would hand most of the CPU to any other busy program).
    True where it took; elsewhere the thread keeps its scheduling."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:  # not Linux
        return False
    try:
        os.sched_setscheduler(threading.get_native_id(), policy, os.sched_param(0))
    except OSError:  # a sandbox may forbid it: training goes on as before
        return False
    return True


class TrainingWorker(QObject):
    """Lives in the training thread; ``run`` blocks there until the trainer returns."""

    event = Signal(str, object)  # kind, data (a plain dict)
    done = Signal()

    def __init__(self, config: Any, runs_dir: str, run_dir: str | None, resume: bool) -> None:
        super().__init__()
        self._config, self._runs_dir, self._run_dir, self._resume = config, runs_dir, run_dir, resume
        self._lock = threading.Lock()
        self._trainer: Any = None
        self._stop_requested = False
        self._terminal_sent = False

    @Slot()
    def run(self) -> None:
        mark_as_batch_work()  # before torch starts this thread's OpenMP team, which inherits it
        try:
            trainer = create_trainer(
                self._config, runs_dir=self._runs_dir, run_dir=self._run_dir, resume=self._resume,
                listeners=(self._forward,),
            )
            with self._lock:
                self._trainer = trainer
                stop_now = self._stop_requested
            if stop_now:
                trainer.stop()
            trainer.run()
        except BaseException as error:  # noqa: BLE001 - whatever escapes becomes the run's failure
            if not self._terminal_sent:
                self.event.emit("failed", {"reason": describe_error(error), "run_dir": self._run_dir})
        finally:
            with self._lock:
                self._trainer = None
            self.done.emit()

    def _forward(self, event: Any) -> None:
        """The trainer's listener: runs in the training thread, hands a copy to the UI thread."""
        if event.kind in TERMINAL_EVENTS:
            self._terminal_sent = True
        self.event.emit(event.kind, dict(event.data))

    def _call(self, method: str) -> None:
        with self._lock:
            trainer = self._trainer
            if trainer is None:
                if method == "stop":
                    self._stop_requested = True
                return
        getattr(trainer, method)()

    def stop(self) -> None:
        self._call("stop")

    def pause(self) -> None:
        self._call("pause")

    def resume(self) -> None:
        self._call("resume")


class TrainingSession(QObject):
    """One training run in its own thread. ``event`` relays the engine's events; ``finished`` ends it."""

    event = Signal(str, object)
    finished = Signal()

    def __init__(
        self,
        config: Any,
        runs_dir: str | Path,
        *,
        run_dir: str | Path | None = None,
        resume: bool = False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.run_dir: str | None = str(run_dir) if run_dir else None
        self.stopping = False
        self.outcome: str | None = None  # "completed" / "stopped" / "max_steps" / "failed"
        self._thread: QThread | None = QThread()
        self._thread.setObjectName("training")
        self._worker: TrainingWorker | None = TrainingWorker(config, str(runs_dir), self.run_dir, resume)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.event.connect(self._relay)
        # Direct: QThread.quit is thread-safe, and a queued call would need the UI's event loop, which
        # is gone when the app exits with a run going (stop_at_exit would wait for nothing).
        self._worker.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._on_thread_finished)

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def start(self) -> None:
        if self._thread is not None and not self._thread.isRunning():
            self._thread.start()

    def stop(self) -> None:
        """Ask the trainer to stop after the current step (it saves last.pt); ``finished`` follows."""
        if self._worker is not None:
            self.stopping = True
            self._worker.stop()

    def pause(self) -> None:
        if self._worker is not None:
            self._worker.pause()

    def wait(self, timeout_ms: int) -> bool:
        """Block until the thread ended. Only when the event loop is gone (app exit): never on a live UI."""
        return self._thread.wait(timeout_ms) if self._thread is not None else True

    def resume(self) -> None:
        if self._worker is not None:
            self._worker.resume()

    @Slot(str, object)
    def _relay(self, kind: str, data: dict) -> None:
        if kind == "started" and data.get("run_dir"):
            self.run_dir = str(data["run_dir"])
        elif kind == "finished":
            self.outcome = str(data.get("reason", "completed"))
        elif kind == "failed":
            self.outcome = "failed"
        self.event.emit(kind, data)

    @Slot()
    def _on_thread_finished(self) -> None:
        # The thread has ended: only now may the worker and the thread object go.
        worker, thread = self._worker, self._thread
        self._worker = self._thread = None
        if worker is not None:
            worker.deleteLater()
        if thread is not None:
            thread.deleteLater()
        self.finished.emit()


# --------------------------------------------------------------------------- short jobs
class _TaskSignals(QObject):
    result = Signal(int, object)  # task id, value
    error = Signal(int, str)  # task id, message


class _Task(QRunnable):
    def __init__(self, task_id: int, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python owns it (BackgroundTasks keeps it until it reported)
        self.task_id = task_id
        self.fn = fn
        self.signals = _TaskSignals()

    def run(self) -> None:
        try:
            value = self.fn()
        except Exception as error:  # noqa: BLE001 - reported to the requester as one sentence
            self._report(self.signals.error, describe_error(error))
            return
        self._report(self.signals.result, value)

    def _report(self, signal: Any, value: Any) -> None:
        try:
            signal.emit(self.task_id, value)
        except RuntimeError:  # the asking widget was deleted while this ran (the window closed): nobody to tell
            pass


class BackgroundTasks(QObject):
    """Runs callables in a small pool; per key, only the newest request's result is delivered.

    Results arrive in the UI thread (queued to this object's slots). Parent it to the widget that
    asks: when the widget goes, the pool waits for its running job and nothing is delivered.
    """

    def __init__(self, parent: QObject | None = None, threads: int = 1) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._next_id = 0
        self._latest: dict[str, int] = {}  # key -> id of the newest task
        self._tasks: dict[int, tuple[str, _Task, Callable[[Any], None], Callable[[str], None]]] = {}

    def submit(
        self,
        key: str,
        fn: Callable[[], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[str], None],
    ) -> None:
        previous = self._latest.get(key)
        if previous is not None and previous in self._tasks and self._pool.tryTake(self._tasks[previous][1]):
            del self._tasks[previous]  # never started: drop it
        self._next_id += 1
        task = _Task(self._next_id, fn)
        task.signals.result.connect(self._on_result)
        task.signals.error.connect(self._on_error)
        self._latest[key] = task.task_id
        self._tasks[task.task_id] = (key, task, on_result, on_error)
        self._pool.start(task)

    @Slot(int, object)
    def _on_result(self, task_id: int, value: Any) -> None:
        callback = self._finish(task_id, 2)
        if callback is not None:
            callback(value)

    @Slot(int, str)
    def _on_error(self, task_id: int, message: str) -> None:
        callback = self._finish(task_id, 3)
        if callback is not None:
            callback(message)

    def _finish(self, task_id: int, which: int) -> Callable[[Any], None] | None:
        entry = self._tasks.pop(task_id, None)
        if entry is None or self._latest.get(entry[0]) != task_id:
            return None  # superseded by a newer request under the same key
        del self._latest[entry[0]]
        return entry[which]

    def cancel(self, key: str) -> None:
        """Deliver nothing more for ``key``: its newest request no longer answers what is shown (a job that
        has started still runs to its end, its result dropped)."""
        task_id = self._latest.pop(key, None)
        entry = self._tasks.get(task_id) if task_id is not None else None
        if entry is not None and self._pool.tryTake(entry[1]):
            del self._tasks[task_id]

    def is_busy(self, key: str | None = None) -> bool:
        return key in self._latest if key is not None else bool(self._latest)

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until queued jobs ran (shutdown and tests only)."""
        return self._pool.waitForDone(timeout_ms)


# --------------------------------------------------------------------------- calls that may hang
class _Relay(QObject):
    """Carries detached jobs' results from their threads to the UI thread. One for the application, parented to
    it: a job that returns after the widget that asked has gone still emits on a live object (a widget's own
    signal would be emitted on a deleted object, from another thread)."""

    done = Signal(object, int, bool, object)  # owner (a weak reference), job id, whether it returned, value

    @Slot(object, int, bool, object)
    def _deliver(self, owner_ref: Any, job_id: int, returned: bool, value: Any) -> None:
        owner = owner_ref()
        if owner is not None and shiboken6.isValid(owner):  # the asking object may have gone meanwhile
            owner._on_done(job_id, returned, value)


_relay: _Relay | None = None


def _the_relay() -> _Relay:
    global _relay
    if _relay is None or not shiboken6.isValid(_relay):
        _relay = _Relay(QCoreApplication.instance())
        _relay.done.connect(_relay._deliver, Qt.ConnectionType.QueuedConnection)
    return _relay


@dataclass
class _DetachedJob:
    """A running detached call and the callbacks of the newest request for its key."""

    job_id: int
    thread: threading.Thread
    on_result: Callable[[Any], None]
    on_error: Callable[[str], None]
    on_timeout: Callable[[], None] | None
    past_limit: bool = False


class DetachedTasks(QObject):
    """Runs calls that may never return (``available_offline`` on a folder of a dead network mount blocks in the
    kernel), each in its own daemon thread: a hung one holds up neither the next call nor the window's closing
    or the app's exit (a ``QThreadPool`` runs the next job only when a thread is free, and its destructor waits
    for the running one: a 5 s call froze the closing window for 5 s).

    One job per key at a time: a request for a key whose job still runs waits for that job's result (a dead
    mount checked again would only pile up threads that never end), and the newest request's callbacks get it.
    ``on_result(value)`` or ``on_error(message)`` run in the UI thread, only while this object lives;
    ``on_timeout()`` runs once the job has run ``timeout_ms`` (and at once for a later request of a key whose
    job is past its limit); a result that comes after it is still delivered.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._next_id = 0
        self._jobs: dict[Any, _DetachedJob] = {}

    def submit(self, key: Any, fn: Callable[[], Any], on_result: Callable[[Any], None],
               on_error: Callable[[str], None], *, timeout_ms: int | None = None,
               on_timeout: Callable[[], None] | None = None) -> bool:
        """Run ``fn()`` for ``key``; False when the key's earlier job still runs (it answers this request)."""
        job = self._jobs.get(key)
        if job is not None:
            job.on_result, job.on_error, job.on_timeout = on_result, on_error, on_timeout
            if job.past_limit and on_timeout is not None:  # say so now (not from inside this call)
                job_id = job.job_id
                QTimer.singleShot(0, self, lambda: self._time_up(job_id, again=True))
            return False
        self._next_id += 1
        job_id = self._next_id
        relay, owner = _the_relay(), weakref.ref(self)

        def run() -> None:
            try:
                returned, value = True, fn()
            except Exception as error:  # noqa: BLE001 - reported to the requester as one sentence
                returned, value = False, describe_error(error)
            try:
                relay.done.emit(owner, job_id, returned, value)
            except RuntimeError:  # the application has gone (it quit while this call hung): nobody to tell
                pass

        thread = threading.Thread(target=run, name=f"detached-{job_id}", daemon=True)
        self._jobs[key] = _DetachedJob(job_id, thread, on_result, on_error, on_timeout)
        thread.start()
        if timeout_ms is not None and on_timeout is not None:
            QTimer.singleShot(timeout_ms, self, lambda: self._time_up(job_id))
        return True

    def _job(self, job_id: int) -> tuple[Any, _DetachedJob] | tuple[None, None]:
        for key, job in self._jobs.items():
            if job.job_id == job_id:
                return key, job
        return None, None

    def _time_up(self, job_id: int, again: bool = False) -> None:
        _key, job = self._job(job_id)
        if job is None or (job.past_limit and not again):
            return  # it returned in time
        job.past_limit = True
        if job.on_timeout is not None:
            job.on_timeout()

    def _on_done(self, job_id: int, returned: bool, value: Any) -> None:
        key, job = self._job(job_id)
        if job is None:
            return
        del self._jobs[key]
        (job.on_result if returned else job.on_error)(value)

    def is_busy(self, key: Any = None) -> bool:
        return key in self._jobs if key is not None else bool(self._jobs)

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the running jobs returned, at most ``timeout_ms`` (tests only: never on a live UI)."""
        deadline = time.monotonic() + timeout_ms / 1000
        for job in list(self._jobs.values()):
            job.thread.join(max(0.0, deadline - time.monotonic()))
        return not any(job.thread.is_alive() for job in self._jobs.values())
