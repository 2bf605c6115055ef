"""Run directories: where a training run keeps its config, metrics, checkpoints and status.

Layout of ``runs/<name>/``::

    config.toml            the RunConfig the run trains with (model filled in from the dataset)
    metrics.jsonl          one JSON object per event, appended and flushed line by line
    checkpoints/last.pt    the latest state (resume from here)
    checkpoints/best.pt    the best validation accuracy so far
    eval.json              the test-set evaluation, written once training is over
    train.log              human-readable log lines
    status.json            state, reason, times, best accuracy, epochs done

Every file but the two append-only logs is replaced atomically, so a run killed at any
instant leaves readable files behind. Readers (``list_runs``, ``read_metrics``) expect
half-written and foreign folders and never raise on them.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import socket
import stat
import threading
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .config import ModelConfig, RunConfig, calibrates_halting, caps_text, one_of
from .io import atomic_write_json

RUN_STATES = ("running", "paused", "stopped", "completed", "failed")
#: What ``list_runs`` reports for a folder it recognises as a run but cannot read.
UNREADABLE = "unreadable"
#: A run whose status says "running" but whose process is gone (killed, crashed, power cut).
INTERRUPTED = "interrupted"
#: How status.json's reason begins for a run that ended at its step limit.
STEP_LIMIT_REASON = "completed: reached max_steps"
#: The layout of the training state a checkpoint holds (the trainer's resume reads only this one).
TRAINING_STATE_VERSION = 1

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"
EVAL_FILE = "eval.json"
LOG_FILE = "train.log"
CHECKPOINT_DIR = "checkpoints"
_RUN_MARKERS = (CONFIG_FILE, STATUS_FILE, METRICS_FILE)
#: status.json and eval.json are kilobytes; a bigger one is damage (a sparse or runaway file), read as missing
#: rather than loaded whole: a 2 GB one took 2 s and 4 GB of memory per run, on every Runs-tab refresh.
MAX_JSON_FILE_BYTES = 16 << 20
#: The longest metrics.jsonl line read (a "started" or "calibrated" event is a few kB); longer ones are
#: damage (binary junk, a zero-filled hole with no newline) and skipped without holding them in memory.
MAX_METRICS_LINE_BYTES = 1 << 20
#: How much of metrics.jsonl's start is searched for the "started" event.
METRICS_HEAD_BYTES = 1 << 20
_READ_CHUNK_BYTES = 1 << 20
#: The first read is small (a run's "started" event is its first line): listing 300 runs read 300 MB.
_FIRST_CHUNK_BYTES = 64 << 10


#: A run's own files besides ``checkpoints/``: never overwritten by an export or a settings file.
_RUN_FILES = (CONFIG_FILE, STATUS_FILE, METRICS_FILE, EVAL_FILE, LOG_FILE)


def _is_run(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and any(
        (folder / name).exists() for name in (STATUS_FILE, METRICS_FILE, CHECKPOINT_DIR))


def output_file(path: str | Path) -> Path:
    """The file a user-chosen output path will write, or ``ValueError`` saying why it must not be
    written ("it is ...", to follow "cannot write PATH: ").

    A symbolic link is followed (its target is written, the link stays); a folder, a device, a
    pipe or a socket is refused (an atomic replace would swap it for a regular file, even
    ``/dev/null``); so is a file of a training run (its settings, status, log, evaluation or a
    checkpoint, whether written yet or not), whose loss would break the run.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.is_dir():
        raise ValueError("it is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise ValueError("it is not a regular file (a device, pipe or socket); give a file name")
    # existing or not: a stopped run has no best.pt or eval.json yet, and one written there breaks it
    run = (path.parent if path.name in _RUN_FILES and _is_run(path.parent)
           else path.parent.parent if path.parent.name == CHECKPOINT_DIR and _is_run(path.parent.parent)
           else None)
    if run is not None:
        raise ValueError(f"it is a file of the training run in {run}; write somewhere else")
    return path


def claim_refusal(path: str | Path) -> str | None:
    """Why ``path`` cannot take a new run (``RunDirectory.claim``'s refusal), or None: asked before a run's
    data loads too, which can take minutes."""
    path = Path(path)
    if path.is_dir() and any((path / marker).exists() for marker in _RUN_MARKERS):
        return _run_folder_refusal(RunDirectory(path))
    # a run's files mixed into a folder of photos (or into the runs folder itself) are hard to take out again
    if path.is_dir() and any(not entry.name.startswith(".") for entry in path.iterdir()):
        return (f"run_dir: {path} holds other files and no run; choose a new or empty folder "
                "(a folder of runs is --runs-dir)")
    return None


def _run_folder_refusal(run: "RunDirectory") -> str | None:
    """Why the run in ``run.path`` must not be replaced by a new one, or None where nothing would be lost: it
    has no checkpoint (it ended before its first epoch did, so it cannot be resumed either) and no process
    trains it."""
    path = run.path
    if run.has_checkpoint():
        return f"run_dir: {path} already holds a run; resume it or choose another folder"
    status = run.read_status()
    if status is None or status.get("state") not in RUN_STATES:  # maybe a run that is writing its first files
        return (f"run_dir: {path} already holds a run, without a checkpoint or a readable status.json; if no "
                "process trains it, delete the folder and start again, or choose another folder")
    if status["state"] in ("running", "paused") and (status.get("pid") == os.getpid() or _writer_alive(status)):
        where = "" if status.get("host") == socket.gethostname() else f" on {status.get('host')}"
        return (f"run_dir: {path} holds a run that a process{where} is training right now (pid "
                f"{status.get('pid')}); choose another folder")
    if status["state"] not in ("running", "paused", "failed") or run.eval_path.exists():
        # a finished run whose checkpoints were removed: its results are still worth keeping
        return f"run_dir: {path} already holds a run, finished without its checkpoints; choose another folder"
    return None


def _mkdir_failure(path: Path, error: OSError) -> str:
    """Why ``path`` could not be made a folder: "X is a file, not a folder" (``FileExistsError`` alone
    reads as if the folder were there), else the system's words."""
    blocked = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    return f"{blocked} is a file, not a folder" if blocked is not None else str(error.strerror or error)


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunDirectory:
    """One run's folder and the files in it. Only the process that trains a run writes to it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.reclaimed = False  # claimed from a run that ended before its first checkpoint

    # ---------------------------------------------------------------- creation
    @classmethod
    def create(cls, runs_dir: str | Path, name: str) -> "RunDirectory":
        """A new, empty run folder ``runs_dir/name``, or ``name-2``, ``name-3``... if taken."""
        runs_dir = Path(runs_dir)
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"runs folder: cannot create {runs_dir}: {_mkdir_failure(runs_dir, exc)}") from None
        for n in range(1, 10_000):
            candidate = runs_dir / (name if n == 1 else f"{name}-{n}")
            try:
                candidate.mkdir()  # atomic: two processes never get the same folder
            except FileExistsError:
                continue
            except OSError as exc:
                raise ValueError(f"runs folder: cannot create {candidate}: {_mkdir_failure(candidate, exc)}") from None
            return cls(candidate)
        raise ValueError(f"name: too many runs called {name!r} in {runs_dir}")

    @classmethod
    def claim(cls, path: str | Path) -> "RunDirectory":
        """Use exactly ``path`` for a new run: it may exist, but must not hold a run already, except one that
        no process trains and that ended before its first checkpoint (nothing to resume, nothing to lose):
        its files are replaced, its train.log kept and added to (``reclaimed`` is then True)."""
        path = Path(path)
        refusal = claim_refusal(path)
        if refusal is not None:
            raise ValueError(refusal)
        run = cls(path)
        if path.is_dir() and any((path / marker).exists() for marker in _RUN_MARKERS):
            run._forget_earlier_attempt()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"run_dir: cannot create {path}: {_mkdir_failure(path, exc)}") from None
        return run

    def _forget_earlier_attempt(self) -> None:
        """Remove the files of a run that ended before its first checkpoint: its events and status would
        otherwise read as the new run's (the first "started" event is the one readers take)."""
        for name in (CONFIG_FILE, STATUS_FILE, METRICS_FILE, EVAL_FILE):
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError as exc:
                raise ValueError(f"run_dir: cannot replace {self.path / name}: {exc.strerror or exc}") from None
        self.reclaimed = True

    @classmethod
    def open(cls, path: str | Path) -> "RunDirectory":
        """An existing run folder (for resuming); ``ValueError`` if it is not one."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"run_dir: {path} is a file, not a run folder")
        if not path.is_dir():
            raise ValueError(f"run_dir: no such run folder: {path}")
        if not any((path / marker).exists() for marker in _RUN_MARKERS):
            raise ValueError(f"run_dir: {path} is not a run folder (no {CONFIG_FILE} or {STATUS_FILE})")
        return cls(path)

    # ------------------------------------------------------------------- paths
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def eval_path(self) -> Path:
        return self.path / EVAL_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints_dir / "best.pt"

    def has_checkpoint(self) -> bool:
        """Whether a checkpoint was saved (last.pt, best.pt): a run without one has nothing to resume from."""
        return any(p.exists() for p in (self.last_checkpoint, self.best_checkpoint))

    # ----------------------------------------------------------------- writing
    def write_config(self, config: RunConfig) -> None:
        config.save(self.config_path)

    def read_config(self) -> RunConfig:
        return RunConfig.load(self.config_path)

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line and flush it, so a reader (or a crash) sees whole lines."""
        line = json.dumps(record, default=_json_default, allow_nan=True) + "\n"
        self._append(self.metrics_path, line)

    def log(self, message: str) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self._append(self.log_path, "".join(f"{stamp}  {line}\n" for line in message.splitlines() or [""]))

    def _append(self, path: Path, text: str) -> None:
        with self._lock:
            with open(path, "a+b") as fh:
                # A killed writer can leave a line without its newline: start on a fresh line.
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        text = "\n" + text
                fh.write(_file_bytes(text))
                fh.flush()

    def write_status(
        self,
        state: str,
        *,
        reason: str = "",
        best_accuracy: float | None = None,
        epochs_done: int = 0,
        total_epochs: int | None = None,
        step: int = 0,
        **extra: Any,
    ) -> None:
        """Replace status.json; ``created`` is kept from the first write."""
        if state not in RUN_STATES:
            raise ValueError(f"state: must be {one_of(RUN_STATES)}, got {state!r}")
        previous = self.read_status() or {}
        status = {
            "state": state,
            "reason": reason,
            "created": previous.get("created") or _now_iso(),
            "updated": _now_iso(),
            "best_accuracy": best_accuracy,
            "epochs_done": epochs_done,
            "total_epochs": total_epochs,
            "step": step,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **extra,
        }
        atomic_write_json(self.status_path, status)

    def read_status(self) -> dict[str, Any] | None:
        """status.json as a dict, or None when missing or damaged."""
        return read_json_object(self.status_path)

    def is_being_trained(self) -> bool:
        """Whether another live process on this machine is training this run now."""
        status = self.read_status()
        if not status or status.get("state") not in ("running", "paused") or status.get("pid") == os.getpid():
            return False
        return status.get("host") == socket.gethostname() and _writer_alive(status)

    def write_eval(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.eval_path, result)


def _file_bytes(text: str) -> bytes:
    """``text`` as UTF-8, where a path that is not valid UTF-8 (its bytes decoded as surrogates, as Python
    decodes file names) keeps its own bytes: a log line naming such a run folder failed the run."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte: shown as its escape
        return text.encode("utf-8", "backslashreplace")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


# ------------------------------------------------------------------- reading
def read_json_object(path: str | Path, max_bytes: int | None = None) -> dict[str, Any] | None:
    """A small JSON file's object, or None when it is missing, damaged, not an object or over ``max_bytes``
    (``MAX_JSON_FILE_BYTES`` by default)."""
    max_bytes = MAX_JSON_FILE_BYTES if max_bytes is None else max_bytes
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                return None
            raw = fh.read(size + 1)  # not max_bytes: read(n) allocates n bytes first; +1 sees a file that grew
        if len(raw) > max_bytes:
            return None
        value = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def iter_metrics(run_dir: str | Path, *, max_bytes: int | None = None,
                 events: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """The run's events one at a time, oldest first, read in chunks: memory stays bounded however long
    the run. Damaged lines (a truncated last one, junk, a line over ``MAX_METRICS_LINE_BYTES``) are
    skipped; ``max_bytes`` stops after that much of the file; ``events`` keeps only those kinds."""
    try:
        fh = open(Path(run_dir) / METRICS_FILE, "rb")
    except OSError:
        return
    wanted = tuple(f'"{kind}"'.encode() for kind in events) if events else None
    with fh:
        pending = b""  # the start of a line whose newline is not read yet
        skipping = False  # inside an over-long line: its bytes are dropped up to its newline
        read, ended = 0, False
        while max_bytes is None or read < max_bytes:
            try:
                size = min(_READ_CHUNK_BYTES, max(_FIRST_CHUNK_BYTES, read))  # doubling up to the full chunk
                chunk = fh.read(size if max_bytes is None else min(size, max_bytes - read))
            except OSError:
                return
            if not chunk:
                ended = True
                break
            read += len(chunk)
            *complete, rest = chunk.split(b"\n")
            if complete:
                complete[0] = b"" if skipping else pending + complete[0]
                skipping, pending = False, b""
            if not skipping:
                pending += rest
                if len(pending) > MAX_METRICS_LINE_BYTES:
                    pending, skipping = b"", True
            for line in complete:
                record = _metrics_record(line, wanted)
                if record is not None:
                    yield record
        if ended and pending:  # a last line without its newline (a killed writer's): whole only if it parses
            record = _metrics_record(pending, wanted)
            if record is not None:
                yield record


def _metrics_record(line: bytes, wanted: tuple[bytes, ...] | None) -> dict[str, Any] | None:
    if wanted is not None and not any(kind in line for kind in wanted):  # cheap: skips parsing most lines
        return None
    try:
        record = json.loads(line.decode("utf-8", errors="replace")) if line.strip() else None
    except ValueError:
        return None
    if not isinstance(record, dict) or (wanted is not None and f'"{record.get("event")}"'.encode() not in wanted):
        return None
    return record


def iter_history(run_dir: str | Path, *, max_bytes: int | None = None,
                 events: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """``iter_metrics`` without what resumes abandoned: a run resumed from a checkpoint at step S (an earlier
    one than its last, or its last after the process was killed past it) appends steps from S + 1 again,
    after records of steps past S that no longer belong to its history; a plotted history drew both.

    Two passes over the file, memory bounded as ``iter_metrics``'s: the ``started`` events first (each
    resume's ``resumed_from_step``), then the records, dropping those past a later resume's step. For
    readers of the history (the Train tab's replay, the Study tab's curves)."""
    resumes = [r.get("resumed_from_step") for r in iter_metrics(run_dir, max_bytes=max_bytes, events=("started",))]
    wanted = None if events is None else tuple(events) + ("started",)  # the resumes mark where segments begin
    records = without_abandoned_steps(iter_metrics(run_dir, max_bytes=max_bytes, events=wanted), resumes)
    for record in records:
        if events is None or record.get("event") in events:
            yield record


def without_abandoned_steps(records: Iterable[dict[str, Any]],
                            resumed_from: list[Any]) -> Iterator[dict[str, Any]]:
    """``records`` (metric records in file order, ``started`` events included) less those a later resume
    abandoned: ``resumed_from`` lists each ``started`` event's ``resumed_from_step`` in file order (None
    for a fresh start). A record after the k-th ``started`` event whose ``step`` is past the step of any
    resume after it is dropped; records without a step (logs, the evaluation) are kept. Streams: holds
    nothing but the cut-offs. ``started`` events beyond ``resumed_from`` (the file grew) cut nothing."""
    cutoffs: list[float] = []
    lowest = math.inf
    for step in reversed(resumed_from):  # cutoffs[k]: the lowest resume step after the k-th started event
        cutoffs.append(lowest)
        if isinstance(step, (int, float)) and not isinstance(step, bool):
            lowest = min(lowest, step)
    cutoffs.reverse()
    segment = -1
    for record in records:
        if record.get("event") == "started":
            segment += 1
        step = record.get("step")
        cutoff = cutoffs[max(segment, 0)] if max(segment, 0) < len(cutoffs) else math.inf
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step > cutoff:
            continue
        yield record


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every event of a run, oldest first; damaged lines (a truncated last one) are skipped. A long run
    has hundreds of thousands: prefer ``iter_metrics``, which does not hold them all."""
    return list(iter_metrics(run_dir))


