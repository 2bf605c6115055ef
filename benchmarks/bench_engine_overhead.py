"""Engine overhead: the studio Trainer's training throughput against a bare PyTorch loop.

ratio = images/s of ``Trainer.run()`` / images/s of a bare loop doing the same work

"The same work": the same model (same seed, same config), the same batches in the same order
(the trainer's shuffled epoch order), the same augmentation draws, the same anytime exits per
batch (the calibrated recipe samples them from a generator seeded like the trainer's), the same
optimiser and learning-rate schedule, the data in memory, the same process and threads. The
bare loop is what a researcher would write: augment, normalise, forward, cross-entropy,
backward, step. The trainer adds its bookkeeping: metric sums, throttled step events,
``metrics.jsonl`` lines, stop/pause checks.

Throughput is timed over the steps after ``warmup`` (the trainer: between two of its step
events; the bare loop: between the same two steps), so dataset loading, run-folder set-up and
the end-of-epoch validation and checkpoint are not part of either figure. Trainer and bare
runs alternate; the ratio is of the medians.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_arguments, finish, hardware, median, set_threads, verdict  # noqa: E402

TARGET = 0.95


def overhead_config(*, steps: int, batch_size: int, width: int, depth: int, dataset: str = "fashion-mnist"):
    """The default run (calibrated recipe, SGD one-cycle) cut to ``steps`` optimiser steps."""
    from iamnn_studio.engine import DataConfig, ModelConfig, RunConfig

    return RunConfig(
        name="overhead",
        data=DataConfig(name=dataset, val_fraction=0.002),  # a tiny validation split: epoch end is not timed
        model=ModelConfig(width=width, depth=depth),
        batch_size=batch_size,
        epochs=1,
        max_steps=steps,
        seed=0,
        device="cpu",
    )


def time_trainer(config, runs_dir: Path, warmup: int) -> dict[str, Any]:
    """Run the engine's Trainer; returns the throughput between step event ``warmup`` and the last."""
    from iamnn_studio.engine.trainer import Trainer

    marks: list[tuple[float, int, float]] = []  # (clock, step, loss)
    holder: dict[str, Any] = {}

    def listen(event) -> None:
        if event.kind == "step":
            marks.append((time.perf_counter(), int(event.data["step"]), float(event.data["loss"])))
            if event.data["step"] >= config.max_steps:
                holder["trainer"].stop()  # skip the end-of-run calibration and evaluation
        elif event.kind == "failed":
            holder["failure"] = event.data.get("reason")

    trainer = Trainer(config, runs_dir=runs_dir, listeners=(listen,))
    holder["trainer"] = trainer
    trainer.run()
    if "failure" in holder:
        raise RuntimeError(f"the trainer failed: {holder['failure']}")
    start = next(m for m in marks if m[1] >= warmup)
    end = marks[-1]
    images = (end[1] - start[1]) * config.batch_size
    # Each step of a slow (CPU) run gets its own event: then every step's duration is known.
    step_seconds = {b[1]: b[0] - a[0] for a, b in zip(marks, marks[1:]) if b[1] == a[1] + 1 and a[1] >= warmup}
    return {"images_per_s": images / (end[0] - start[0]), "steps_timed": end[1] - start[1],
            "seconds": end[0] - start[0], "last_loss": end[2], "step_events": len(marks),
            "last_event_steps": end[1] - (marks[-2][1] if len(marks) > 1 else 0),
            "step_seconds": step_seconds}


