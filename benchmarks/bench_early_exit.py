"""Early-exit efficiency: does skipping iterations save the wall time its MACs promise?

efficiency = (wall-time speed-up of adaptive inference over ``max`` mode, same weights)
           / (speed-up the mean MACs predict: MACs at max / MACs adaptive)

1.0 means every MAC saved is time saved; below 1, the compaction (gathering the still-running
images after each iteration), the halting heads and the smaller, less efficient convolutions on
the survivors eat into the saving. Eval mode, ``torch.no_grad``, one batch of real
Fashion-MNIST test images, repetitions of the two modes interleaved, medians.

The model: without ``--checkpoint``, an untrained IamNN whose halting heads are *set* so that a
realistic share of images exits early. Its heads score every image almost alike at
initialisation, so each head's output layer is rescaled to give logits with a spread of
``HEAD_LOGIT_SPREAD`` over the batch, and its bias is searched so that each block runs on average
``1 + TARGET_EXTRA_SHARE x (cap - 1)`` iterations at threshold ``THRESHOLD``: about 0.4 x the
full-depth MACs with a 3-4x max/min spread per image (3.7x measured), like the calibrated models measured in
``docs/research/adaptivity.md`` (0.27-0.38 x, max/min 2.9-4.0). Which images exit does not change
the timing; how many exit at each iteration does. With ``--checkpoint`` a trained model is used
as it is.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (the path line above makes ``common`` importable)
    AS_COMMAND_LINE, bench_arguments, finish, gpu_sync, hardware, interleaved, measure_as_command_line, set_threads,
    summary, verdict,
)

TARGET = 0.9
THRESHOLD = 0.8
HEAD_LOGIT_SPREAD = 3.0
TARGET_EXTRA_SHARE = 0.2

#: Profiler op names grouped by what the time goes to.
OP_GROUPS = {
    "convolution": ("conv", "mkldnn_convolution", "_convolution", "thnn_conv"),
    "batch_norm": ("batch_norm",),
    "concatenate": ("aten::cat",),
    "gather/scatter (compaction)": ("aten::index", "index_select", "index_put", "scatter", "gather", "masked",
                                    "argsort", "sort"),
    "nonzero/any (host syncs)": ("nonzero", "aten::any", "aten::all", "aten::item", "_local_scalar_dense",
                                 "is_nonzero"),
    "halting head (linear)": ("addmm", "aten::mm", "aten::linear", "sigmoid"),
    "pooling/mean": ("pool", "aten::mean", "aten::sum"),
    "elementwise": ("aten::add", "aten::sub", "aten::mul", "aten::div", "aten::where", "clamp", "relu", "fill_",
                    "aten::copy_", "aten::full", "zeros", "aten::ge", "bitwise", "logical", "aten::rsub"),
}


def build_benchmark_model(width: int, depth: int, images, checkpoint: Path | None, seed: int = 0):
    """The model to time and a sentence saying which it is."""
    import torch

    from iamnn_studio.engine import ModelConfig, build_model

    if checkpoint is not None:
        from iamnn_studio.engine.checkpoint import load_checkpoint

        loaded = load_checkpoint(checkpoint)
        loaded.model.set_mode("adaptive")
        return loaded.model.eval(), f"trained checkpoint {checkpoint} (threshold {loaded.model.config.halting_threshold})"
    torch.manual_seed(seed)
    model = build_model(ModelConfig(width=width, depth=depth, threshold=THRESHOLD)).eval()
    set_exit_heads(model, images[: min(len(images), 128)])
    return model, (
        f"untrained IamNN (seed {seed}) with halting heads set for a realistic early-exit share: "
        f"head logits spread {HEAD_LOGIT_SPREAD} over the batch, mean iterations per block "
        f"1 + {TARGET_EXTRA_SHARE} x (cap - 1), threshold {THRESHOLD}"
    )


def set_exit_heads(model, images, steps: int = 10) -> None:
    """Block by block: rescale the head's output layer, then search its bias for the target mean iterations.

    In order, because a block's input (hence its head's input) depends on where the blocks
    before it let the images exit.
    """
    import torch

    with torch.no_grad():
        for b, block in enumerate(model.blocks):
            head = block.halting_head.out
            first = model(images).halting[b][:, 0].double().clamp(1e-12, 1 - 1e-12)
            logit = torch.log(first / (1 - first)) - head.bias.double()
            scale = HEAD_LOGIT_SPREAD / float(logit.std().clamp_min(1e-12))
            head.weight.mul_(scale)
            base = -float(logit.mean()) * scale  # centres the first iteration's logits at 0
            target = 1 + TARGET_EXTRA_SHARE * (block.cap - 1)
            low, high = -12.0, 12.0
            for _ in range(steps):  # bisection: a larger offset exits earlier
                mid = (low + high) / 2
                head.bias.fill_(base + mid)
                mean_iterations = float(model(images).iterations[:, b].double().mean())
                low, high = (mid, high) if mean_iterations > target else (low, mid)


def profile_groups(fn) -> dict[str, float]:
    """Self CPU milliseconds of one call of ``fn``, grouped by ``OP_GROUPS``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    groups: dict[str, float] = {name: 0.0 for name in OP_GROUPS}
    groups["other"] = 0.0
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1000.0
        for name, needles in OP_GROUPS.items():
            if any(needle in event.key for needle in needles):
                groups[name] += ms
                break
        else:
            groups["other"] += ms
    return {k: round(v, 2) for k, v in groups.items()}