@dataclass
class RunSummary:
    """One line of the runs list."""

    name: str
    path: Path
    status: str  # a RUN_STATES value, "interrupted", "unknown" or "unreadable"
    best_accuracy: float | None
    epochs_done: int | None  # None: unknown (no status.json, and a checkpoint that does not tell)
    total_epochs: int | None
    created: float  # Unix time
    model: str  # e.g. "IamNN-50 w16 adaptive"
    dataset: str
    reason: str = ""
    test_accuracy: float | None = None  # eval.json's top-1, None while not evaluated
    # eval.json's split: "test", or "val" for a dataset without test images (held out, they also chose the model)
    test_split: str | None = None
    evaluation_problem: str | None = None  # why eval.json cannot be read (damaged): then no test accuracy
    step: int | None = None  # optimiser steps done, from status.json
    steps_per_epoch: int | None = None  # from the run's "started" event
    # why config.toml cannot be read, for a run whose status.json still tells its state (model, dataset "?")
    config_problem: str | None = None
    # Whether `train --resume` can go on from last.pt, where the state alone cannot tell (no status.json, or
    # no config.toml): then the listing reads last.pt (``resume_problem``), and says why not where it cannot.
    resume_checked: bool = False
    resume_problem: str | None = None

    def epochs_text(self, separator: str = "/", *, brief: bool = False) -> str:
        """Whole epochs done of those planned, with the steps of a cut-short one: "0/1 (+40 of 844 steps)"
        ("0/1 (+40 steps)" ``brief``)."""
        return epochs_text(self.epochs_done, self.total_epochs, self.step, self.steps_per_epoch, separator=separator,
                           brief=brief)

    @property
    def step_limited(self) -> bool:
        """Whether the run ended at its step limit (``max_steps``) rather than after its epochs."""
        return ended_at_step_limit(self.status, self.reason)

    @property
    def status_text(self) -> str:
        """The status as the Runs tab, ``runs`` and the Study tab write it: "completed (step limit)"."""
        return status_text(self.status, self.reason)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["created_iso"] = datetime.fromtimestamp(self.created).astimezone().isoformat(timespec="seconds")
        return d


