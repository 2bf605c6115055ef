"""Training on several processes: DistributedDataParallel under torch's elastic launcher.

``launch`` starts ``nproc_per_node`` workers through ``torch.distributed.launcher`` (what
``torchrun`` runs), so torchrun's static multi-node set-up works: every node calls ``launch``
with the same ``nnodes``, ``master_addr`` and ``master_port`` and its own ``node_rank``. A
process that ``torchrun`` itself started (RANK / WORLD_SIZE / LOCAL_RANK set) runs its worker
in place instead.

Each worker runs the ordinary ``Trainer``, which sees the initialised process group and then
wraps the model in DDP, shards every epoch with a ``DistributedSampler`` and all-reduces its
metrics. Only global rank 0 writes the run folder and emits events; ``launch`` hands those events
to its listeners: rank 0 appends each to a file in a temporary folder of the launcher's, which the
launcher follows (``_EventForwarder``, ``_EventFollower``). Not the run's ``metrics.jsonl``: a run
folder turned read-only or full takes no more events, and the warnings saying so would never reach
the terminal.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist

from .config import RunConfig, caps_text
from .events import Event, Listener

log = logging.getLogger(__name__)

#: How long the workers of a multi-node run wait for each other to join (seconds).
RENDEZVOUS_TIMEOUT = 900


@dataclass
class Collective:
    """This process's place in the job and the few collectives the trainer needs.

    With one process every operation is a no-op, so the trainer has one code path.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this machine (--nproc-per-node): world_size / machines

    @classmethod
    def current(cls) -> "Collective":
        """The initialised process group, or a job of one."""
        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
            return cls(rank=rank, world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", rank)),
                       local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        return cls()

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes, in place."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def started_by_torchrun() -> bool:
    """Whether this process is one worker of a job that torchrun (or another launcher) started."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


# --------------------------------------------------------------------------- launching
def launch(
    config: RunConfig | None,
    nproc_per_node: int,
    *,
    runs_dir: str | Path = "runs",
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    resume: bool = False,
    run_dir: str | Path | None = None,
    listeners: Iterable[Listener] = (),
):
    """Train ``config`` on ``nnodes`` x ``nproc_per_node`` processes; returns rank 0's ``RunResult``.

    ``resume=True`` continues ``run_dir`` from its ``last.pt`` (every node must see that folder)
    with the same number of processes. ``listeners`` receive rank 0's events (on the first node).
    On nodes other than the first, the result describes this node's workers only. Every node
    needs the dataset; only the first node writes the run folder.
    """
    from .trainer import Trainer

    if config is None and not resume:
        raise ValueError("config: a new run needs a RunConfig")
    if config is not None:
        config = copy.deepcopy(config).validate()
    for name, value, low in (("nproc_per_node", nproc_per_node, 1), ("nnodes", nnodes, 1),
                             ("master_port", master_port, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank: must be in [0, {nnodes - 1}], got {node_rank!r}")
    if resume and run_dir is None:
        raise ValueError("run_dir: resuming needs the run folder")
    if nnodes > 1:
        _check_address(master_addr, master_port)
    if config is not None and config.init_from:  # said once here, not by every worker (or after the rendezvous)
        from .checkpoint import CheckpointError, run_checkpoint

        try:
            start = run_checkpoint(config.init_from)
        except CheckpointError as exc:
            raise ValueError(f"init_from: {exc}") from None
        if not start.is_file():
            raise ValueError(f"init_from: no such checkpoint: {start}")
        _check_same_network(start, config)

    if started_by_torchrun():
        return _worker(config, str(runs_dir), None if run_dir is None else str(run_dir), resume)

    if nnodes == 1 and nproc_per_node == 1:  # nothing to distribute
        return Trainer(config, runs_dir=runs_dir, run_dir=run_dir, resume=resume, listeners=listeners).run()
    check_process_count(config, nproc_per_node)

    if not resume and node_rank == 0:
        from .runs import RunDirectory

        # Choose the folder here, so this process knows which metrics.jsonl to follow.
        run_dir = RunDirectory.create(runs_dir, config.name).path

    launch_config = _launch_config(nproc_per_node, nnodes, node_rank, master_addr, master_port)
    listeners = list(listeners)
    # Rank 0 runs on the first node: there it hands its events to this process through a file of ours.
    events_folder = _events_folder() if listeners and node_rank == 0 else None
    events_path = None if events_folder is None else events_folder / EVENTS_FILE
    follower = None
    if events_path is not None:
        follower = _EventFollower(events_path, listeners)
    elif run_dir is not None and node_rank == 0:  # no temp folder to be had: the run's own record
        follower = _EventFollower(Path(run_dir) / "metrics.jsonl", listeners)
    try:
        with _interruptible_rendezvous(nnodes, on_interrupt=lambda: _keep_if_used(run_dir, resume)):
            if nnodes > 1:  # the launcher says nothing while it waits: say what it waits for
                for listener in listeners:
                    listener(Event("log", {"message": (
                        f"node {node_rank} of {nnodes}: waiting for the other nodes at {master_addr}:{master_port} "
                        f"(up to {RENDEZVOUS_TIMEOUT // 60} min; each node runs the same command with its own "
                        "--node-rank; Ctrl-C quits at once)")}))
            if follower:
                follower.start()
            results = _elastic_launch(launch_config, config, str(runs_dir), run_dir, resume,
                                      None if events_path is None else str(events_path))
    except Exception as exc:  # a worker failed or the launcher was interrupted: the workers are gone
        failure: Exception | None = exc
    else:
        failure = None
    finally:
        if follower:
            follower.stop()  # after its last read: rank 0's last event, where it got that far
        if events_folder is not None:
            shutil.rmtree(events_folder, ignore_errors=True)
    if failure is not None:
        # rank 0 ends a stopped download as failed (the others' wait for it ends only so); its sentence says what
        ended = (follower.ended or {}) if follower else {}
        said = ended.get("reason") if ended.get("download_stopped") else None
        return _result_after_error(failure, run_dir, resume, message=said if isinstance(said, str) else "")
    return _merge_results(results)


#: The file in the launcher's temporary folder that rank 0 appends its events to.
EVENTS_FILE = "events.jsonl"


def _events_folder() -> Path | None:
    """A private temporary folder for rank 0's events; None where none can be made (the launcher then
    follows the run's metrics.jsonl, as far as it gets written)."""
    try:
        return Path(tempfile.mkdtemp(prefix="iamnn-events-"))
    except OSError:
        log.warning("no temporary folder for the training events; following the run's metrics.jsonl",
                    exc_info=True)
        return None


def _check_same_network(start: Path, config: RunConfig) -> None:
    """What can be compared before the data is loaded (the workers check the rest): a network of another
    shape is one sentence here, not a traceback from every worker."""
    from .checkpoint import CheckpointError, load_checkpoint

    try:
        theirs = load_checkpoint(start).model_config
    except CheckpointError as exc:
        raise ValueError(f"init_from: {exc}") from None
    ours = config.model
    for name, mine, other in (("architecture", ours.architecture, theirs.architecture),
                              ("caps", caps_text(ours.caps), caps_text(theirs.caps)),
                              ("width", ours.width, theirs.width), ("block", ours.block, theirs.block)):
        if mine != other:
            raise ValueError(f"init_from: {start} holds a network of {name} {other}, this run builds {name} {mine}; "
                             "choose the same architecture, depth, iterations and width")
    from .data import known_channels_and_classes

    # An image folder's classes are its class folders, its channels told only by a colour first image: what a
    # glance leaves open (None), the workers check once the data is loaded.
    channels, classes = known_channels_and_classes(config.data)
    if channels not in (None, theirs.in_channels) or classes not in (None, theirs.num_classes):
        def images(channels: int | None, classes: int | None) -> str:
            counts = [] if channels is None else [f"{channels} channel{'s' * (channels != 1)}"]
            counts += [] if classes is None else [f"{classes} class{'es' * (classes != 1)}"]
            return " and ".join(counts)

        raise ValueError(f"init_from: {start} holds a network for images of {images(theirs.in_channels, theirs.num_classes)}, "
                         f"this run's dataset {config.data.name} has {images(channels, classes)}; "
                         "choose a dataset of the same channels and class count")


@contextlib.contextmanager
def _interruptible_rendezvous(nnodes: int, on_interrupt=None):
    """While a multi-node launcher waits for the other nodes it sits in C++ (the rendezvous store's
    connect loop), where Python's handlers of Ctrl-C and SIGTERM never run. Python's C-level handler still writes
    the signal to a wakeup fd at once, and the wait releases the GIL: a watcher thread reads it,
    calls ``on_interrupt`` (drop the run folder reserved for the job if nothing was written to it)
    and ends the process with Ctrl-C's status, 130 (only the main thread may restore the default
    action, and it is stuck in the wait). Once workers run it leaves the signal to torch's launcher: the
    workers stop on Ctrl-C themselves (``_stop_on_signals``) and save a checkpoint."""
    if nnodes == 1 or threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    # The watcher acts on Ctrl-C and on SIGTERM (kill, timeout); Python's own handlers need not.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    done = threading.Event()

    def watch() -> None:
        import select

        while not done.is_set():
            ready, _, _ = select.select([read_fd], [], [], 0.2)
            received = os.read(read_fd, 64) if ready else b""
            quit_on = [sig for sig in (signal.SIGINT, signal.SIGTERM) if sig in received]
            if quit_on and multiprocessing.active_children():
                # the workers run: torch's launcher handles the signal (its handlers stop them with SIGTERM, a
                # graceful stop that saves a checkpoint) and waits for them; ending here would kill them
                # before they save (they end with their launcher: ``_end_with_launcher``)
                continue
            if quit_on and not done.is_set():
                if on_interrupt is not None:
                    try:
                        on_interrupt()
                    except Exception:  # ending the process matters more than tidying up
                        log.debug("cleanup after Ctrl-C failed", exc_info=True)
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os._exit(128 + quit_on[0])  # the status the signal's default action gives (130, 143)

    watcher = threading.Thread(target=watch, name="iamnn-ctrl-c-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        watcher.join()
        os.close(read_fd)
        os.close(write_fd)


def process_limit(config: RunConfig | None) -> tuple[int, str]:
    """How many training processes this machine runs at once, and what sets that ("2 CPU cores"): one per
    visible GPU where the workers train on CUDA (as ``_train_in_this_process`` decides), else one per core."""
    if torch.cuda.is_available() and (config is None or config.device != "cpu"):
        gpus = torch.cuda.device_count()
        return gpus, f"{gpus} visible GPU{'s' * (gpus != 1)}"
    from .trainer import usable_cores

    cores = usable_cores()
    return cores, f"{cores} CPU core{'s' * (cores != 1)}"


def check_process_count(config: RunConfig | None, nproc_per_node: int, flag: str = "nproc_per_node") -> None:
    """``ValueError`` before any process starts where this machine cannot run ``nproc_per_node`` workers:
    each takes hundreds of MB, and more of them than cores (or GPUs) only fill the memory."""
    limit, what = process_limit(config)
    if nproc_per_node > limit:
        unit = "GPU" if "GPU" in what else "core"
        raise ValueError(f"{flag}: this machine runs at most {limit} training process{'es' * (limit != 1)} at "
                         f"once (one per {unit}; it has {what}), got {nproc_per_node}")


def _check_address(master_addr: str, master_port: int) -> None:
    """A master address that does not resolve is a one-line error now, not a launcher retrying for
    the whole rendezvous timeout."""
    import socket

    if master_port > 65535:
        raise ValueError(f"master_port: must be at most 65535, got {master_port}")
    try:
        socket.getaddrinfo(master_addr, master_port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"master_addr: cannot resolve {master_addr!r} ({exc.strerror or exc})") from None


def _launch_config(nproc_per_node: int, nnodes: int, node_rank: int, master_addr: str, master_port: int):
    from torch.distributed.launcher.api import LaunchConfig

    return LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc_per_node,
        run_id=f"iamnn-{uuid.uuid4().hex[:8]}" if nnodes == 1 else f"iamnn-{master_addr}-{master_port}",
        rdzv_backend="static",  # torchrun --nnodes N --node-rank R --master-addr A --master-port P
        rdzv_endpoint=f"{master_addr}:{master_port}",
        rdzv_configs={"rank": node_rank, "timeout": RENDEZVOUS_TIMEOUT},
        max_restarts=0,  # a failed run is reported, not silently restarted from scratch
        monitor_interval=0.2,
        start_method="spawn",
    )


def _elastic_launch(launch_config, config, runs_dir: str, run_dir, resume: bool,
                    events_path: str | None = None) -> dict[int, Any]:
    from torch.distributed.launcher.api import elastic_launch

    already_running = set(multiprocessing.active_children())
    try:
        with _signal_handlers_kept(), _launcher_warnings_muted():  # torch's launcher installs its own handlers
            return elastic_launch(launch_config, _worker)(
                config, runs_dir, None if run_dir is None else str(run_dir), resume, True, events_path, os.getpid()
            )
    finally:
        _end_workers_left(already_running)


#: How long workers the launcher lost track of get to end on SIGTERM before they are killed (seconds).
LEFT_WORKERS_GRACE = 5.0


def _end_workers_left(already_running: set) -> None:
    """End the workers still alive once the launcher is done. Torch's launcher starts them one by one and
    shuts down only those it had recorded: a Ctrl-C or SIGTERM while it was still starting them left the
    ones started so far running (waiting for peers that never come), each holding its memory."""
    import time

    left = [p for p in multiprocessing.active_children() if p not in already_running]
    for process in left:
        process.terminate()
    deadline = time.monotonic() + LEFT_WORKERS_GRACE
    for process in left:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():  # blocked in C++ (the rendezvous), out of reach of its Python handlers
            process.kill()
            process.join(1)


@contextlib.contextmanager
def _launcher_warnings_muted():
    """On Ctrl-C the launcher logs "Received 2 death signal, shutting down workers" and "Closing process
    ... via signal SIGINT" as warnings: the run's own "stopped" line says it. Its errors still show, except the
    traceback of a worker that ended with the trainer's own sentence (``WorkerFailed``): the caller says that."""
    import logging

    import torch.distributed.elastic.agent.server.api  # noqa: F401  (creates the loggers to quiet)
    import torch.multiprocessing.spawn  # noqa: F401  ("Terminating process ... via signal SIGTERM": the others)

    # each of the launcher's modules sets its own logger's level (torch.distributed.elastic.utils.logging)
    loggers = [logging.getLogger(name) for name, logger in list(logging.Logger.manager.loggerDict.items())
               if name.startswith(("torch.distributed.elastic", "torch.multiprocessing"))
               and isinstance(logger, logging.Logger)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
        logger.addFilter(_without_worker_failures)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
            logger.removeFilter(_without_worker_failures)


def _without_worker_failures(record) -> bool:
    """A logging filter: drops the launcher's report of a worker that raised ``WorkerFailed``."""
    error = record.exc_info[1] if record.exc_info else None
    return error is None or f"{WorkerFailed.__module__}.{WorkerFailed.__name__}: " not in str(error)


@contextlib.contextmanager
def _signal_handlers_kept(signals=(signal.SIGINT, signal.SIGTERM)):
    """Restore this process's handlers of ``signals`` on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


class WorkerFailed(RuntimeError):
    """One worker's run failed; raised so the launcher stops the others instead of leaving them waiting."""


def _result_after_error(exc: Exception, run_dir, resume: bool, message: str = ""):
    """What the job came to, from rank 0's status.json where it got that far (Ctrl-C stops with a
    checkpoint, but reaches the launcher as an error), else from the first failed worker. ``message``: what
    a stop before training says, where rank 0's stopped download said it (its "failed" event)."""
    from .runs import RunDirectory
    from .trainer import RunResult

    status = (RunDirectory(run_dir).read_status() if run_dir is not None else None) or {}
    state, reason = status.get("state"), status.get("reason")
    best = status.get("best_accuracy")
    if state == "stopped":
        return RunResult(run_dir=Path(run_dir), reason="stopped", best_accuracy=best, state="stopped")
    if _interrupted(exc) and not status:
        # Ctrl-C or SIGTERM before the run wrote any status (its dataset still downloading): a stop the user
        # asked for, as in one process, not a failure of the workers the launcher then shut down
        return RunResult(run_dir=_keep_if_used(run_dir, resume), reason="stopped", best_accuracy=best,
                         state="stopped", message=message or STOPPED_BEFORE_TRAINING)
    if state != "failed" or not reason:
        reason = _failure_reason(exc)
    return RunResult(run_dir=_keep_if_used(run_dir, resume), reason=str(reason), best_accuracy=best, state="failed")


#: What a run of several processes stopped before training says where rank 0's own sentence (that of its
#: stopped download) did not reach the launcher.
STOPPED_BEFORE_TRAINING = "stopped before training started; nothing was trained"


def _interrupted(exc: Exception) -> bool:
    """Whether the launcher ended because it was sent SIGINT or SIGTERM (torch's ``SignalException``)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException

    return isinstance(exc, SignalException)


def _failure_reason(exc: Exception) -> str:
    """The first failed worker's message (the trainer's own sentence when it raised ``WorkerFailed``)."""
    message = ""
    first_failure = getattr(exc, "get_first_failure", None)
    if first_failure is not None:
        rank, failure = first_failure()
        message = failure.message.get("message", "") if isinstance(failure.message, dict) else str(failure.message)
        prefix = f"{WorkerFailed.__name__}: "
        if message.startswith(prefix):
            return message[len(prefix):]
        message = message or f"exit code {failure.exitcode}"
        return f"training process {rank} failed: {_first_line(Exception(message))}"
    return f"a training process failed: {_first_line(exc) or type(exc).__name__}"


def _keep_if_used(run_dir, resume: bool) -> Path | None:
    """Drop the folder ``launch`` reserved if the workers failed before writing anything to it."""
    if run_dir is None:
        return None
    path = Path(run_dir)
    if not resume:
        try:
            path.rmdir()  # only succeeds when empty
            return None
        except OSError:
            pass
    return path


def _merge_results(results: dict[int, Any]):
    """Rank 0's result (or this node's first), carrying every rank's parameter digest."""
    ranked = {rank: result for rank, result in results.items() if result is not None}
    main = ranked.get(0) or ranked[min(ranked)]
    for result in ranked.values():
        main.parameter_digests.update(result.parameter_digests)
    return main