def measure_early_exit(
    *,
    width: int = 16,
    depth: int = 50,
    batch_size: int = 256,
    repeats: int = 15,
    checkpoint: Path | None = None,
    profile: bool = True,
    threads: int | None = None,
    dataset: str = "fashion-mnist",
    device: str = "cpu",
) -> dict[str, Any]:
    """Time adaptive against ``max`` inference on one batch; returns the efficiency and its raw figures.

    On a GPU the clock waits for the queued kernels (``torch.cuda.synchronize``) and the profile
    is skipped (its CPU-side op times say little about GPU time).
    """
    import torch

    from iamnn_studio.engine.config import DataConfig
    from iamnn_studio.engine import split_forward
    from iamnn_studio.engine.data import load_dataset, normalize

    threads = set_threads(threads)
    bundle = load_dataset(DataConfig(name=dataset), seed=0)
    images = normalize(bundle.test.images[:batch_size], bundle.mean, bundle.std).to(device)
    model, description = build_benchmark_model(width, depth, images.cpu(), checkpoint)
    model.to(device)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer and the predictor run
    profile = profile and device == "cpu"

    workers = split_forward.workers_for(model, images)
    with torch.no_grad():
        model.set_mode("adaptive")
        adaptive_out = model(images)
        model.set_mode("max")
        max_out = model(images)

        def run(mode: str, one_pass: bool = False):
            def call():
                model.set_mode(mode)
                model(images) if one_pass else split_forward.forward(model, images)
            return call

        # timed as the engine runs inference (``split_forward``: single-threaded halves under
        # passive OpenMP); where it splits, one ordinary pass is timed beside it for comparison
        calls = {"max": run("max"), "adaptive": run("adaptive")}
        if workers > 1:
            calls.update({"max_one_pass": run("max", True), "adaptive_one_pass": run("adaptive", True)})
        times = interleaved(calls, repeats, warmup=3 if device == "cuda" else 1, sync=gpu_sync(device))
        profiles = {}
        if profile:  # one pass: the profiler's op groups are per thread
            profiles = {mode: profile_groups(run(mode, True)) for mode in ("max", "adaptive")}
        model.set_mode("adaptive")

    max_time, adaptive_time = summary(times["max"]), summary(times["adaptive"])
    macs_max = float(max_out.macs.double().mean())
    macs_adaptive = float(adaptive_out.macs.double().mean())
    wall_speedup = max_time["median"] / adaptive_time["median"]
    mac_speedup = macs_max / macs_adaptive
    efficiency = wall_speedup / mac_speedup
    one_pass = None
    if workers > 1:
        one_max, one_adaptive = summary(times["max_one_pass"]), summary(times["adaptive_one_pass"])
        one_pass = {"value": one_max["median"] / one_adaptive["median"] / mac_speedup,
                    "seconds": {"max": one_max, "adaptive": one_adaptive}}
    per_image = adaptive_out.macs.double()
    caps = list(model.caps)
    result: dict[str, Any] = {
        "value": efficiency,
        "target": TARGET,
        "verdict": verdict(efficiency, TARGET),
        "wall_speedup": wall_speedup,
        "mac_speedup": mac_speedup,
        "seconds": {"max": max_time, "adaptive": adaptive_time},
        "raw_seconds": times,
        "macs_mean": {"max": macs_max, "adaptive": macs_adaptive},
        "macs_fraction_of_max": macs_adaptive / macs_max,
        "per_image_macs": {
            "min": float(per_image.min()), "max": float(per_image.max()),
            "max_over_min": float(per_image.max() / per_image.min()),
            "p10": float(per_image.quantile(0.1)), "p90": float(per_image.quantile(0.9)),
        },
        "iterations_mean": [float(v) for v in adaptive_out.iterations.double().mean(0)],
        "iterations_histogram": [
            torch.bincount(adaptive_out.iterations[:, b] - 1, minlength=cap)[:cap].tolist()
            for b, cap in enumerate(caps)
        ],
        "model": description,
        "setting": {"width": width, "depth": depth, "caps": caps, "batch_size": batch_size, "repeats": repeats,
                    "device": device,
                    "threads": threads, "split_workers": workers, "input": f"{dataset} test images, {bundle.in_channels}x{bundle.image_size}x{bundle.image_size}",
                    "eval": True, "no_grad": True},
        "hardware": hardware(),
    }
    if one_pass is not None:
        result["one_pass"] = one_pass
    if profiles:
        result["profile_ms"] = profiles
        result["time_lost_ms"] = time_lost(profiles, macs_adaptive / macs_max)
    return result


