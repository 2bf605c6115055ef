"""Shared helpers of the benchmarks: repository import path, thread set-up, timing, the machine, output.

Every figure the benchmarks report is a ratio of two things measured side by side in one
process (or one parent process), with their repetitions interleaved and summarised by the
median: on a shared 2-core machine absolute times drift, ratios measured together do not.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# Runnable from anywhere without installing: the repository root goes first on the path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Before torch loads: OpenMP threads that spin between ops steal the other core (pytorch#80777),
# so the app sets OMP_WAIT_POLICY=PASSIVE and the benchmarks measure as the app runs. The command
# line leaves OpenMP's default (a ~3 ms spin); a benchmark started with IAMNN_BENCH_OPENMP=default
# measures that way. And Qt must not look for a display.
OPENMP_ENV = "IAMNN_BENCH_OPENMP"
AS_COMMAND_LINE = os.environ.get(OPENMP_ENV) == "default"
if not AS_COMMAND_LINE:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The profiler's GPU tracer logs "gpuGetDeviceCount failed" as an ERROR on a machine without a GPU.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

# As the app and the CLI do at start-up: freed large CPU buffers are reused, not unmapped.
from iamnn_studio.malloc_tuning import tune_malloc  # noqa: E402

MALLOC_TUNED = tune_malloc()


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` CPU threads for torch (default: every core); returns the count in use."""
    import torch

    count = threads or os.cpu_count() or 1
    torch.set_num_threads(count)
    return torch.get_num_threads()


# --------------------------------------------------------------------------- timing
def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def time_call(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> float:
    """Seconds one call of ``fn`` takes (``sync`` waits for a GPU before the clock reads)."""
    if sync:
        sync()
    start = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - start


def interleaved(
    candidates: dict[str, Callable[[], Any]],
    repeats: int,
    *,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Time each candidate ``repeats`` times, alternating them (and their order) every round.

    Alternating makes a load spike from another process hit every candidate alike; flipping
    the order each round cancels any "second one runs warmer" effect.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(time_call(candidates[name], sync))
    return times


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max of a list of timings (seconds)."""
    return {"median": median(values), "min": float(min(values)), "max": float(max(values)), "n": len(values)}


# --------------------------------------------------------------------------- the machine
def hardware() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "malloc_tuned": MALLOC_TUNED,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # the startup benchmark's parent never needs torch
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure_as_command_line(script: str | Path, argv: list[str] | None, keep: tuple[str, ...],
                            timeout: float = 240.0) -> dict[str, Any]:
    """Run benchmark ``script`` again in a child process with OpenMP's default wait, as the command line
    (``iamnn-studio train``, ``evaluate``, ``predict``) runs, and return the ``keep`` keys of its result
    plus the wait policy it saw; ``{"value": None, "error": ...}`` where it failed.

    OpenMP reads its wait policy once, when torch loads, hence a process of its own. The app's
    PASSIVE threads sleep at once after every op and must be woken for the next one.
    """
    import subprocess
    import tempfile

    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env[OPENMP_ENV] = "default"
    args = list(sys.argv[1:] if argv is None else argv)
    if "--json" in args:  # the child writes its own
        del args[args.index("--json"):args.index("--json") + 2]
    with tempfile.TemporaryDirectory(prefix="iamnn-bench-") as folder:
        out = Path(folder) / "child.json"
        try:  # within run_all's time for the whole benchmark, so that a hung child cannot cost its parent's result
            done = subprocess.run([sys.executable, str(script), *args, "--json", str(out)], env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"value": None, "error": f"no result within {timeout:.0f} s"}
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr.strip().splitlines() or ["no error output"])[-1]
            return {"value": None, "error": f"exit {done.returncode}: {tail}"}
        child = json.loads(out.read_text(encoding="utf-8"))
    return {**{key: child[key] for key in keep}, "omp_wait_policy": child["hardware"]["omp_wait_policy"]}


# --------------------------------------------------------------------------- output
class BenchParser(argparse.ArgumentParser):
    """Refuses ``--device cuda`` where there is no CUDA GPU, in one line like any bad argument."""

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001 - argparse's signature
        parsed = super().parse_args(args, namespace)
        if getattr(parsed, "device", "cpu") == "cuda":
            import torch

            if not torch.cuda.is_available():
                self.error("--device cuda: no CUDA GPU is available on this machine")
        return parsed


def bench_arguments(description: str, *, gpu: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark script shares: ``--quick``, ``--json PATH`` (and, with ``gpu``, ``--device``)."""
    parser = BenchParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smaller, faster setting (a smoke run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")
    if gpu:
        parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")
    return parser


def gpu_sync(device: str) -> Callable[[], None] | None:
    """What waits for queued GPU work before a clock is read; None on the CPU."""
    if device != "cuda":
        return None
    import torch

    return torch.cuda.synchronize


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def finish(result: dict[str, Any], json_path: Path | None, lines: list[str]) -> None:
    """Print a benchmark's readable lines and, when asked, its JSON."""
    print("\n".join(lines), flush=True)
    if json_path is not None:
        write_json(json_path, result)


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"
