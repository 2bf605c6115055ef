"""Run every speed benchmark and write ``benchmarks/results/speed.json`` and ``speed.md``.

``make bench`` runs this. Each benchmark runs in its own fresh process (its own torch threads,
its own Qt application), one after the other, so none disturbs another. A benchmark that fails
is reported as such and the others still run; the exit code is then 1.

    python benchmarks/run_all.py            # all, full settings (a few minutes on 2 cores)
    python benchmarks/run_all.py --quick    # tiny settings: checks that everything runs
    python benchmarks/run_all.py --only mfu --only startup_ratio   # updates those two in speed.json
    python benchmarks/run_all.py --device cuda   # the GPU-capable ones on a GPU: speed-gpu.json, speed-gpu.md
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, REPO_ROOT, RESULTS_DIR, hardware, verdict, write_json  # noqa: E402

#: speed.json key -> (script, what the number compares, target text)
BENCHMARKS: dict[str, tuple[str, str, str]] = {
    "startup_ratio": ("bench_startup.py", "time to the first painted window / `python -c \"import torch\"`", "<= 0.5"),
    "ui_lag_p99_ms": ("bench_ui_lag.py", "99th percentile of a 10 ms timer's lateness in the app window while "
                                         "training", "<= 50 ms"),
    "early_exit_efficiency": ("bench_early_exit.py", "adaptive vs max-mode wall-time speed-up / the speed-up "
                                                     "their MACs predict", ">= 0.9"),
    "engine_overhead_ratio": ("bench_engine_overhead.py", "Trainer images/s / an identical bare PyTorch loop's",
                              ">= 0.95"),
    "mfu": ("bench_mfu.py", "training FLOP/s of the default config / matmul peak (fp32; bf16 on a GPU, as "
                            "the trainer's autocast)", ">= 0.5"),
}

#: The benchmarks also measured as the command line runs (their ``command_line``): key -> (target, which command).
COMMAND_LINE_ROWS = {"early_exit_efficiency": (0.9, "as `evaluate` and `predict` run"),
                     "mfu": (0.5, "as `iamnn-studio train` runs")}

#: The benchmarks whose model can run on a GPU (``--device cuda``); the others time the CPU or the GUI.
GPU_CAPABLE = ("early_exit_efficiency", "mfu")


def run_benchmark(script: str, quick: bool, timeout: float, device: str = "cpu") -> dict[str, Any]:
    """Run one benchmark script in a fresh process; its result, or why it failed."""
    with tempfile.TemporaryDirectory(prefix="iamnn-bench-") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, str(BENCH_DIR / script), "--json", str(out)] + (["--quick"] if quick else [])
        if device != "cpu":
            command += ["--device", device]
        start = time.monotonic()
        try:
            done = subprocess.run(command, cwd=REPO_ROOT, timeout=timeout, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"value": None, "error": f"timed out after {timeout:.0f} s"}
        seconds = time.monotonic() - start
        print(done.stdout.rstrip(), flush=True)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr.strip().splitlines() or ["no error output"])[-1]
            return {"value": None, "error": f"exit {done.returncode}: {tail}", "seconds": seconds}
        result = json.loads(out.read_text(encoding="utf-8"))
        result["benchmark_seconds"] = seconds
        result["measured_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
        return result


def format_value(key: str, value: float | None) -> str:
    if value is None:
        return "failed"
    return f"{value:.1f} ms" if key.endswith("_ms") else f"{value:.3f}"


def markdown_table(results: dict[str, Any]) -> str:
    rows = ["| metric | value | target | met | compares |", "|---|---|---|---|---|"]
    for key, (_, compares, target) in BENCHMARKS.items():
        if key not in results:
            continue
        result = results[key]
        rows.append(f"| `{key}` | {format_value(key, result.get('value'))} | {target} | "
                    f"{result.get('verdict', result.get('error', ''))} | {compares} |")
        command_line = (result.get("command_line") or {}).get("value")
        if key in COMMAND_LINE_ROWS and command_line is not None:
            target, how = COMMAND_LINE_ROWS[key]
            rows.append(f"| `{key}`, command line | {command_line:.3f} | >= {target} | {verdict(command_line, target)} "
                        f"| the same, {how} (OpenMP's default wait; the app's threads wait PASSIVE) |")
        if key == "ui_lag_p99_ms" and "p50_ms" in result:
            rows.append(f"| `ui_lag_p50_ms` | {result['p50_ms']:.2f} ms | – | – | median lateness of the same timer |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the speed benchmarks; write results/speed.json and speed.md")
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke run; numbers mean nothing)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for speed.json and speed.md")
    parser.add_argument("--timeout", type=float, default=400.0, help="seconds allowed per benchmark")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help=f"cuda: run {' and '.join(GPU_CAPABLE)} on the GPU (speed-gpu.json)")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout: must be a positive number of seconds, got {args.timeout}")
    partial = bool(args.only)  # a rerun of some: the others keep their earlier results
    if args.device == "cuda":
        wrong = [key for key in args.only or () if key not in GPU_CAPABLE]
        if wrong:
            parser.error(f"{', '.join(wrong)} cannot run on a GPU; --device cuda runs {', '.join(GPU_CAPABLE)}")
        args.only = args.only or list(GPU_CAPABLE)
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: PyTorch sees no CUDA device on this machine")

    started = time.monotonic()
    results: dict[str, Any] = {}
    for key, (script, _, _) in BENCHMARKS.items():
        if args.only and key not in args.only:
            continue
        print(f"== {key} ({script})", flush=True)
        results[key] = run_benchmark(script, args.quick, args.timeout, args.device)
        if results[key].get("error"):
            print(f"   FAILED: {results[key]['error']}", flush=True)

    suffix = ("-gpu" if args.device == "cuda" else "") + ("-quick" if args.quick else "")
    json_path = args.out / f"speed{suffix}.json"
    if partial and json_path.exists():  # a partial rerun updates the other results in place
        previous = json.loads(json_path.read_text(encoding="utf-8"))
        results = {**{k: previous[k] for k in BENCHMARKS if k in previous}, **results}
    document: dict[str, Any] = {
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "rerun": args.only if partial else None,
        "device": args.device,
        "quick": args.quick,
        "total_seconds": time.monotonic() - started,
        "hardware": hardware(),
        **results,
    }
    if "ui_lag_p99_ms" in results:
        lag = results["ui_lag_p99_ms"]
        document["ui_lag_p50_ms"] = {"value": lag.get("p50_ms"), "raw": "see ui_lag_p99_ms.training"}
    write_json(json_path, document)
    table = markdown_table(results)
    note = (f"Measured {document['measured_at']} on {document['hardware']['cpu']} "
            f"({document['hardware']['cores']} cores, torch {document['hardware'].get('torch')}, "
            f"GPU: {document['hardware'].get('gpu') or 'none'}); "
            + (f"rerun of {', '.join(args.only)} took" if partial
               else "all benchmarks took" if args.device == "cpu" else "the GPU benchmarks took")
            + f" {document['total_seconds'] / 60:.1f} min"
            + (f"; the others keep their own `measured_at` in {json_path.name}" if partial else "")
            + ". The machine was shared with other work: compare ratios, not absolute times.\n")
    (args.out / f"speed{suffix}.md").write_text(table + "\n" + note, encoding="utf-8")
    print("\n" + table + "\n" + note, flush=True)
    return 1 if any(r.get("error") for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
