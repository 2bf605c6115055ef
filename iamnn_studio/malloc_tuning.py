"""Keep glibc's malloc from giving big activation buffers back to the kernel after every op.

glibc serves any allocation above its mmap threshold (at most 32 MiB by default) with a fresh
``mmap`` and returns it with ``munmap`` when freed, so every large CPU tensor, e.g. a 256-image
batch of 64 x 28 x 28 float activations (51 MiB), is new memory that the kernel must fault in
and zero page by page. On a 2-core machine that made eval-mode IamNN 1.7x slower
(benchmarks/bench_early_exit.py; the same effect is why PyTorch's CPU performance guides
suggest jemalloc or tcmalloc). Raising the mmap and trim thresholds lets freed buffers be
reused from the heap. The cost: the process keeps its peak heap instead of shrinking back.

No torch here; a no-op where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
#: Allocations up to this size come from the reusable heap (glibc accepts up to half its heap size cap).
MMAP_THRESHOLD_BYTES = 1 << 30
#: Freed memory at the heap's top is kept up to this size rather than trimmed.
TRIM_THRESHOLD_BYTES = (1 << 31) - 1

_tuned: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are in effect."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux"):
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return _tuned
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the trim threshold first, as setting the mmap one fixes it too
    _tuned = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    return _tuned
