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
        calibrate_halting=False,  # only the training steps are timed
    )


def time_trainer(config, runs_dir: Path) -> dict[str, Any]:
    """Run the engine's Trainer; returns the clock at its ``started`` event and at every step event."""
    from iamnn_studio.engine.trainer import Trainer

    marks: list[tuple[float, int, float | None]] = []  # (clock, step, mean loss of the steps since the last mark)
    holder: dict[str, Any] = {}

    def listen(event) -> None:
        if event.kind == "started":
            marks.append((time.perf_counter(), 0, None))
        elif event.kind == "step":
            marks.append((time.perf_counter(), int(event.data["step"]), float(event.data["loss"])))
            if event.data["step"] >= config.max_steps:
                holder["trainer"].stop()  # skip the end-of-run calibration and evaluation
        elif event.kind == "failed":
            holder["failure"] = event.data.get("reason")

    trainer = Trainer(config, runs_dir=runs_dir, listeners=(listen,))
    holder["trainer"] = trainer
    work = time_step_work(trainer)
    trainer.run()
    if "failure" in holder:
        raise RuntimeError(f"the trainer failed: {holder['failure']}")
    return {"marks": marks, "step_work": work}


def time_step_work(trainer) -> list[float]:
    """Seconds of each step's own work inside the trainer: its training step minus its metric recording.

    A diagnostic that needs no second run: the rest of the loop's time is the trainer's bookkeeping
    (metric sums, step events, metrics.jsonl, stop checks) plus fetching the batch. It wraps two
    private methods of this trainer instance only; if they are renamed, the list stays empty.
    """
    work: list[float] = []
    train_step, record = getattr(trainer, "_train_step", None), getattr(trainer, "_record", None)
    if train_step is None or record is None:
        return work
    recording = [0.0]

    def timed_record(*args, **kwargs):
        start = time.perf_counter()
        try:
            return record(*args, **kwargs)
        finally:
            recording[0] += time.perf_counter() - start

    def timed_step(*args, **kwargs):
        recording[0] = 0.0
        start = time.perf_counter()
        try:
            return train_step(*args, **kwargs)
        finally:
            work.append(time.perf_counter() - start - recording[0])

    trainer._train_step, trainer._record = timed_step, timed_record
    return work


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

        model_config = config.model
        model_config.in_channels, model_config.image_size = bundle.in_channels, bundle.image_size
        model_config.num_classes = bundle.num_classes
        torch.manual_seed(config.seed)  # as the trainer seeds before building the model
        self.device = torch.device("cuda" if config.device == "cuda" else "cpu")
        self.model = build_model(model_config).train().to(self.device)
        self.channels_last = self.device.type == "cuda" and config.channels_last
        self.amp = self.device.type == "cuda" and config.amp  # the trainer's bf16 autocast
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as the trainer sets it
            bundle = bundle.to(self.device)  # as the trainer keeps a small dataset on the GPU
            if self.channels_last:
                self.model.to(memory_format=torch.channels_last)
        steps_per_epoch = -(-len(bundle.train) // config.batch_size)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, config, planned_steps(config, steps_per_epoch))
        self.augment_generator = torch.Generator().manual_seed(config.seed * 1000 + 1)
        self.exit_generator = torch.Generator().manual_seed(config.seed * 1000 + 2)
        self.anytime = training_recipe(model_config) == "calibrated"
        self.config, self.bundle = config, bundle
        sampler = DistributedSampler(range(len(bundle.train)), num_replicas=1, rank=0, shuffle=True, seed=config.seed)
        sampler.set_epoch(0)
        self.batches = iterate_batches(bundle.train, config.batch_size, shuffle=False, indices=list(sampler))

    def step(self):
        """One optimiser step on the next batch; returns the (detached) loss."""
        import contextlib

        import torch
        import torch.nn.functional as F

        from iamnn_studio.engine.calibration import sample_exits
        from iamnn_studio.engine.data import augment_batch, normalize

        images, labels = next(self.batches)
        x = normalize(augment_batch(images, self.config.data.augment, self.augment_generator),
                      self.bundle.mean, self.bundle.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        exits = sample_exits(self.model.caps, self.exit_generator) if self.anytime else None
        with torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext():
            out = self.model(x, exits=exits)
            loss = F.cross_entropy(out.logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()


def time_bare_loop(config, bundle) -> dict[str, Any]:
    """Run ``BareLoop`` for ``config.max_steps`` steps; the clock before the first and after every step."""
    loop = BareLoop(config, bundle)
    clock = [time.perf_counter()]
    losses = []
    for _ in range(config.max_steps):
        losses.append(float(loop.step()))
        clock.append(time.perf_counter())
    return {"clock": clock, "losses": losses}


def compare_round(trainer: dict, bare: dict, warmup: int, batch_size: int) -> dict[str, Any]:
    """Throughput of both over the same steps, per-step time ratios, and whether the losses agree.

    The timed stretch starts at the first trainer step event at or after ``warmup`` (a fast run
    groups several steps per event); if there is none before the last, at the ``started`` event.
    """
    marks, clock, losses = trainer["marks"], bare["clock"], bare["losses"]
    last = marks[-1][1]
    start = next((m for m in marks if warmup <= m[1] < last), marks[0])
    steps = last - start[1]
    step_ratios = {}
    previous = marks[0]
    same = True
    for mark in marks[1:]:
        window = losses[previous[1]:mark[1]]
        same = same and abs(mark[2] - sum(window) / len(window)) < 1e-4
        if mark[1] == previous[1] + 1 and previous[1] >= warmup:  # one step alone between two events
            step_ratios[mark[1]] = (clock[mark[1]] - clock[previous[1]]) / (mark[0] - previous[0])
        previous = mark
    work = trainer.get("step_work") or []
    work_seconds = sum(work[start[1]:last]) if len(work) >= last else None
    return {
        "timed_steps": [start[1] + 1, last],
        "trainer_step_work_share": None if work_seconds is None else work_seconds / (marks[-1][0] - start[0]),
        "trainer_images_per_s": steps * batch_size / (marks[-1][0] - start[0]),
        "bare_images_per_s": steps * batch_size / (clock[last] - clock[start[1]]),
        "step_ratios": step_ratios,
        "same_losses": same,
        "step_events": len(marks) - 1,
    }


def measure_engine_overhead(
    *,
    steps: int = 8,
    warmup: int = 2,
    rounds: int = 8,  # 48 paired step ratios: one noisy stretch of a shared machine moves the median less
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
    rounds_done = []
    try:
        for round_ in range(rounds):
            order = ("trainer", "bare") if round_ % 2 == 0 else ("bare", "trainer")
            timed = {}
            for which in order:
                config = overhead_config(steps=steps, batch_size=batch_size, width=width, depth=depth, dataset=dataset)
                timed[which] = time_trainer(config, runs_dir) if which == "trainer" else time_bare_loop(config, bundle)
            rounds_done.append(compare_round(timed["trainer"], timed["bare"], warmup, batch_size))
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)

    trainer_ips = median(r["trainer_images_per_s"] for r in rounds_done)
    bare_ips = median(r["bare_images_per_s"] for r in rounds_done)
    paired = [ratio for r in rounds_done for ratio in r["step_ratios"].values()]
    # Step by step (same batch, same exits, run side by side) when every step has its own event:
    # a load spike from another process then spoils one pair, not the whole figure.
    per_step = len(paired) >= 3
    ratio = median(paired) if per_step else trainer_ips / bare_ips
    return {
        "value": ratio,
        "target": TARGET,
        "verdict": verdict(ratio, TARGET),
        "method": "median over steps of (bare-loop step time / trainer step time), same step of the same round"
                  if per_step else "ratio of the median images/s",
        "ratio_of_median_throughputs": trainer_ips / bare_ips,
        "trainer_images_per_s": trainer_ips,
        "bare_images_per_s": bare_ips,
        "same_losses": all(r["same_losses"] for r in rounds_done),
        "trainer_step_work_share": median(r["trainer_step_work_share"] for r in rounds_done)
        if all(r["trainer_step_work_share"] is not None for r in rounds_done) else None,
        "rounds": rounds_done,
        "setting": {
            "config": f"default run (calibrated recipe: anytime exits; SGD one-cycle), width {width}, depth {depth}, "
                      f"batch {batch_size}, {dataset}, augment {base.data.augment}",
            "steps": steps, "warmup_steps": warmup, "rounds": rounds, "threads": threads,
        },
        "hardware": hardware(),
    }


def describe(result: dict[str, Any]) -> list[str]:
    return [
        "engine overhead",
        f"  {result['setting']['config']}; {result['setting']['steps']} steps per run, "
        f"first {result['setting']['warmup_steps']} untimed, {result['setting']['rounds']} alternating rounds",
        f"  trainer {result['trainer_images_per_s']:.1f} img/s, bare loop {result['bare_images_per_s']:.1f} img/s "
        f"(same losses: {result['same_losses']})",
        f"  inside the trainer, {_share(result['trainer_step_work_share'])} of the loop's time is the step's own "
        f"work (the rest: bookkeeping and batch fetching)",
        f"  ratio {result['value']:.3f} ({result['method']}; ratio of median throughputs "
        f"{result['ratio_of_median_throughputs']:.3f}) (target >= {result['target']}: {result['verdict']})",
    ]


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


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
