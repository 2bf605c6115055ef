"""Batch inference on the CPU as single-threaded halves when OpenMP's threads sleep between ops.

The app sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (idle OpenMP threads must not spin
on the UI thread's core while a run trains). A passive team sleeps after every parallel op and
is woken for the next, about 50 us each on the 2-core machine we measure on, and an adaptive pass
is ~2,800 small ops (``max`` mode ~700). Two worker threads, each running half the batch with one
OpenMP thread, pay no wake-ups: on 2 cores, 256 Fashion-MNIST images at width 16, adaptive
107 -> 87 ms and ``max`` 176 -> 160 ms; 64 images 39 -> 29 and 48 -> 40 ms. With OpenMP's default
spin the split gains nothing at 256 images and loses on small batches, so it is used only under
PASSIVE (see docs/benchmarks.md, early exit).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn

from .model import IamNN, ModelOutput

WORKERS = 2
#: Below this many images per worker a half-batch is all call overhead; one pass is as quick.
MIN_IMAGES_PER_WORKER = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
#: False once a worker's thread count was seen to leak into its caller (a torch build whose
#: set_num_threads is process-wide, not per thread as with OpenMP); splitting then stays off.
_thread_counts_are_per_thread = True


def passive_openmp() -> bool:
    """Whether OpenMP threads sleep between ops (read from the environment, as OpenMP does)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def workers_for(model: nn.Module, x: Tensor) -> int:
    """How many single-threaded halves ``forward`` would run ``x`` as (1 = one ordinary pass)."""
    if not (
        _thread_counts_are_per_thread
        and isinstance(model, IamNN)
        and not model.training  # batchnorm on batch statistics: each half would see other statistics
        and x.device.type == "cpu"
        and torch.get_num_threads() >= WORKERS
        and len(x) >= WORKERS * MIN_IMAGES_PER_WORKER
        and passive_openmp()
    ):
        return 1
    return WORKERS


def forward(model: nn.Module, x: Tensor, **kwargs) -> ModelOutput:
    """``model(x, **kwargs)`` without autograd, split over worker threads where that is quicker.

    Same results as one pass (each image's computation does not depend on the others in eval
    mode); the caller's thread count is unchanged.
    """
    global _thread_counts_are_per_thread
    with torch.no_grad():
        workers = workers_for(model, x)
        if workers == 1:
            return model(x, **kwargs)
        threads = torch.get_num_threads()
        per_worker = max(1, threads // workers)

        def run(chunk: Tensor) -> ModelOutput:
            if torch.get_num_threads() != per_worker:  # this thread's OpenMP team (once per worker: it keeps it)
                torch.set_num_threads(per_worker)
            with torch.no_grad():  # grad mode is per thread
                return model(chunk, **kwargs)

        try:
            results = list(_workers().map(run, x.chunk(workers)))
        finally:  # also when a worker raised (out of memory): the count must not stay changed
            if torch.get_num_threads() != threads:
                _thread_counts_are_per_thread = False
            # torch.set_num_threads also stores the count that every thread started later begins with
            # (torch's lazy per-thread init): without this, a training or evaluation thread started
            # after the first split prediction ran on one core.
            torch.set_num_threads(threads)
        return merge(results)


def merge(outputs: list[ModelOutput]) -> ModelOutput:
    """One ``ModelOutput`` for the concatenated batch (an extra that is not a tensor: the first's)."""
    first = outputs[0]
    extras = {
        key: torch.cat([o.extras[key] for o in outputs]) if isinstance(value, Tensor) and value.dim() else value
        for key, value in first.extras.items()
    }
    return ModelOutput(
        logits=torch.cat([o.logits for o in outputs]),
        iterations=torch.cat([o.iterations for o in outputs]),
        halting=[torch.cat(parts) for parts in zip(*(o.halting for o in outputs))],
        ponder_cost=torch.cat([o.ponder_cost for o in outputs]),
        macs=torch.cat([o.macs for o in outputs]),
        extras=extras,
    )


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="iamnn-split-forward",
                                       initializer=_normal_scheduling)
        return _pool


def _normal_scheduling() -> None:
    """The pool's threads serve every caller: they take Linux's normal policy, not the one of the thread that
    happened to start them (the app's training thread runs as SCHED_BATCH, and its final evaluation may
    be the first to split a batch)."""
    policy = getattr(os, "SCHED_OTHER", None)
    if policy is not None and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, policy, os.sched_param(0))
        except OSError:
            pass
