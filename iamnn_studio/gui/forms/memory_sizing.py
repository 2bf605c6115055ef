"""The Train form's training-memory sizing, off the UI thread: in a long-lived child process, remembered on disk.

``estimate.training_memory`` runs a forward with autograd on the meta device: 0.3-1.4 s in the UI thread
froze the window at every new model shape, and run in one of the app's threads it crashed the process (a
garbage collection in the UI thread while the worker built autograd nodes). So it runs in a child process,
``python -m iamnn_studio.engine.estimate --serve``: one per Train form, started when the engine is ready (its
torch import, 5-10 s on a busy machine, overlaps the app's start-up) and asked for every later shape (0.5-0.9 s
each), one JSON line in and out. Asked from detached threads, never the UI thread: a newer shape supersedes an
older one (its late answer dropped), a child that dies is restarted once, one that passes its time limit is
killed and restarted. It ends with its form, at the interpreter's exit, by itself when the app's end of its
stdin closes (the app killed), or after ``IDLE_EXIT_S`` without a request: its ~300 MB are not held for a whole
session spent in the other tabs, and the next shape starts it again (seconds). Sizes are kept per
``training_memory_key`` in a small JSON file beside the app's settings, so shapes seen before are known at once
at start-up (and need no child).
"""
from __future__ import annotations

import atexit
import collections
import dataclasses
import hashlib
import json
import queue
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal

from iamnn_studio.child_process import package_environment

from ..worker import DetachedTasks

#: A shape the child has not answered by then: the child is killed (and restarted), the form goes on without
#: the activations' figure (the trainer checks the memory itself before training).
SIZING_TIMEOUT_S = 60
#: The child's torch import and warm-up (5-20 s on a busy 2-core machine) before it says it is ready.
START_TIMEOUT_S = 180
#: A child asked nothing for this long ends (it holds ~300 MB); the next shape starts a new one.
IDLE_EXIT_S = 5 * 60
#: Start the child when the engine is ready, before any shape needs it (tests turn it off: a torch process
#: for every test window would cost each test seconds of CPU).
START_WITH_ENGINE = True
#: Newest shapes kept on disk (a few hundred bytes each).
CACHED_SHAPES = 200
CACHE_FILE = "training-memory.json"
#: The child: model configs' JSON on its stdin, a line each; a ready line, then an answer a line, on its stdout.
SIZING_COMMAND = [sys.executable, "-m", "iamnn_studio.engine.estimate", "--serve"]


class SizingCancelled(Exception):
    """A newer model shape replaced this one before the child answered it, or the sizer was closed."""


class _ChildEnded(Exception):
    """The child's stdout closed: it died (or was killed by ``close``)."""


class _Nonsense(ValueError):
    """The child's line is no answer at all."""


class _Child:
    """One running sizing process; two daemon threads read its stdout lines into a queue and keep its last
    stderr lines (so neither pipe fills up, and a death can say why)."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1, env=_child_environment())
        self.ready = False
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.errors: collections.deque[str] = collections.deque(maxlen=20)
        self._readers = [threading.Thread(target=self._read, args=(stream, keep), daemon=True,
                                          name="memory-sizing-reader")
                         for stream, keep in ((self.process.stdout, self.lines.put),
                                              (self.process.stderr, self.errors.append))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, keep) -> None:
        try:
            with stream:
                for line in iter(stream.readline, ""):
                    keep(line.rstrip("\n"))
        except (OSError, ValueError):
            pass
        keep(None)  # end of the stream

    def next_line(self, timeout_s: float) -> str:
        """Its next stdout line (queue.Empty after ``timeout_s``; _ChildEnded when it died)."""
        line = self.lines.get(timeout=timeout_s)
        if line is None:
            self.lines.put(None)  # ended for good: any later read says so too
            raise _ChildEnded()
        return line

    def send(self, text: str) -> None:
        try:
            self.process.stdin.write(text + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):  # a broken pipe, or closed by ``end``: the reader sees the end too
            raise _ChildEnded() from None

    def why_ended(self) -> str:
        self._readers[1].join(2.0)  # its last words may still be on their way
        said = [line for line in self.errors if line]
        return said[-1] if said else f"it exited with {self.process.wait()}"

    def end(self) -> None:
        """Kill it now (nothing of it is worth waiting for) and reap it; its readers then see their ends."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass  # not reaped yet (a machine under load): its pipe is closed all the same
        try:
            self.process.stdin.close()
        except (OSError, ValueError):  # a line it never read: the flush finds the pipe broken
            pass