def _worker(config: RunConfig | None, runs_dir: str, run_dir: str | None, resume: bool,
            spawned_by_launch: bool = False, events_path: str | None = None, launcher_pid: int | None = None):
    """One training process: join the process group, train, leave. Rank 0 appends its events to
    ``events_path`` (the launcher follows that file) where one is given; a worker of ``launcher_pid`` ends
    with it."""
    if launcher_pid is not None:
        _end_with_launcher(launcher_pid)
    try:
        return _train_in_this_process(config, runs_dir, run_dir, resume, spawned_by_launch, events_path)
    except KeyboardInterrupt:
        # Ctrl-C reached this process outside the run's own handler (while it joined the group or built its
        # trainer, on a loaded machine): the launcher says how the job ended; a worker's traceback only hid it
        raise SystemExit(128 + signal.SIGINT) from None


#: prctl's option that has the kernel send this process a signal when its parent ends (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def _end_with_launcher(launcher_pid: int) -> None:
    """Have the kernel kill this worker when its launcher ends (Linux): a launcher that is killed, or that
    dies of its own error, gets no chance to stop its workers, and without it they would wait for their
    peers (or train) on, unseen. Its workers then lose at most the steps since their last checkpoint."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):  # no C library to ask: the launcher's own shutdown still applies
        return
    if os.getppid() != launcher_pid:  # the launcher ended before the kernel was told: nobody waits for us
        os._exit(1)


def _train_in_this_process(config: RunConfig | None, runs_dir: str, run_dir: str | None, resume: bool,
                           spawned_by_launch: bool, events_path: str | None):
    from .trainer import Trainer

    cuda = torch.cuda.is_available() and (config is None or config.device != "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    elif config is not None and config.num_threads is None:
        # Several processes share the CPU: without this each would start one thread per core.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        from .trainer import usable_cores

        torch.set_num_threads(max(1, usable_cores() // local_world))
    # Convolutions over one input channel give gradients whose (irrelevant) strides differ from
    # DDP's buckets; DDP copies them correctly but warns on every step.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    signalled = threading.Event()
    try:
        forward = [_EventForwarder(Path(events_path))] if events_path and dist.get_rank() == 0 else []
        trainer = Trainer(config, runs_dir=runs_dir, run_dir=run_dir, resume=resume, listeners=forward)
        with _stop_on_signals(trainer, signalled):
            result = trainer.run()
        if result.state == "failed" and dist.get_world_size() > 1:
            raise WorkerFailed(result.reason)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        if signalled.is_set() and spawned_by_launch:
            # The launcher is shutting down and no longer collects results (nor errors: a stopped download
            # fails the others' wait): a worker that waited to hand its result over would only be killed after
            # the launcher's shutdown timeout, and the launcher's own SIGINT to its workers, landing in this
            # process's shutdown, printed a KeyboardInterrupt traceback under the job's last line.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return result


@contextlib.contextmanager
def _stop_on_signals(trainer, signalled: threading.Event):
    """While the run trains, SIGTERM / SIGINT (the launcher passing on Ctrl+C) ask for a graceful
    stop with a checkpoint; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    handling = False

    def stop(*_) -> None:
        # Ctrl-C reaches a worker twice (from the terminal, then from the launcher shutting down), and Python
        # may run the second handler inside the first: there it would wait forever on a lock the first holds
        # (an Event's, the trainer's), the launcher would kill the worker 30 s later, its last event unsaid.
        nonlocal handling
        if handling:
            return
        handling = True
        try:
            from .data import stop_downloads

            signalled.set()
            trainer.stop()
            stop_downloads()  # a dataset download would otherwise go on (or wait for a silent server) first
        finally:
            handling = False

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class _EventForwarder:
    """Rank 0's listener in a job ``launch`` started: appends each event, one JSON line as in metrics.jsonl,
    to the launcher's file. Every event goes, the warnings that the run folder takes no more of them
    included; a file that cannot be written is said once in the log and forwarding stops."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._broken = False

    def __call__(self, event: Event) -> None:
        if self._broken:
            return
        from .runs import _json_default

        line = json.dumps(event.to_dict(), default=_json_default, allow_nan=True) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)  # the follower takes whole lines only: a line still being written waits
        except OSError as exc:
            self._broken = True
            log.warning("the training events no longer reach the launcher: cannot write %s (%s)", self.path, exc)


class _EventFollower(threading.Thread):
    """Reads a JSON-lines file of rank 0's events as it grows and hands each event to the listeners."""

    def __init__(self, path: Path, listeners: list[Listener], interval: float = 0.2) -> None:
        super().__init__(name="iamnn-event-follower", daemon=True)
        self.path = path
        self.listeners = listeners
        self.interval = interval
        self._offset = 0
        self._done = threading.Event()
        self.ended: dict | None = None  # the data of rank 0's last "finished" or "failed" event
        if self.path.exists():  # resuming: only the new events
            self._offset = self.path.stat().st_size

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self._read_new()
        self._read_new()

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)

    def _read_new(self) -> None:
        if not self.listeners:
            return
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return
        complete = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self._offset += complete
        for line in chunk[:complete].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or "event" not in record:
                continue
            kind = str(record.pop("event"))
            stamp = record.pop("time", None)
            event = Event(kind, record) if stamp is None else Event(kind, record, float(stamp))
            if kind in ("finished", "failed"):
                self.ended = record
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("a training listener failed on a %s event", kind)