def ended_at_step_limit(state: str, reason: str | None) -> bool:
    """Whether a run ended at its step limit (``max_steps``) rather than after its epochs."""
    return state == "completed" and str(reason or "").startswith(STEP_LIMIT_REASON)


def status_text(state: str, reason: str | None) -> str:
    """A run's state, with "(step limit)" where a completed run ended at its ``max_steps``."""
    return f"{state} (step limit)" if ended_at_step_limit(state, reason) else state


def describe_model(model: ModelConfig) -> str:
    """A short human name: "IamNN-50 w16 adaptive", "IamNN caps 1·2·2·1 w8 fixed:2", "ResNet-18 w16"; a processing
    block other than the default follows the width ("IamNN-50 w4 depthwise adaptive"): runs of different blocks
    differ in parameters and MACs, and must not read alike. A ResNet has no processing block."""
    if model.architecture == "resnet":
        depth = f"ResNet-{model.depth}" if model.iterations is None else f"ResNet units {caps_text(model.caps)}"
        return f"{depth} w{model.width}"
    depth = f"IamNN-{model.depth}" if model.iterations is None else f"IamNN caps {caps_text(model.caps)}"
    block = f" {model.block}" if model.block != DEFAULT_BLOCK else ""
    mode = model.mode
    if mode == "adaptive" and model.halting == "act":
        mode = "adaptive ACT"
    return f"{depth} w{model.width}{block} {mode}"