class SizingServer:
    """The long-lived sizing child of one form, asked one shape at a time from any thread but the UI thread
    (``answer`` blocks); ``supersede`` and ``close`` return at once, from any thread. No Qt."""

    def __init__(self, timeout_s: float = SIZING_TIMEOUT_S, start_timeout_s: float = START_TIMEOUT_S,
                 command: list[str] | None = None) -> None:
        self.timeout_s, self.start_timeout_s = timeout_s, start_timeout_s
        self.command = command  # the child's command line; None: SIZING_COMMAND as it is when a child starts
        self._turn = threading.Lock()  # one request talks to the child at a time
        self._state = threading.Lock()  # guards the fields below; never held while waiting for the child
        self._child: _Child | None = None
        self._closed = False
        self._latest = 0  # the request whose answer is still wanted
        self.idle_exit_s = IDLE_EXIT_S
        self._last_used = time.monotonic()  # when a request or the warm-up last had the child
        self._idle_timer: threading.Timer | None = None
        _OPEN_SERVERS.add(self)

    def supersede(self) -> int:
        """A new request's number: requests before it no longer want their answer (not yet asked: never asked)."""
        with self._state:
            self._latest += 1
            return self._latest

    def warm_up(self) -> None:
        """Start the child and wait until it is ready (blocks: a detached thread)."""
        with self._turn:
            try:
                self._ready_child()
            finally:
                self._used()

    def answer(self, request: int, model: dict[str, Any]) -> Any:
        """``model``'s TrainingMemory (blocks). SizingCancelled when a newer request came first or the server was
        closed; ValueError saying why there is no answer (the model, the time limit, a child that keeps dying)."""
        with self._turn:
            try:
                return self._answer(request, model)
            finally:
                self._used()

    def _answer(self, request: int, model: dict[str, Any]) -> Any:
        """``answer``, its turn held."""
        reason = ""
        for _attempt in range(2):  # a child that dies is restarted once
            self._still_wanted(request)
            child = None
            try:
                child = self._ready_child()
                child.send(json.dumps(model))
                return _memory_from(child.next_line(self.timeout_s))
            except _ChildEnded as ended:
                reason = str(ended) if child is None else self._forget(child)
            except _Nonsense:
                self._forget(child)  # out of step with its requests: the next one gets a fresh child
                raise
            except queue.Empty:
                self._forget(child)
                self._restart_quietly()
                raise ValueError(f"the sizing process gave no answer in {self.timeout_s:g} s") from None
        self._still_wanted(request)
        raise ValueError(f"the sizing process ended: {reason}")

    def close(self) -> None:
        """End the child now; later requests are cancelled. From any thread (the form's ``destroyed``, atexit)."""
        with self._state:
            self._closed = True
            self._latest += 1
            child, self._child = self._child, None
            timer, self._idle_timer = self._idle_timer, None
        if timer is not None:
            timer.cancel()
        if child is not None:
            child.end()
        _OPEN_SERVERS.discard(self)

    def _used(self) -> None:
        """A request (or the warm-up) is done with the child: it ends if nothing asks for ``idle_exit_s``."""
        timer = threading.Timer(self.idle_exit_s, self._end_if_idle)
        timer.daemon = True  # never holds up the interpreter's exit
        with self._state:
            self._last_used = time.monotonic()
            if self._closed:
                return
            previous, self._idle_timer = self._idle_timer, timer
        if previous is not None:
            previous.cancel()
        timer.start()

    def _end_if_idle(self) -> None:
        """The idle timer's end: the child ends unless a request has it now or had it since (its own timer runs)."""
        if not self._turn.acquire(blocking=False):
            return  # a request is talking to it: when done, it starts a new timer
        try:
            with self._state:
                idle = time.monotonic() - self._last_used >= self.idle_exit_s
                child = self._child if idle else None
                if child is not None:
                    self._child = None
            if child is not None:
                child.end()
        finally:
            self._turn.release()

    @property
    def pid(self) -> int | None:
        """The running child's process id (tests)."""
        child = self._child
        return child.process.pid if child is not None else None

    def _still_wanted(self, request: int) -> None:
        with self._state:
            if self._closed or request != self._latest:
                raise SizingCancelled()

    def _ready_child(self) -> _Child:
        """The running child, started if need be, once it has said it is ready (ValueError: it did not start)."""
        child = self._child if self._child is not None else self._start_child()
        if not child.ready:
            try:
                line = child.next_line(self.start_timeout_s)
            except _ChildEnded:
                raise _ChildEnded(self._forget(child)) from None
            except queue.Empty:
                self._forget(child)
                raise ValueError(f"the sizing process did not start in {self.start_timeout_s:g} s") from None
            child.ready = _reply(line).get("ready") is True
            if not child.ready:
                self._forget(child)
                raise ValueError(f"the sizing process said {line[:200]!r} instead of being ready")
        return child

    def _start_child(self) -> _Child:
        """Start a child (outside the state lock: a close meanwhile ends it at once)."""
        try:
            child = _Child(self.command or SIZING_COMMAND)
        except OSError as error:
            raise ValueError(f"cannot start the sizing process: {error.strerror or error}") from None
        with self._state:
            closed = self._closed
            if not closed:
                self._child = child
        if closed:
            child.end()
            raise SizingCancelled()
        return child

    def _restart_quietly(self) -> None:
        """A fresh child after one was killed, warm for the next shape (one that cannot start: the next tries)."""
        try:
            self._start_child()
        except ValueError:
            pass

    def _forget(self, child: _Child) -> str:
        """End ``child`` and drop it (if still ours); why it ended. SizingCancelled when the server was closed."""
        with self._state:
            closed = self._closed
            if self._child is child:
                self._child = None
        child.end()
        if closed:
            raise SizingCancelled()
        return child.why_ended()


