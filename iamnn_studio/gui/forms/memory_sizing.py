"""The Train form's training-memory sizing, off the UI thread: in a child process, remembered on disk.

``estimate.training_memory`` runs a forward with autograd on the meta device: 0.3-1.4 s in the UI thread
froze the window at every new model shape, and run in one of the app's threads it crashed the process (a
garbage collection in the UI thread while the worker built autograd nodes). So it runs in a child process
(``python -m iamnn_studio.engine.estimate``, one at a time: a newer shape stops the older one's), waited for
by a detached thread that only reads its answer. Sizes are kept per ``training_memory_key`` in a small JSON
file beside the app's settings, so shapes seen before are known at once at start-up.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal

from ..worker import DetachedTasks

#: A child that has not answered by then is stopped: the form goes on without the activations' figure.
SIZING_TIMEOUT_S = 120
#: Newest shapes kept on disk (a few hundred bytes each).
CACHED_SHAPES = 200
CACHE_FILE = "training-memory.json"
#: The child: a model config's JSON on its stdin, its TrainingMemory's JSON on its stdout.
SIZING_COMMAND = [sys.executable, "-m", "iamnn_studio.engine.estimate"]


class SizingCancelled(Exception):
    """A newer model shape replaced this one before its child answered."""


class _SizingJob:
    """One child process sizing one model shape; ``cancel`` may come from the UI thread at any time."""

    def __init__(self, key: str, model: dict[str, Any], timeout_s: float) -> None:
        self.key, self.model, self.timeout_s = key, model, timeout_s
        self.cancelled = False
        self._lock = threading.Lock()
        self._child: subprocess.Popen | None = None

    def run(self) -> Any:
        """In a detached thread: start the child and wait for its one-line answer (ValueError: why none came)."""
        from iamnn_studio.engine.estimate import TrainingMemory

        with self._lock:
            if self.cancelled:
                raise SizingCancelled()
            self._child = child = subprocess.Popen(
                SIZING_COMMAND, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_environment())
        try:
            out, err = child.communicate(json.dumps(self.model), timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise ValueError(f"the sizing process gave no answer in {self.timeout_s:g} s") from None
        if self.cancelled:
            raise SizingCancelled()
        if child.returncode != 0:
            lines = err.strip().splitlines()
            raise ValueError(lines[-1] if lines else f"the sizing process exited with {child.returncode}")
        return TrainingMemory(**json.loads(out))

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._child is not None and self._child.poll() is None:
                self._child.kill()


def _child_environment() -> dict[str, str]:
    """This process's environment (plugins' folders too), with this copy of the package first on the path:
    an installed one elsewhere must not answer for it. One thread: a meta-device forward computes nothing."""
    import iamnn_studio

    root = str(Path(iamnn_studio.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class MemorySizer(QObject):
    """Sizes model shapes in child processes, the newest only; ``sized(key, model, memory)`` in the UI thread,
    with ``memory`` None when the child failed or timed out (the form then goes on without the figure)."""

    sized = Signal(str, object, object)

    def __init__(self, parent: QObject | None = None, timeout_s: float = SIZING_TIMEOUT_S) -> None:
        super().__init__(parent)
        self.timeout_s = timeout_s
        self.last_error = ""  # why the last shape could not be sized (logs and tests)
        self._jobs = DetachedTasks(self)
        self._current: _SizingJob | None = None

    def size(self, key: str, model: dict[str, Any]) -> None:
        """Size ``model`` (its ``ModelConfig`` dict) under ``key``; stops the sizing of any other shape."""
        if self._current is not None and self._current.key == key:
            return  # already on its way
        self.stop()
        job = self._current = _SizingJob(key, copy_of(model), self.timeout_s)
        self._jobs.submit(job, job.run, lambda memory: self._finish(job, memory),
                          lambda message: self._finish(job, None, message))

    def sizing(self, key: str) -> bool:
        return self._current is not None and self._current.key == key

    def stop(self) -> None:
        """Stop the child at work, if any: its shape is no longer the one shown."""
        if self._current is not None:
            self._current.cancel()
            self._current = None

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the children's threads returned (tests and shutdown only)."""
        return self._jobs.wait(timeout_ms)

    def _finish(self, job: _SizingJob, memory: Any, message: str = "") -> None:
        if job.cancelled or job is not self._current:
            return
        self._current = None
        self.last_error = message
        self.sized.emit(job.key, job.model, memory)


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)  # whole or not at all: another window reading it never sees half a file
    except OSError:
        pass


def built_in_model(model: dict[str, Any]) -> bool:
    """Whether the model's block is the engine's own: a plugin's block may change without the stamp knowing."""
    from iamnn_studio.engine.layers import BLOCKS

    block = model.get("block", "bottleneck")
    return block in BLOCKS and BLOCKS.get(block).__module__.startswith("iamnn_studio.")


_FIELDS = ("parameters", "bytes_per_image", "bytes_per_batch")