def time_lost(profiles: dict[str, dict[str, float]], mac_fraction: float) -> dict[str, float]:
    """Per op group: adaptive time minus what the MAC fraction of max mode's time would be.

    Positive numbers are where adaptive inference spends more than its share of MACs allows.
    """
    return {
        group: round(profiles["adaptive"][group] - mac_fraction * profiles["max"][group], 2)
        for group in profiles["adaptive"]
    }


def describe(result: dict[str, Any]) -> list[str]:
    lines = [
        "early-exit efficiency",
        f"  model: {result['model']}",
        f"  MACs per image: max {result['macs_mean']['max'] / 1e6:.1f} M, adaptive {result['macs_mean']['adaptive'] / 1e6:.1f} M "
        f"({result['macs_fraction_of_max']:.2f} of max; per image {result['per_image_macs']['min'] / 1e6:.1f}-"
        f"{result['per_image_macs']['max'] / 1e6:.1f} M)",
        f"  batch {result['setting']['batch_size']}: max {result['seconds']['max']['median'] * 1e3:.0f} ms, "
        f"adaptive {result['seconds']['adaptive']['median'] * 1e3:.0f} ms (medians of {result['setting']['repeats']})",
        f"  speed-up: wall {result['wall_speedup']:.2f}x, MACs predict {result['mac_speedup']:.2f}x",
        f"  efficiency {result['value']:.3f} (target >= {result['target']}: {result['verdict']})",
    ]
    one_pass = result.get("one_pass")
    if one_pass:
        lines.append(f"  above in {result['setting']['split_workers']} single-threaded halves (engine's inference path); "
                     f"as one pass: max {one_pass['seconds']['max']['median'] * 1e3:.0f} ms, adaptive "
                     f"{one_pass['seconds']['adaptive']['median'] * 1e3:.0f} ms, efficiency {one_pass['value']:.3f}")
    cli = result.get("command_line")
    if cli and cli.get("value") is not None:
        lines.append(f"  above as the app runs it (OMP_WAIT_POLICY=PASSIVE); as the command line runs it "
                     f"(OpenMP's default wait): max {cli['seconds']['max']['median'] * 1e3:.0f} ms, adaptive "
                     f"{cli['seconds']['adaptive']['median'] * 1e3:.0f} ms, efficiency {cli['value']:.3f}")
    elif cli:
        lines.append(f"  as the command line runs it: not measured ({cli['error']})")
    if "time_lost_ms" in result:
        worst = sorted(result["time_lost_ms"].items(), key=lambda kv: -kv[1])[:4]
        lines.append("  time beyond the MAC share (ms, profiled): " + ", ".join(f"{k} {v:+.0f}" for k, v in worst))
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_arguments(__doc__.splitlines()[0], gpu=True)
    parser.add_argument("--checkpoint", type=Path, default=None, help="time this trained model instead")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=16,
                        help="width of the benchmark model (efficiency grows with it: more MACs per byte moved)")
    parser.add_argument("--dataset", default="fashion-mnist", help="whose test images to classify")
    args = parser.parse_args(argv)
    if args.width < 1 or args.batch_size < 1:
        parser.error("--width and --batch-size must be at least 1")
    from iamnn_studio.engine.checkpoint import CheckpointError

    # the command-line measurement keeps only the timings: no profile there (the profiler's start imports
    # torch's compiler stack, 4 s)
    profile = not AS_COMMAND_LINE
    try:
        if args.quick:
            result = measure_early_exit(width=8, depth=18, batch_size=64, repeats=3, checkpoint=args.checkpoint,
                                        device=args.device, dataset=args.dataset, profile=profile)
        else:
            result = measure_early_exit(width=args.width, batch_size=args.batch_size, checkpoint=args.checkpoint,
                                        device=args.device, dataset=args.dataset, profile=profile,
                                        repeats=30 if args.device == "cuda" else 15)
    except CheckpointError as exc:
        parser.error(f"--checkpoint: {exc}")
    if not AS_COMMAND_LINE and not args.quick and args.device == "cpu":
        # as `evaluate` and `predict` run: adaptive inference is many small ops, so it pays more than `max` mode
        # for the app's passive wake-ups
        result["command_line"] = measure_as_command_line(
            __file__, argv, ("value", "wall_speedup", "mac_speedup", "seconds", "raw_seconds"))
    finish(result, args.json, describe(result))
    return result


if __name__ == "__main__":
    main()