def _reply(line: str) -> dict[str, Any]:
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    return reply if isinstance(reply, dict) else {}


def _memory_from(line: str) -> Any:
    """The TrainingMemory in the child's answer (ValueError: the child's sentence, or nonsense)."""
    from iamnn_studio.engine.estimate import TrainingMemory

    reply = _reply(line)
    if "error" in reply:
        raise ValueError(str(reply["error"]))
    try:
        return TrainingMemory(**{field: int(reply["memory"][field]) for field in _FIELDS})
    except (KeyError, TypeError, ValueError):
        raise _Nonsense(f"the sizing process answered {line[:200]!r}") from None


#: Servers whose child may still run: ended at the interpreter's exit, whatever closed or not their forms.
_OPEN_SERVERS: weakref.WeakSet[SizingServer] = weakref.WeakSet()


@atexit.register
def _close_all_servers() -> None:
    for server in list(_OPEN_SERVERS):
        server.close()


def _child_environment() -> dict[str, str]:
    """The package's child environment, with one thread: a meta-device forward computes nothing."""
    return package_environment(OMP_NUM_THREADS="1")


class MemorySizer(QObject):
    """A form's sizing child, asked for the newest shape only; ``sized(key, model, memory)`` in the UI thread,
    with ``memory`` None when the shape could not be sized (the form then goes on without the figure)."""

    sized = Signal(str, object, object)

    def __init__(self, parent: QObject | None = None, timeout_s: float = SIZING_TIMEOUT_S) -> None:
        super().__init__(parent)
        self.server = SizingServer(timeout_s)
        self.last_error = ""  # why the last shape could not be sized (logs and tests)
        self._jobs = DetachedTasks(self)
        self._warm_up = DetachedTasks(self)  # not waited for by ``wait``: it may take seconds
        self._current: tuple[int, str, dict[str, Any]] | None = None  # request, key, model
        self.destroyed.connect(self.server.close)  # the form has gone: so does its child, at once

    @property
    def timeout_s(self) -> float:
        return self.server.timeout_s

    @timeout_s.setter
    def timeout_s(self, seconds: float) -> None:
        self.server.timeout_s = seconds

    def start(self) -> None:
        """Start the child now, before a shape needs it (its torch import takes seconds)."""
        self._warm_up.submit("warm-up", self.server.warm_up, lambda _none: None, lambda _message: None)

    def size(self, key: str, model: dict[str, Any]) -> None:
        """Size ``model`` (its ``ModelConfig`` dict) under ``key``; an older shape's answer is no longer wanted."""
        if self._current is not None and self._current[1] == key:
            return  # already on its way
        server, model = self.server, copy_of(model)
        request = server.supersede()
        self._current = (request, key, model)
        self._jobs.submit(("size", request), lambda: server.answer(request, model),
                          lambda memory: self._finish(request, memory),
                          lambda message: self._finish(request, None, message))

    def sizing(self, key: str) -> bool:
        return self._current is not None and self._current[1] == key

    def stop(self) -> None:
        """The shape being sized is no longer shown: its answer is dropped (the child stays, for the next)."""
        self.server.supersede()
        self._current = None

    def close(self) -> None:
        """End the child now (the window closes); a later ``size`` answers nothing."""
        self._current = None
        self.server.close()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the asking threads returned (tests and shutdown only)."""
        return self._jobs.wait(timeout_ms)

    def _finish(self, request: int, memory: Any, message: str = "") -> None:
        if self._current is None or self._current[0] != request:
            return  # a newer shape's request is the one wanted
        _request, key, model = self._current
        self._current = None
        self.last_error = message
        self.sized.emit(key, model, memory)


def copy_of(model: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(model))


# --------------------------------------------------------------------------- on disk
def cache_path() -> Path:
    """Beside the app's settings file (QSettings: ~/.config/IamNN on Linux)."""
    return Path(QSettings().fileName()).parent / CACHE_FILE