#: The processing block a description leaves unsaid (``ModelConfig``'s default).
DEFAULT_BLOCK = ModelConfig.__dataclass_fields__["block"].default


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Every run under ``runs_dir``, newest first.

    Folders without any run file are someone else's and are skipped; a run whose config.toml cannot be read
    keeps what its status.json says (``config_problem`` says why its model and dataset are "?"), and one
    whose status.json cannot be read either is listed as "unreadable" rather than hidden.
    """
    runs_dir = Path(runs_dir)
    try:
        folders = [p for p in runs_dir.iterdir() if p.is_dir()]
    except OSError:
        return []
    summaries = []
    for folder in folders:
        try:
            summary = _summarise(folder)
        except OSError:
            continue  # vanished or unreadable while we looked
        except (ValueError, TypeError, OverflowError) as exc:  # a damaged file no check foresaw: this run only
            summary = RunSummary(name=folder.name, path=folder, status=UNREADABLE, best_accuracy=None, epochs_done=0,
                                 total_epochs=None, created=0.0, model="?", dataset="?",
                                 reason=f"damaged run files: {exc}")
        if summary is not None:
            summaries.append(summary)
    summaries.sort(key=lambda s: (s.created, s.name), reverse=True)
    return summaries


def _summarise(folder: Path) -> RunSummary | None:
    if not any((folder / marker).is_file() for marker in _RUN_MARKERS):
        return None
    run = RunDirectory(folder)
    status = run.read_status()
    created = _created_time(folder, status)
    try:
        config, config_problem = run.read_config().validate(), None
    except ValueError as exc:
        config, config_problem = None, str(exc)
    if config is None and (status is None or status.get("state") not in RUN_STATES):
        # neither file tells anything about the run: nothing to list but the problem
        return RunSummary(
            name=folder.name, path=folder, status=UNREADABLE, best_accuracy=None, epochs_done=0,
            total_epochs=None, created=created, model="?", dataset="?", reason=config_problem,
        )
    started = started_event(folder)
    max_steps = config.max_steps if config is not None else None
    payload = _payload_reader()  # the progress and the resume check may both read last.pt: once per listing
    step = status.get("step") if status else None
    if status is None:
        state, reason = "unknown", "status.json is missing or damaged"
        total = _planned_epochs(config, started)
        done, step, best = _checkpoint_progress(folder, max_steps, _steps_per_epoch(started), payload)
    else:
        state, reason = effective_state(status, folder)
        best = _number(status.get("best_accuracy"))
        done = _number(status.get("epochs_done"))
        done = int(done) if done is not None else _checkpoint_progress(folder, max_steps, _steps_per_epoch(started),
                                                                       payload)[0]
        total = _number(status.get("total_epochs"))
        total = int(total) if total is not None else config.epochs if config is not None else _planned_epochs(
            None, started)
    if state == "failed" and not (folder / CHECKPOINT_DIR / "last.pt").is_file():
        step = None  # the steps of a run that failed before its first checkpoint are lost: nothing to resume
    # the state alone says whether Continue can go on, except where status.json or config.toml is missing, or
    # where the process died: it may have died after its last save, with nothing left that a resume would do
    resume_checked = state in ("unknown", INTERRUPTED) or config is None
    problem = resume_problem(folder, config, payload) if resume_checked else None
    if state == INTERRUPTED:
        reason = interrupted_reason(reason, problem)
    top1, split, evaluation_problem = evaluation_summary(folder, config, started)
    return RunSummary(
        name=folder.name, path=folder, status=state, best_accuracy=best, epochs_done=done, total_epochs=total,
        created=created, model="?" if config is None else describe_model(config.model),
        dataset="?" if config is None else config.data.name, reason=reason,
        test_accuracy=top1, test_split=split, evaluation_problem=evaluation_problem,
        step=step if _is_count(step) else None,
        steps_per_epoch=_steps_per_epoch(started),
        config_problem=config_problem,
        resume_checked=resume_checked,
        resume_problem=problem,
    )


def _payload_reader() -> Callable[[Path], dict[str, Any] | None]:
    """``read_checkpoint_payload`` that reads each file once, for one run of one listing."""
    payloads: dict[Path, dict[str, Any] | None] = {}

    def read(path: Path) -> dict[str, Any] | None:
        if path not in payloads:
            payloads[path] = read_checkpoint_payload(path)
        return payloads[path]

    return read


def resume_problem(folder: str | Path, config: RunConfig | None,
                   read_payload: Callable[[Path], dict[str, Any] | None] | None = None) -> str | None:
    """Why ``train --resume`` would not go on from the run's last.pt, as far as that file (read torch-free)
    tells; None where it would. ``config`` is the run's config.toml, None where it cannot be read: the resume
    takes the settings last.pt stores, and needs config.toml only where it stores none. ``read_payload``
    (``read_checkpoint_payload`` by default) lets a listing read last.pt once for this and its progress."""
    last = Path(folder) / CHECKPOINT_DIR / "last.pt"
    if not _is_regular_file(last):
        return "it has no checkpoints/last.pt to continue from"
    payload = (read_payload or read_checkpoint_payload)(last)
    if payload is None:
        return "its checkpoints/last.pt cannot be read"
    state = payload.get("training_state")
    if not isinstance(state, dict) or state.get("version") != TRAINING_STATE_VERSION:
        return "its checkpoints/last.pt holds no training state to continue from"
    settings = _stored_run_config(payload) or config
    if settings is None:
        return "its config.toml cannot be read, and its checkpoints/last.pt stores no settings of its own"
    if nothing_left_to_resume(state, settings, evaluated=(Path(folder) / EVAL_FILE).exists()):
        return NOTHING_TO_CONTINUE
    return None


def interrupted_reason(reason: str, problem: str | None) -> str:
    """An interrupted run's reason (``effective_state``'s) corrected by ``resume_problem``'s answer: where
    last.pt cannot be resumed, "resume from the last checkpoint" would send the user to a Continue that refuses."""
    if problem == NOTHING_TO_CONTINUE:
        return ("its training process ended before it marked the run completed, after training and evaluating "
                "it: nothing is left to resume")
    if problem is not None and reason.endswith("resume from the last checkpoint"):
        return f"the training process ended without saying why, and {problem}"  # a damaged last.pt, say
    return reason


#: ``resume_problem`` of a run whose last.pt is trained, fitted and evaluated.
NOTHING_TO_CONTINUE = "it is trained and evaluated: nothing to continue (Train longer starts a new run from its weights)"


def nothing_left_to_resume(state: dict[str, Any], config: RunConfig, *, evaluated: bool) -> bool:
    """Whether a resume from ``state`` (last.pt's training state) has nothing left to do: trained, its halting
    head fitted where the run fits one, and evaluated. The trainer refuses such a resume; the listing too."""
    fitted = bool(state.get("halting_fitted")) or not calibrates_halting(config)
    return bool(state.get("training_done")) and fitted and evaluated


def _stored_run_config(payload: dict[str, Any]) -> RunConfig | None:
    """The run settings a checkpoint stores, read as ``load_checkpoint`` reads them (which the resume uses)."""
    stored = payload.get("run_config")
    if not isinstance(stored, dict):
        return None
    try:
        return RunConfig.from_dict(stored)
    except (ValueError, TypeError):
        return None


def _checkpoint_progress(folder: Path, max_steps: int | None, steps_per_epoch: int | None,
                         read_payload: Callable[[Path], dict[str, Any] | None]
                         ) -> tuple[int | None, int | None, float | None]:
    """(whole epochs done, steps done, best validation accuracy) as the run's newest checkpoint records them,
    for a run whose status.json is gone or damaged (copied without it, deleted): (0, None, None) without a
    checkpoint, as every epoch's end saves one; None where the checkpoint cannot tell, which the list shows as
    "?" or "n/a", never as a false 0. ``read_payload`` reads the checkpoint (the listing's, which reads it once)."""
    checkpoint = _newest_checkpoint(folder)
    if checkpoint is None:
        return 0, None, None
    state = _training_state(read_payload(checkpoint)) or {}
    # once the halting is fitted, the accuracy as the saved model runs (as the trainer's resume reads it)
    best = _number(state.get("calibrated_accuracy")) if state.get("halting_fitted") is True else None
    best = best if best is not None else _number(state.get("best_accuracy"))
    best = best if best is not None and 0.0 <= best <= 1.0 else None  # a fraction, as status.json holds it
    epoch, step = state.get("epoch"), state.get("step")
    if not (_is_count(epoch) and _is_count(step)):
        return None, None, best
    if steps_per_epoch:  # whole epochs only, as the trainer's status.json counts them
        return min(epoch, step // steps_per_epoch), step, best
    if max_steps is not None and step >= max_steps:
        return None, step, best  # the trainer counts an epoch its step limit cut short as ended: whole or not unknown
    return epoch, step, best


def _newest_checkpoint(folder: Path) -> Path | None:
    """The run's newest checkpoint: last.pt (its step is never behind best.pt's), else best.pt, else None.
    Only a regular file counts: opening a named pipe waits for a writer forever (the Runs tab hung)."""
    for name in ("last.pt", "best.pt"):
        path = folder / CHECKPOINT_DIR / name
        if _is_regular_file(path):
            return path
    return None


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _is_count(value: Any) -> bool:
    """A step or epoch count a checkpoint can hold: below 2**53 (a 5000-digit one broke its text)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


#: A checkpoint's pickled dict without its tensors is kilobytes (90 kB for depth 50 with its training state; the
#: tensors are separate archive entries). The bound also bounds what unpickling can build: ~80x its bytes (a
#: crafted file of memo opcodes: ~320 MB and ~2.5 s, off the UI thread).
MAX_CHECKPOINT_PICKLE_BYTES = 4 << 20


def read_training_state(path: str | Path) -> dict[str, Any] | None:
    """The ``training_state`` a checkpoint holds (epoch, step, ...; its tensors left out), or None where the
    file has none or cannot be read."""
    return _training_state(read_checkpoint_payload(path))


def _training_state(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    state = payload.get("training_state") if payload is not None else None
    return state if isinstance(state, dict) else None


def read_checkpoint_payload(path: str | Path) -> dict[str, Any] | None:
    """The dict a checkpoint pickles (its settings, training state, ...) with its tensors left out, or None
    where the file cannot be read. Reads only the archive's small pickle, not the weights, and imports
    nothing (no torch): cheap enough for every listing of the runs."""
    try:
        with zipfile.ZipFile(path) as archive:
            entry = _pickle_entry(archive)
            if entry is None:
                return None
            payload = _TensorsLeftOut(io.BytesIO(archive.read(entry))).load()
    except Exception:  # noqa: BLE001 - a damaged or foreign file of any kind: nothing known of it
        return None
    return payload if isinstance(payload, dict) else None


def _pickle_entry(archive: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    """The archive's top-level data.pkl, or None where there is none or it could be bigger than the limit.
    torch.save stores its entries uncompressed: a compressed one is foreign, and its claimed size does not
    bound what it inflates to (a few kB expanded to gigabytes)."""
    entry = next((i for i in archive.infolist() if i.filename.count("/") == 1
                  and i.filename.endswith("/data.pkl")), None)
    if entry is None or entry.compress_type != zipfile.ZIP_STORED:
        return None
    return entry if max(entry.file_size, entry.compress_size) <= MAX_CHECKPOINT_PICKLE_BYTES else None


class _TensorsLeftOut(pickle._Unpickler):  # type: ignore[name-defined]
    """Unpickles torch.save's plain data (dicts, lists, numbers, strings) with every tensor, storage and other
    torch object replaced by a stand-in: no class is looked up, so no code of the file's choosing runs.

    The pure-Python unpickler, not the C one: the C one sizes its memo by the largest index the file names (a
    9-byte pickle naming index 10**8 took a gigabyte); this one keeps a dict of the entries there are."""

    def find_class(self, module: str, name: str) -> Any:
        return dict if (module, name) == ("collections", "OrderedDict") else _LeftOut

    def persistent_load(self, pid: Any) -> None:  # a tensor's storage, kept outside the pickle
        return None


class _LeftOut:
    """What a tensor or another torch object unpickles to: it takes any arguments and any state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _planned_epochs(config: RunConfig | None, started: dict[str, Any] | None) -> int | None:
    """The epochs a run plans, without its status.json: its "started" event's count (which a step limit
    lowers), else the config's epochs, unless a step limit cuts them to a number only the dataset's size
    tells, or the config is unreadable (None)."""
    total = _number(started.get("total_epochs")) if started else None
    if total is not None:
        return int(total)
    return config.epochs if config is not None and config.max_steps is None else None


def evaluation_summary(run_dir: str | Path, config: RunConfig | None = None, started: dict[str, Any] | None = None
                       ) -> tuple[float | None, str | None, str | None]:
    """(top-1, split, problem) of the run's eval.json, read by the one check the Study tab uses
    (``evaluation_file.read_evaluation``): (None, None, None) while not evaluated; (None, None, why) for a file it
    refuses (cut short, empty, the wrong shape) or one of other classes than the run's (``evaluation_mismatch``,
    given its ``config`` and ``started`` event). The split is "test" where an older file names none, "val" for
    held-out images standing in for a test split."""
    from .evaluation_file import read_evaluation  # it reads this module's limits: imported here, not at the top

    path = Path(run_dir) / EVAL_FILE
    if not path.is_file():
        return None, None, None
    try:
        evaluation = read_evaluation(path)
    except OSError as error:
        return None, None, error.strerror or str(error)
    except ValueError as error:
        return None, None, str(error)
    mismatch = evaluation_mismatch(evaluation, config, started)
    if mismatch is not None:
        return None, None, mismatch
    split = evaluation.get("split")
    return _number(evaluation["top1"]), split if isinstance(split, str) and split else "test", None


def evaluation_mismatch(evaluation: dict[str, Any], config: RunConfig | None,
                        started: dict[str, Any] | None) -> str | None:
    """Why ``evaluation`` (eval.json's) is not of this run's model, or None: its classes are not those the run
    trains on (its ``started`` event's, else as many as its config.toml's model has). A file copied from another
    run showed that run's accuracy as this one's. An older file without its classes is taken at its word."""
    classes = evaluation.get("classes")
    if not isinstance(classes, list):
        return None
    dataset = started.get("dataset") if started else None
    trained = dataset.get("classes") if isinstance(dataset, dict) else None
    if isinstance(trained, list) and trained:
        if classes == trained:
            return None
        this_run = f"{len(trained)} ({_names(trained)})"
    elif config is None or len(classes) == config.model.num_classes:
        return None
    else:
        this_run = str(config.model.num_classes)
    return (f"it is another run's evaluation: of {len(classes)} classes ({_names(classes)}), and this run "
            f"classifies {this_run}")


def _names(classes: list[Any], shown: int = 4) -> str:
    """"a, b, c, d, …": the first few class names."""
    return ", ".join(str(name) for name in classes[:shown]) + (", …" if len(classes) > shown else "")


def steps_per_epoch(run_dir: str | Path) -> int | None:
    """Optimiser steps per epoch, from the run's ``started`` event (the first lines of metrics.jsonl)."""
    return _steps_per_epoch(started_event(run_dir))


def _steps_per_epoch(started: dict[str, Any] | None) -> int | None:
    value = started.get("steps_per_epoch") if started else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def started_event(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's first ``started`` event, looked for in the start of metrics.jsonl only (a long run's
    file is tens of megabytes, a damaged one may be gigabytes without a newline)."""
    return next(iter_metrics(run_dir, max_bytes=METRICS_HEAD_BYTES, events=("started",)), None)


def epochs_text(epochs_done: Any, total_epochs: Any, step: Any, steps_per_epoch: int | None, *,
                prose: bool = False, separator: str = "/", unit: str = "", brief: bool = False) -> str:
    """Epochs done of those planned, counting only whole ones: ``0/1 (+30 of 422 steps)`` for a run
    that max_steps or a stop ended 30 steps into its first epoch (the trainer counts that epoch as
    ended). ``prose`` gives a sentence for the end-of-run summary; ``separator`` goes between done and
    planned ("/" in the CLI, " / " in the app) and ``unit`` after them (" epochs"); ``brief`` leaves out the
    epoch's step count (``0/1 (+30 steps)``, for a narrow column)."""
    if not isinstance(step, int) or isinstance(step, bool) or not steps_per_epoch:
        if prose:
            return ""
        done = "?" if epochs_done is None else epochs_done  # "?": progress or a plan no file tells
        return f"{done}{separator}{total_epochs or '?'}{unit}"
    full, rest = divmod(step, steps_per_epoch)
    total = total_epochs if total_epochs else "?"
    if prose:
        more = f", and {rest} of the {steps_per_epoch} steps of epoch {full + 1}" if rest else ""
        return f"epochs done: {full} of {total}{more} (stopped at step {step})"
    of = "" if brief else f" of {steps_per_epoch}"
    return f"{full}{separator}{total}{unit}" + (f" (+{rest}{of} steps)" if rest else "")


def effective_state(status: dict[str, Any] | None, folder: str | Path | None = None) -> tuple[str, str]:
    """(state, reason) of a run as every view reports it: status.json's, except that a "running" or
    "paused" run whose process is gone is "interrupted"; ("unknown", why) without a status. Given the run's
    ``folder``, an interrupted run's reason offers a resume only where it has a last.pt to resume from."""
    if not status:
        return "unknown", "status.json is missing or damaged"
    state, reason = status.get("state"), str(status.get("reason", ""))
    if state not in RUN_STATES:  # a hand-edited or foreign file: "5" is no state to show
        return "unknown", f"status.json has no run state (state: {json.dumps(state)})"
    if state in ("running", "paused") and not _writer_alive(status):
        if folder is not None and not _is_regular_file(Path(folder) / CHECKPOINT_DIR / "last.pt"):
            return INTERRUPTED, ("the training process ended without saying why, before its first checkpoint: "
                                 "nothing to resume (start a new run)")
        return INTERRUPTED, "the training process ended without saying why; resume from the last checkpoint"
    return state, reason


def _created_time(folder: Path, status: dict[str, Any] | None) -> float:
    if status and isinstance(status.get("created"), str):
        try:
            return datetime.fromisoformat(status["created"]).timestamp()
        except ValueError:
            pass
    for marker in _RUN_MARKERS:
        try:
            return (folder / marker).stat().st_mtime
        except OSError:
            continue
    return folder.stat().st_mtime


def _number(value: Any) -> float | None:
    """A finite number from a status file, else None (JSON may hold NaN or Infinity)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _writer_alive(status: dict[str, Any]) -> bool:
    """Whether the process that wrote a "running" status still exists (only knowable on its host)."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return True  # another machine's run, or an old status: take it at its word
    if pid == os.getpid():
        return True
    if pid <= 0:  # os.kill(0 or -1, 0) asks about a whole process group, which always answers
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid this system can have
        return False
    except (PermissionError, OSError):  # another user's process: alive
        return True
    return True


class CheckpointLoads:
    """``load_checkpoint`` once per file for one check of a run: ``train_longer_problem`` and
    ``checkpoint_to_use`` both open best.pt (a deep model's is hundreds of MB, and its model is built), so the
    Runs tab's check shares one of these between them. A file is known by its path, size and modification time
    (one replaced meanwhile is loaded again); a failure is kept as well as a success. Holds the loaded models:
    keep it for one check only."""

    def __init__(self) -> None:
        self._outcomes: dict[tuple, Any] = {}

    def __call__(self, path: str | Path) -> Any:
        from .checkpoint import CheckpointError, load_checkpoint

        path = Path(path).absolute()
        try:
            info = path.stat()
            key = (path, info.st_size, info.st_mtime_ns)
        except OSError:
            key = (path, None, None)
        if key not in self._outcomes:
            try:
                self._outcomes[key] = load_checkpoint(path)
            except (CheckpointError, ValueError, OSError) as error:
                self._outcomes[key] = error
        outcome = self._outcomes[key]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def train_longer_problem(run_dir: str | Path, load: CheckpointLoads | None = None) -> str | None:
    """Why "Train longer" cannot start for the run in ``run_dir``, with what works instead; None when it can.

    Train longer is a new run with the run's config.toml that starts from its checkpoint's weights
    (``init_from``): it starts only where config.toml is readable and builds the network the checkpoint
    holds, by the trainer's own test (``trainer.weights_fit``), so that what is offered is what the
    trainer accepts. Reads the checkpoint (and imports torch): call it off the UI thread. ``load`` shares
    the loaded checkpoint with a ``checkpoint_to_use`` of the same check."""
    import torch

    from .checkpoint import CheckpointError, MissingPluginError, run_checkpoint
    from .model import build_model
    from .trainer import _network, train_longer_command, weights_fit

    path = Path(run_dir)
    load = load or CheckpointLoads()
    try:
        source = load(run_checkpoint(path))
    except MissingPluginError as error:  # the file is fine: a plugin is missing here
        return f"its checkpoint {error.needs}"
    except (CheckpointError, ValueError, OSError) as error:
        return f"its checkpoint cannot be read ({error})"
    # without --config the command line takes the network and the data from the checkpoint
    instead = f"to train it longer, run {train_longer_command(path, None)}"
    try:
        config = RunConfig.load(path / CONFIG_FILE).validate()
    except (OSError, ValueError, TypeError) as error:
        return f"its settings file cannot be read ({error}); {instead}"
    try:
        with torch.device("meta"):  # the shapes, without the memory or the time of real weights
            model = build_model(config.model)
    except ValueError as error:  # e.g. a processing block whose plugin is not installed here
        return f"its settings describe a network that cannot be built here ({error}); {instead}"
    if not weights_fit(model, config.model, source):
        return (f"its config.toml describes {_network(config.model)} for {config.model.num_classes} classes, but its "
                f"checkpoint holds {_network(source.model_config)} for {len(source.classes)} classes (the file was "
                f"damaged or edited); {instead}")
    return None


def checkpoint_to_use(run_dir: str | Path, load: CheckpointLoads | None = None) -> tuple[Path | None, str | None]:
    """(the checkpoint the Use tab can open for the run, why a checkpoint before it was passed over): best.pt,
    else last.pt where best.pt is missing or cannot be read; (None, why) where neither opens. Loads them as the
    Use tab does (``load_checkpoint``, torch): call it off the UI thread. ``load`` shares the loaded checkpoints
    with a ``train_longer_problem`` of the same check."""
    from .checkpoint import CheckpointError, MissingPluginError

    load = load or CheckpointLoads()
    problems: list[str] = []
    needing: dict[str, list[str]] = {}  # what a plugin missing here is needed for -> the files that need it
    for name in ("best.pt", "last.pt"):
        path = Path(run_dir) / CHECKPOINT_DIR / name
        if not _is_regular_file(path):
            continue
        try:
            load(path)
        except MissingPluginError as error:  # the file is fine: a plugin is missing here (said once for both files)
            files = needing.setdefault(error.needs, [])
            if not files:
                problems.append(error.needs)  # placeholder, worded below once every file that needs it is known
            files.append(f"{CHECKPOINT_DIR}/{name}")
            continue
        except (CheckpointError, ValueError, OSError) as error:
            problems.append(f"{CHECKPOINT_DIR}/{name} cannot be read ({error})")
            continue
        return path, _problems_text(problems, needing) or None
    return None, _problems_text(problems, needing) or "it has no checkpoint yet"


def _problems_text(problems: list[str], needing: dict[str, list[str]]) -> str:
    """``checkpoint_to_use``'s problems in one line; a missing plugin named once with every file that needs it
    ("checkpoints/best.pt and checkpoints/last.pt need ...")."""
    def worded(problem: str) -> str:
        files = needing.get(problem)
        if not files:
            return problem
        verb = "needs" if len(files) == 1 else "need"
        return f"{' and '.join(files)} {verb}{problem[len('needs'):]}"
    return "; ".join(worded(problem) for problem in problems)
