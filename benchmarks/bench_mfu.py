"""Model FLOP utilisation: training FLOP/s of the default configuration / the machine's fp32 matmul peak.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over real training steps,
forward and backward (convolutions and matrix products; batchnorm, activations and the
optimiser's element-wise updates are not FLOPs in this count, as usual for MFU). The steps are
those of ``BareLoop`` (the trainer's exact work without its bookkeeping; the engine-overhead
benchmark measures what the bookkeeping costs): the default ``RunConfig`` (width 16, depth 50,
batch 128, calibrated recipe, so every batch runs at its sampled anytime exits) on
Fashion-MNIST. The steps are run twice with the same seeds, so the same exits: once timed, once
under the counter (which slows them down).

The peak is the best of several large fp32 ``torch.mm`` calls (bf16 on a GPU, where the trainer
trains under bf16 autocast), measured in the same process
before and after the training steps, with the same threads. The training rate is the median of
the steps' rates (FLOPs of the step / its time), robust to another process's load spike as the
best-of peak is.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine_overhead import BareLoop  # noqa: E402
from common import (  # noqa: E402
    AS_COMMAND_LINE, bench_arguments, finish, gpu_sync, hardware, measure_as_command_line, median, set_threads, verdict,
)

TARGET = 0.5


def matmul_peak(size: int = 2048, repeats: int = 5, device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    """Best FLOP/s of ``torch.mm`` on two ``size`` x ``size`` matrices (float32: no TF32 on a GPU)."""
    import torch

    sync = gpu_sync(device) or (lambda: None)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))
        b = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))
        torch.mm(a, b)  # warm-up: thread pool, caches, GPU clocks
        sync()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            sync()
            seconds.append(time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    flops = 2.0 * size**3
    return {"flops_per_s": flops / min(seconds), "size": size, "dtype": dtype, "device": device, "seconds": seconds}


def default_run_config(batch_size: int | None = None, width: int | None = None, depth: int | None = None,
                       dataset: str | None = None, device: str = "cpu"):
    from iamnn_studio.engine import RunConfig

    config = RunConfig(name="mfu", device=device)
    if dataset:
        config.data.name = dataset
    if batch_size:
        config.batch_size = batch_size
    if width:
        config.model.width = width
    if depth:
        config.model.depth = depth
    config.max_steps = 1000  # only a few are taken; keeps the one-cycle schedule short
    return config


def measure_mfu(
    *,
    steps: int = 6,
    warmup: int = 1,
    batch_size: int | None = None,
    width: int | None = None,
    depth: int | None = None,
    peak_size: int = 2048,
    threads: int | None = None,
    dataset: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup`` and count their FLOPs; divide by the matmul peak.

    On a GPU the trainer trains under bf16 autocast, so the peak is bf16's (float32's, without
    TF32, is reported beside it).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from iamnn_studio.engine.data import load_dataset

    threads = set_threads(threads)
    config = default_run_config(batch_size, width, depth, dataset, device)
    on_gpu = device == "cuda"
    peak_dtype = "bfloat16" if on_gpu and config.amp else "float32"
    sync = gpu_sync(device) or (lambda: None)
    bundle = load_dataset(config.data, seed=config.seed)
    peaks = [matmul_peak(peak_size, device=device, dtype=peak_dtype)]

    timed = BareLoop(default_run_config(batch_size, width, depth, dataset, device), bundle)
    for _ in range(warmup):
        timed.step()
    step_seconds = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        timed.step()
        sync()
        step_seconds.append(time.perf_counter() - start)
    peaks.append(matmul_peak(peak_size, device=device, dtype=peak_dtype))
    float32_peak = matmul_peak(peak_size, device=device) if peak_dtype != "float32" else None

    counted = BareLoop(default_run_config(batch_size, width, depth, dataset, device), bundle)
    for _ in range(warmup):
        counted.step()
    step_flops = []
    for _ in range(steps):
        with FlopCounterMode(display=False) as counter:
            counted.step()
        step_flops.append(counter.get_total_flops())

    flops, seconds = float(sum(step_flops)), float(sum(step_seconds))
    # The median step rate: a load spike from another process spoils one step, not the figure
    # (the peak is a best-of for the same reason).
    achieved = median(f / s for f, s in zip(step_flops, step_seconds))
    peak = max(p["flops_per_s"] for p in peaks)
    mfu = achieved / peak
    model = config.model
    return {
        "value": mfu,
        "target": TARGET,
        "verdict": verdict(mfu, TARGET),
        "training_flops_per_s": achieved,
        "training_flops_per_s_all_steps": flops / seconds,
        "peak_flops_per_s": peak,
        "step_flops": step_flops,
        "step_seconds": step_seconds,
        "images_per_s": steps * config.batch_size / seconds,
        "peak_runs": peaks,
        "peak_dtype": peak_dtype,
        "float32_peak_flops_per_s": None if float32_peak is None else float32_peak["flops_per_s"],
        "setting": {
            "config": f"default RunConfig: IamNN width {model.width}, depth {model.depth} (caps {list(model.caps)}), "
                      f"batch {config.batch_size}, {model.halting} halting (anytime exits sampled per batch), "
                      f"{config.optimizer} {config.schedule}, {config.data.name} {config.data.augment}",
            "steps": steps, "warmup_steps": warmup, "threads": threads, "device": device,
            "dtype": "bfloat16 autocast" if peak_dtype == "bfloat16" else "float32",
            "flop_counter": "torch.utils.flop_counter.FlopCounterMode, forward + backward",
        },
        "hardware": hardware(),
    }


def describe(result: dict[str, Any]) -> list[str]:
    lines = [
        "model FLOP utilisation (MFU)",
        f"  {result['setting']['config']}",
        f"  training {result['training_flops_per_s'] / 1e9:.2f} GFLOP/s (median step; all steps together "
        f"{result['training_flops_per_s_all_steps'] / 1e9:.2f}; {result['images_per_s']:.1f} img/s, "
        f"{sum(result['step_flops']) / len(result['step_flops']) / 1e9:.1f} GFLOP per step); "
        f"{result.get('peak_dtype', 'float32')} matmul peak {result['peak_flops_per_s'] / 1e9:.1f} GFLOP/s",
        f"  MFU {result['value']:.3f} (target >= {result['target']}: {result['verdict']})",
    ]
    cli = result.get("command_line")
    if cli and cli.get("value") is not None:
        lines.append(f"  above as the app trains (OMP_WAIT_POLICY=PASSIVE); as `iamnn-studio train` does (OpenMP's "
                     f"default wait): {cli['training_flops_per_s'] / 1e9:.2f} GFLOP/s of "
                     f"{cli['peak_flops_per_s'] / 1e9:.1f}, MFU {cli['value']:.3f} "
                     f"({verdict(cli['value'], TARGET)})")
    elif cli:
        lines.append(f"  as the command line trains: not measured ({cli['error']})")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_arguments(__doc__.splitlines()[0], gpu=True)
    parser.add_argument("--dataset", default=None, help="train on this data set (default: the default config's)")
    args = parser.parse_args(argv)
    if args.quick:
        result = measure_mfu(steps=2, warmup=1, batch_size=16, width=4, depth=18, peak_size=512, device=args.device,
                             dataset=args.dataset)
    elif args.device == "cuda":  # a GPU's peak needs large matrices; its steps are short
        result = measure_mfu(steps=20, warmup=5, peak_size=8192, device="cuda", dataset=args.dataset)
    else:
        result = measure_mfu(dataset=args.dataset)
    if not AS_COMMAND_LINE and not args.quick and args.device == "cpu":
        # the app trains with passive OpenMP threads (woken for every op); the CLI leaves OpenMP's default
        result["command_line"] = measure_as_command_line(
            __file__, argv, ("value", "training_flops_per_s", "peak_flops_per_s", "images_per_s"))
    finish(result, args.json, describe(result))
    return result


if __name__ == "__main__":
    main()