def sizing_stamp() -> str:
    """What the cached sizes were measured with: torch and the engine's model code. Another stamp (an update,
    an edited block) makes the whole file stale, so a changed model is never sized from an old answer."""
    import torch

    from iamnn_studio.engine import baseline, estimate, layers, model

    digest = hashlib.sha256(torch.__version__.encode())
    for module in (baseline, estimate, layers, model):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def load_cached_sizes(path: Path | None = None) -> dict[str, Any]:
    """The sizes stored for this stamp, by key; {} for a missing, unreadable, corrupt or stale file."""
    from iamnn_studio.engine.estimate import TrainingMemory

    try:
        stored = json.loads((path or cache_path()).read_text(encoding="utf-8"))
        if stored.get("stamp") != sizing_stamp():
            return {}
        return {str(key): TrainingMemory(**{field: int(value[field]) for field in _FIELDS})
                for key, value in stored["sizes"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def save_cached_sizes(sizes: dict[str, Any], path: Path | None = None) -> None:
    """Store the newest ``CACHED_SHAPES`` of ``sizes`` (insertion order); a write that fails is skipped."""
    path = path or cache_path()
    kept = list(sizes.items())[-CACHED_SHAPES:]
    text = json.dumps({"stamp": sizing_stamp(), "sizes": {key: dataclasses.asdict(memory) for key, memory in kept}})
    try:  # whole or not at all, through a temp file of its own: two windows saving at once never mix
        from iamnn_studio.engine.io import atomic_write_text  # here: the first window imports no engine module

        atomic_write_text(path, text)
    except OSError:
        pass


def built_in_model(model: dict[str, Any]) -> bool:
    """Whether the model's block is the engine's own: a plugin's block may change without the stamp knowing."""
    from iamnn_studio.engine.layers import BLOCKS

    block = model.get("block", "bottleneck")
    return block in BLOCKS and BLOCKS.get(block).__module__.startswith("iamnn_studio.")


_FIELDS = ("parameters", "bytes_per_image", "bytes_per_batch")
