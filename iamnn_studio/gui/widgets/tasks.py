"""Run engine work (torch) off the UI thread and hand results back through queued signals.

Each view owns one ``BackgroundRunner``: its tasks run one at a time, in order, on a private
thread pool (a ``Predictor`` is not thread-safe, and two cores gain nothing from running two
torch jobs at once). Every task gets a token; ``discard_pending`` makes results of tasks
submitted earlier arrive nowhere, so a view never shows an answer to a question it no longer asks.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

#: A task's body. It receives a ``report(fraction, message)`` callable for progress.
TaskBody = Callable[[Callable[[float, str], None]], Any]

# Importing torch from two threads at once can fail (pytorch#182560): the first engine import of
# every runner goes through this lock.
ENGINE_IMPORT_LOCK = threading.Lock()


def one_line(error: BaseException) -> str:
    """The first line of an error's message, with its type when the message is empty."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text or type(error).__name__


class _Job(QRunnable):
    def __init__(self, runner: "BackgroundRunner", token: int, body: TaskBody) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._runner, self._token, self._body = runner, token, body

    def run(self) -> None:  # worker thread
        runner, token = self._runner, self._token

        def report(fraction: float, message: str = "") -> None:
            _emit(runner, "progressed", token, float(fraction), str(message))

        try:
            result = self._body(report)
        except Exception as error:  # every failure becomes a one-line message in the UI
            _emit(runner, "_failed", token, one_line(error))
        else:
            _emit(runner, "_succeeded", token, result)


def _emit(runner: "BackgroundRunner", signal: str, *args: Any) -> None:
    try:
        getattr(runner, signal).emit(*args)
    except RuntimeError:  # the view (and its runner) was deleted while the task ran
        pass


class BackgroundRunner(QObject):
    """Runs callables in a background thread, one at a time, and calls back on the UI thread."""

    progressed = Signal(int, float, str)  # token, fraction (0-1), message
    busy_changed = Signal(bool)
    _succeeded = Signal(int, object)
    _failed = Signal(int, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._tokens = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable[[Any], None] | None, Callable[[str], None] | None]] = {}
        self._deferred: list[_Job] = []
        self._succeeded.connect(self._on_succeeded)
        self._failed.connect(self._on_failed)

    # ---------------------------------------------------------------- public
    def submit(self, body: TaskBody, on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[str], None] | None = None) -> int:
        """Queue ``body(report)``; ``on_done(result)`` or ``on_error(message)`` runs on the UI thread."""
        token = next(self._tokens)
        was_idle = not self._callbacks
        self._callbacks[token] = (on_done, on_error)
        loader = _loading_engine()
        if loader is None:
            self._pool.start(_Job(self, token, body))
        else:  # the app is importing torch in its loader thread: start once it is done
            self._deferred.append(_Job(self, token, body))
            if len(self._deferred) == 1:
                loader.ready.connect(self._start_deferred, Qt.ConnectionType.SingleShotConnection)
                loader.failed.connect(self._start_deferred, Qt.ConnectionType.SingleShotConnection)
        if was_idle:
            self.busy_changed.emit(True)
        return token

    def discard_pending(self) -> None:
        """Forget the callbacks of every task submitted so far (they still run, their results are dropped)."""
        self._pool.clear()  # tasks not started yet never run
        self._deferred.clear()
        dropped = bool(self._callbacks)
        self._callbacks.clear()
        if dropped:
            self.busy_changed.emit(False)

    def is_busy(self) -> bool:
        return bool(self._callbacks)

    def wait(self, msecs: int = -1) -> bool:
        """Block until the running task ends (tests, shutdown)."""
        return self._pool.waitForDone(msecs)

    # --------------------------------------------------------------- private
    @Slot()
    def _start_deferred(self, *_: object) -> None:
        jobs, self._deferred = self._deferred, []
        for job in jobs:
            self._pool.start(job)

    def _finish(self, token: int):
        callbacks = self._callbacks.pop(token, None)
        if callbacks is not None and not self._callbacks:
            self.busy_changed.emit(False)
        return callbacks

    @Slot(int, object)
    def _on_succeeded(self, token: int, result: object) -> None:
        callbacks = self._finish(token)
        if callbacks and callbacks[0]:
            callbacks[0](result)

    @Slot(int, str)
    def _on_failed(self, token: int, message: str) -> None:
        callbacks = self._finish(token)
        if callbacks and callbacks[1]:
            callbacks[1](message)


def _loading_engine():
    """The app's engine loader while it is importing torch, else None."""
    try:
        from iamnn_studio.gui.engine_loader import shared_loader
    except Exception:  # the shell is not there (a view used on its own)
        return None
    loader = shared_loader()
    return loader if loader.is_loading else None


def import_engine(module: str):
    """Import ``iamnn_studio.engine.<module>`` (and so torch) under the shared import lock."""
    import importlib

    with ENGINE_IMPORT_LOCK:
        return importlib.import_module(f"iamnn_studio.engine.{module}")