class BareLoop:
    """A plain PyTorch training loop over exactly the trainer's model, batches, exits and optimiser.

    Seeded like ``Trainer``: the model from ``config.seed``, augmentation and anytime exits from
    generators seeded ``seed * 1000 + 1`` and ``+ 2``, batches in the first epoch's shuffled order.
    """

    def __init__(self, config, bundle) -> None:
        import torch
        from torch.utils.data.distributed import DistributedSampler

        from iamnn_studio.engine import build_model
        from iamnn_studio.engine.data import iterate_batches
        from iamnn_studio.engine.optim import build_optimizer, build_scheduler, planned_steps
        from iamnn_studio.engine.trainer import training_recipe

        self.config, self.bundle = config, bundle
        model_config = config.model
        model_config.in_channels, model_config.image_size = bundle.in_channels, bundle.image_size
        model_config.num_classes = bundle.num_classes
        torch.manual_seed(config.seed)  # as the trainer seeds before building the model
        self.model = build_model(model_config).train()
        steps_per_epoch = -(-len(bundle.train) // config.batch_size)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, config, planned_steps(config, steps_per_epoch))
        self.augment_generator = torch.Generator().manual_seed(config.seed * 1000 + 1)
        self.exit_generator = torch.Generator().manual_seed(config.seed * 1000 + 2)
        self.anytime = training_recipe(model_config) == "calibrated"
        sampler = DistributedSampler(range(len(bundle.train)), num_replicas=1, rank=0, shuffle=True, seed=config.seed)
        sampler.set_epoch(0)
        self.batches = iterate_batches(bundle.train, config.batch_size, shuffle=False, indices=list(sampler))

    def step(self):
        """One optimiser step on the next batch; returns the (detached) loss."""
        import torch.nn.functional as F

        from iamnn_studio.engine.calibration import sample_exits
        from iamnn_studio.engine.data import augment_batch, normalize

        images, labels = next(self.batches)
        x = normalize(augment_batch(images, self.config.data.augment, self.augment_generator),
                      self.bundle.mean, self.bundle.std)
        exits = sample_exits(self.model.caps, self.exit_generator) if self.anytime else None
        out = self.model(x, exits=exits)
        loss = F.cross_entropy(out.logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()


def time_bare_loop(config, bundle, warmup: int) -> dict[str, Any]:
    """Throughput of ``BareLoop`` over steps ``warmup + 1`` to ``config.max_steps``."""
    loop = BareLoop(config, bundle)
    clock: list[float] = []
    loss = None
    for _ in range(config.max_steps):
        loss = loop.step()
        clock.append(time.perf_counter())
    steps = len(clock) - warmup
    seconds = clock[-1] - clock[warmup - 1]
    step_seconds = {k + 1: clock[k] - clock[k - 1] for k in range(warmup, len(clock))}
    return {"images_per_s": steps * config.batch_size / seconds, "steps_timed": steps, "seconds": seconds,
            "last_loss": float(loss), "step_seconds": step_seconds}


def measure_engine_overhead(
    *,
    steps: int = 10,
    warmup: int = 2,
    rounds: int = 3,
    batch_size: int = 128,
    width: int = 16,
    depth: int = 50,
    dataset: str = "fashion-mnist",
    threads: int | None = None,
) -> dict[str, Any]:
    """Alternate trainer and bare-loop runs; returns the ratio of their median images/s."""
    from iamnn_studio.engine.data import load_dataset

    threads = set_threads(threads)
    base = overhead_config(steps=steps, batch_size=batch_size, width=width, depth=depth, dataset=dataset)
    bundle = load_dataset(base.data, seed=base.seed)
    runs_dir = Path(tempfile.mkdtemp(prefix="iamnn-overhead-"))
    trainer_runs, bare_runs = [], []
    try:
        for round_ in range(rounds):
            order = ("trainer", "bare") if round_ % 2 == 0 else ("bare", "trainer")
            for which in order:
                config = overhead_config(steps=steps, batch_size=batch_size, width=width, depth=depth, dataset=dataset)
                if which == "trainer":
                    trainer_runs.append(time_trainer(config, runs_dir, warmup))
                else:
                    bare_runs.append(time_bare_loop(config, bundle, warmup))
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)

    trainer_ips = median(r["images_per_s"] for r in trainer_runs)
    bare_ips = median(r["images_per_s"] for r in bare_runs)
    paired = paired_step_ratios(trainer_runs, bare_runs)
    # Step by step (same batch, same exits, run side by side) when every step has its own event:
    # a load spike from another process then spoils one pair, not the whole figure.
    ratio = median(paired) if len(paired) >= 3 else trainer_ips / bare_ips
    return {
        "value": ratio,
        "target": TARGET,
        "verdict": verdict(ratio, TARGET),
        "method": "median over steps of bare-loop step time / trainer step time (same step, same round)"
                  if len(paired) >= 3 else "ratio of the median images/s",
        "ratio_of_median_throughputs": trainer_ips / bare_ips,
        "paired_step_ratios": paired,
        "trainer_images_per_s": trainer_ips,
        "bare_images_per_s": bare_ips,
        "trainer_runs": trainer_runs,
        "bare_runs": bare_runs,
        "same_losses": same_losses(trainer_runs, bare_runs),
        "setting": {
            "config": f"default run (calibrated recipe: anytime exits; SGD one-cycle), width {width}, depth {depth}, "
                      f"batch {batch_size}, {dataset}, augment {base.data.augment}",
            "steps": steps, "warmup_steps": warmup, "rounds": rounds, "threads": threads,
        },
        "hardware": hardware(),
    }


def same_losses(trainer_runs: list[dict], bare_runs: list[dict]) -> bool | None:
    """Did both loops end on the same loss (proof of the same work)? None if the trainer's last event averaged several steps."""
    pairs = [(t, b) for t, b in zip(trainer_runs, bare_runs) if t["last_event_steps"] == 1]
    if not pairs:
        return None
    return all(abs(t["last_loss"] - b["last_loss"]) < 1e-4 for t, b in pairs)


def paired_step_ratios(trainer_runs: list[dict], bare_runs: list[dict]) -> list[float]:
    """bare / trainer duration of the same step in the same round (> 1 would mean the trainer is faster)."""
    ratios = []
    for trainer, bare in zip(trainer_runs, bare_runs):
        for step, seconds in trainer["step_seconds"].items():
            if step in bare["step_seconds"] and seconds > 0:
                ratios.append(bare["step_seconds"][step] / seconds)
    return ratios


def describe(result: dict[str, Any]) -> list[str]:
    return [
        "engine overhead",
        f"  {result['setting']['config']}; {result['setting']['steps']} steps per run, "
        f"first {result['setting']['warmup_steps']} untimed, {result['setting']['rounds']} alternating rounds",
        f"  trainer {result['trainer_images_per_s']:.1f} img/s, bare loop {result['bare_images_per_s']:.1f} img/s "
        f"(same losses: {result['same_losses']})",
        f"  ratio {result['value']:.3f} ({result['method']}; ratio of median throughputs "
        f"{result['ratio_of_median_throughputs']:.3f}) (target >= {result['target']}: {result['verdict']})",
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = bench_arguments(__doc__.splitlines()[0]).parse_args(argv)
    if args.quick:
        result = measure_engine_overhead(steps=4, warmup=1, rounds=1, batch_size=32, width=4, depth=18)
    else:
        result = measure_engine_overhead()
    finish(result, args.json, describe(result))
    return result


if __name__ == "__main__":
    main()
