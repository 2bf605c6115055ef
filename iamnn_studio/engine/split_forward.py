"""Batch inference on the CPU as single-threaded halves when OpenMP's threads sleep between ops.

The app sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (idle OpenMP threads must not spin
on the UI thread's core while a run trains). A passive team sleeps after every parallel op and
is woken for the next, about 50 us each on the 2-core machine we measure on, and an adaptive pass
is ~2,800 small ops (``max`` mode ~700). Two threads (the caller and a pool thread), each running half
the batch with one OpenMP thread, pay no wake-ups: on 2 cores, 256 Fashion-MNIST images at width 16, adaptive
107 -> 87 ms and ``max`` 176 -> 160 ms; 64 images 39 -> 29 and 48 -> 40 ms. With OpenMP's default
spin the split gains nothing at 256 images and loses on small batches, so it is used only under
PASSIVE (see docs/benchmarks.md, early exit).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import torch
from torch import Tensor, nn

from .model import IamNN, ModelOutput

WORKERS = 2
#: Below this many images per worker a half-batch is all call overhead; one pass is as quick.
MIN_IMAGES_PER_WORKER = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
#: Whether torch.set_num_threads in one thread leaves the others' counts alone (OpenMP builds), found out
#: once (None: not yet). Where the count is process-wide (other builds), splitting stays off.
_thread_counts_are_per_thread: bool | None = None


def passive_openmp() -> bool:
    """Whether OpenMP threads sleep between ops (read from the environment, as OpenMP does)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def workers_for(model: nn.Module, x: Tensor) -> int:
    """How many single-threaded halves ``forward`` would run ``x`` as (1 = one ordinary pass)."""
    if not (
        isinstance(model, IamNN)
        and not model.training  # batchnorm on batch statistics: each half would see other statistics
        and x.device.type == "cpu"
        and torch.get_num_threads() >= WORKERS
        and len(x) >= WORKERS * MIN_IMAGES_PER_WORKER
        and passive_openmp()
        and _counts_are_per_thread()
    ):
        return 1
    return WORKERS


def forward(model: nn.Module, x: Tensor, **kwargs) -> ModelOutput:
    """``model(x, **kwargs)`` without autograd, split over threads where that is quicker: the first half in
    the calling thread, the others in the pool's, each with ``threads // WORKERS`` OpenMP threads.

    Same results as one pass (each image's computation does not depend on the others in eval
    mode); the caller's thread count is unchanged. Running a half here, not both in the pool, makes
    sure the halves run at the same time: two pool threads could take them one after the other when
    the scheduler woke one of them late (app under load: 3-10 % quicker medians at 256 images).
    """
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

        here, *others = x.chunk(workers)
        futures = [_workers().submit(run, chunk) for chunk in others]
        try:
            results = [run(here)] + [future.result() for future in futures]
        finally:
            # also when a half raised (out of memory): the others end first, then the count comes back.
            # torch.set_num_threads also stores the count that every thread started later begins with
            # (torch's lazy per-thread init): without this, a training or evaluation thread started
            # after the first split prediction ran on one core.
            wait(futures)
            torch.set_num_threads(threads)
        return merge(results)


def _counts_are_per_thread() -> bool:
    """Asked with at least two threads (``workers_for``): a pool thread sets one fewer, this one's must stay."""
    global _thread_counts_are_per_thread
    if _thread_counts_are_per_thread is None:
        before = torch.get_num_threads()
        _workers().submit(torch.set_num_threads, before - 1).result()
        _thread_counts_are_per_thread = torch.get_num_threads() == before
        torch.set_num_threads(before)  # and the count threads started later begin with
    return _thread_counts_are_per_thread


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
            _pool = ThreadPoolExecutor(WORKERS - 1, thread_name_prefix="iamnn-split-forward")  # + the caller
        return _pool
