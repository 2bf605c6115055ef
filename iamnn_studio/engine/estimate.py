"""A rough training-time estimate for the run form: "about 15 min on this CPU".

Training time is estimated as FLOPs / rate: the expected MACs of one training image under the
run's recipe (anytime exits are sampled, so their mean), times 2 FLOPs per MAC, times 3 for the
forward and the backward pass, times the images seen; over the fp32 matmul rate of this CPU
(measured once, in a few milliseconds) times the share of it a training step reaches
(``CPU_TRAINING_EFFICIENCY``, from ``benchmarks/bench_mfu.py``: 0.53-0.61 on the 2-core machine
it was measured on). Good to about a factor of 1.5, which is what a user deciding between
"now" and "over lunch" needs. No estimate for GPUs: small models there are bound by launch
latency, not FLOPs.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import torch

from .calibration import FULL_DEPTH_SHARE, MINIMUM_SHARE

#: Bytes each parameter takes while training: fp32 weights, gradients, up to two optimiser moments
#: (AdamW) and the best checkpoint's copy. Activations come on top (they depend on the batch).
TRAINING_BYTES_PER_PARAMETER = 20

#: Share of the matmul peak a training step of an IamNN reaches on a CPU (bench_mfu.py).
CPU_TRAINING_EFFICIENCY = 0.5
#: FLOPs of a training step per forward MAC: 2 FLOPs per MAC, forward + backward = 3 forwards.
TRAINING_FLOPS_PER_MAC = 6.0


def expected_training_macs(model: torch.nn.Module, recipe: str) -> float:
    """Mean MACs of one training image's forward pass under ``recipe`` (see ``trainer.training_recipe``)."""
    if not hasattr(model, "unit_costs"):  # the ResNet baseline: every image the same
        return float(model.macs_range()[1]) if hasattr(model, "macs_range") else float(model.macs)
    costs, caps = model.unit_costs(), model.caps
    fixed = costs["stem"] + sum(costs["input"]) + sum(costs["first_iteration"]) + costs["classifier"]
    if recipe == "calibrated":  # anytime exits: full depth, one iteration, or uniform per block
        uniform = 1.0 - FULL_DEPTH_SHARE - MINIMUM_SHARE
        iterations = [FULL_DEPTH_SHARE * cap + MINIMUM_SHARE + uniform * (cap + 1) / 2 for cap in caps]
        return fixed + sum((n - 1) * it for n, it in zip(iterations, costs["iteration"]))
    low, high = model.macs_range()
    if recipe == "act":  # halting is learnt during the run: somewhere between the two ends
        return (low + high) / 2
    return float(model.macs_for(*_fixed_iterations(model))[0])


def trainable_macs_range(model: torch.nn.Module, calibrates: bool) -> tuple[int, int]:
    """(cheapest, dearest) per-image MACs a model can come to. With the halting calibration still ahead
    a block may be stopped at its first iteration, where no halting head runs: that is the floor."""
    low, high = model.macs_range()
    if calibrates and hasattr(model, "unit_costs"):
        ones = torch.ones(1, len(model.caps), dtype=torch.long)
        low = min(low, int(model.macs_for(ones, torch.zeros_like(ones))))
    return int(low), int(high)


def _fixed_iterations(model) -> tuple[torch.Tensor, torch.Tensor]:
    mode = model.config.mode
    caps = torch.tensor([model.caps])
    if mode.startswith("fixed:"):
        iterations = torch.clamp(torch.full_like(caps, model.config.fixed_iterations()), max=caps)
    else:
        iterations = caps
    return iterations, torch.zeros_like(iterations)


@lru_cache(maxsize=1)
def cpu_matmul_flops_per_second(size: int = 1024, repeats: int = 3) -> float:
    """Best fp32 ``torch.mm`` rate of this CPU with torch's threads (~30 ms to measure; measured
    once per process, best while nothing else runs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / max(best, 1e-9)


def estimate_training_seconds(macs_per_image: float, images: int, flops_per_second: float) -> float:
    """Seconds to train on ``images`` images (all epochs together) at ``macs_per_image``."""
    return TRAINING_FLOPS_PER_MAC * macs_per_image * images / (flops_per_second * CPU_TRAINING_EFFICIENCY)


def count_parameters(model_config) -> int:
    """Parameters of the model ``model_config`` describes, counted on PyTorch's "meta" device:
    shapes only, no memory, so a model too big for this machine can be sized without building it."""
    from .model import build_model

    with torch.device("meta"):
        model = build_model(model_config)
    return sum(p.numel() for p in model.parameters())


def available_memory_bytes(device: torch.device | str = "cpu") -> int:
    """Memory a run on ``device`` can use: free RAM on a CPU, total memory of a GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    import psutil

    return psutil.virtual_memory().available


#: Peak training memory over what autograd keeps for the backward pass: the backward's own gradient
#: buffers and the forward's temporaries (measured 1.1-1.2x on the CPU for IamNN and the ResNet).
ACTIVATION_HEADROOM = 1.25


@dataclass(frozen=True)
class TrainingMemory:
    """What training a model needs, by batch size: parameters (with gradients and optimiser state)
    plus the activations autograd keeps per image at full depth (the most any recipe runs)."""

    parameters: int
    bytes_per_image: int  # activations kept for the backward pass, per training image
    bytes_per_batch: int  # kept once per batch whatever its size (weights saved by the convolutions)

    def needed(self, batch_size: int) -> int:
        activations = self.bytes_per_batch + max(int(batch_size), 0) * self.bytes_per_image
        return self.parameters * TRAINING_BYTES_PER_PARAMETER + int(activations * ACTIVATION_HEADROOM)

    def largest_batch(self, available: int) -> int:
        """The largest batch that fits in ``available`` bytes (0: not even one image)."""
        room = available / ACTIVATION_HEADROOM - self.parameters * TRAINING_BYTES_PER_PARAMETER / ACTIVATION_HEADROOM
        return max(int((room - self.bytes_per_batch) // max(self.bytes_per_image, 1)), 0)


#: Past this many iterations in all (ResNet-152's caps are 50), a sizing forward takes seconds on the
#: app's UI thread (custom caps 100-100-100-100: ~10 s), and the bytes are extrapolated instead (below).
DIRECT_SIZING_ITERATIONS = 64


#: Sizes already found in this process, by ``training_memory_key`` and the block's class: a run that starts or
#: resumes a model sized before skips the meta forward (0.3-0.6 s a time, 3 s the first).
_SIZED: dict[tuple[str, object], TrainingMemory] = {}
_SIZED_LOCK = threading.Lock()


def training_memory(model_config) -> TrainingMemory:
    """``size_training_memory``, remembered for the process."""
    from .layers import BLOCKS

    try:
        key = (training_memory_key(model_config), BLOCKS.get(getattr(model_config, "block", "bottleneck")))
    except (KeyError, ValueError):  # an unknown block: building it says so
        return size_training_memory(model_config)
    with _SIZED_LOCK:
        known = _SIZED.get(key)
    if known is None:
        known = size_training_memory(model_config)
        with _SIZED_LOCK:
            _SIZED[key] = known
    return known


def size_training_memory(model_config) -> TrainingMemory:
    """Size ``model_config``'s training on PyTorch's "meta" device (shapes, no memory, no compute):
    the bytes of the tensors autograd saves in a full-depth forward of 1 and of 2 images give what an
    image adds and what a batch costs once. A model whose forward cannot run on "meta" (a plugin's
    block) is sized by its parameters alone.

    Every iteration of a block after the first saves the same tensors, so the bytes grow linearly with
    each block's cap from 2 on: deep custom caps of the built-in block are sized from small ones (2 per
    block, then 3 in each block in turn), with the same result."""
    from .model import build_model

    with torch.device("meta"):
        model = build_model(model_config)
    parameters = sum(p.numel() for p in model.parameters())
    caps = tuple(getattr(model, "caps", ()))
    try:
        # a plugin's block need not save the same tensors at every iteration: sized directly, however deep
        if sum(caps) <= DIRECT_SIZING_ITERATIONS or getattr(model_config, "block", "bottleneck") != "bottleneck":
            one, two = _saved_bytes_by_batch(model, model_config)
        else:
            base = tuple(min(cap, 2) for cap in caps)
            start = one, two = _saved_bytes_with_caps(model_config, base)
            for block, cap in enumerate(caps):
                if cap > 2:
                    deeper = _saved_bytes_with_caps(model_config, base[:block] + (3,) + base[block + 1:])
                    one += (cap - 2) * (deeper[0] - start[0])
                    two += (cap - 2) * (deeper[1] - start[1])
    except Exception:  # noqa: BLE001 - sizing is advice: without it the trainer's own OOM message remains
        return TrainingMemory(parameters, 0, 0)
    return TrainingMemory(parameters, bytes_per_image=max(two - one, 0), bytes_per_batch=max(2 * one - two, 0))


def _saved_bytes_by_batch(model: torch.nn.Module, config) -> tuple[int, int]:
    """Bytes autograd saves in a full-depth training forward of 1 image and of 2."""
    model.train()
    return _saved_bytes(model, config, 1), _saved_bytes(model, config, 2)


def _saved_bytes_with_caps(model_config, caps: tuple[int, ...]) -> tuple[int, int]:
    """``_saved_bytes_by_batch`` of the same model with other caps per block."""
    from .model import build_model

    config = dataclasses.replace(model_config, iterations=caps, halting_caps=None)
    with torch.device("meta"):
        model = build_model(config)
    return _saved_bytes_by_batch(model, config)


def training_memory_key(model_config) -> str:
    """What ``training_memory`` depends on, as a cache key: the model's settings less those that only weigh
    the loss or set the halting threshold (the sizing forward runs every iteration whatever the halting)."""
    settings = dataclasses.asdict(model_config)
    for name in ("tau", "eps", "threshold", "halting_caps"):
        settings.pop(name, None)
    return repr(sorted(settings.items()))


def _saved_bytes(model: torch.nn.Module, config, batch: int) -> int:
    """Bytes of the distinct storages autograd saves in a full-depth forward of ``batch`` images."""
    storages: dict[int, torch.UntypedStorage] = {}  # kept alive: no address is reused while counting

    def count(tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        storages[storage._cdata] = storage  # a tensor saved by two operations counts once
        # nothing is packed: returning the tensor would save it in its own graph node, a reference cycle
        # that only the garbage collector frees, from whichever thread runs it (a crash seen in the app)

    x = torch.zeros(batch, config.in_channels, config.image_size, config.image_size, device="meta")
    exits = {"exits": tuple(model.caps)} if hasattr(model, "caps") else {}
    import gc

    # no garbage collection while the graph exists: a collector in another thread (the app's UI thread)
    # walking tensors while this thread builds or frees autograd nodes crashed the process
    collecting = gc.isenabled()
    gc.disable()
    try:
        with torch.autograd.graph.saved_tensors_hooks(count, lambda packed: packed):
            output = model(x, **exits)
        del output  # the graph goes with it: no backward ever runs on it
    finally:
        if collecting:
            gc.enable()
    return sum(storage.nbytes() for storage in storages.values())


def memory_problem(memory: TrainingMemory, available: int, where: str = "free on this computer",
                   batch_size: int = 1, training_images: int | None = None) -> str | None:
    """A sentence when training does not fit in ``available`` bytes, else None. It starts with the
    setting to change: "width: ..." (the parameters alone do not fit) or "batch_size: ...". With
    ``training_images`` given, no batch holds more images than that (the last batch of a small set)."""
    images = batch_size if not training_images else min(batch_size, training_images)
    weights = memory.parameters * TRAINING_BYTES_PER_PARAMETER
    if weights > available:
        return (f"width: {memory.parameters / 1e6:,.0f} M parameters need about {weights / 2**30:,.1f} GB to train "
                f"(weights, gradients, optimiser state), more than the {available / 2**30:,.1f} GB {where}: "
                "choose a smaller width")
    needed = memory.needed(images)
    if needed <= available:
        return None
    largest = memory.largest_batch(available)
    advice = (f"choose a batch size of at most {largest:,}" if largest >= 1
              else "choose a smaller width or image size")
    # said so, or "a batch of 54,000" reads as a typo of ours
    capped = f" (every training image: a batch of {batch_size:,} never holds more)" if images < batch_size else ""
    return (f"batch_size: a batch of {images:,} images{capped} needs about {needed / 2**30:,.1f} GB to train this "
            f"model (its activations), more than the {available / 2**30:,.1f} GB {where}: {advice}")


def main(argv: list[str] | None = None) -> int:
    """``python -m iamnn_studio.engine.estimate --serve``: the app's Train form sizes its model shapes in such a
    child process (``serve``); the sizing forward builds an autograd graph, which crashed the app when run in one
    of its threads, and froze its window in the UI thread."""
    import sys

    if (sys.argv[1:] if argv is None else argv) != ["--serve"]:
        print("usage: python -m iamnn_studio.engine.estimate --serve  (model configs' JSON on stdin, a line each)",
              file=sys.stderr)
        return 2
    return serve(sys.stdin, sys.stdout)


#: Sized once before ``serve`` says it is ready: the first sizing in a process pays for torch's lazy imports
#: (3-4 s on a busy 2-core machine, then 0.5-0.9 s a shape), and a user's first shape should not.
WARM_UP_MODEL = {"width": 4, "iterations": [1, 1, 1, 1], "image_size": 16, "num_classes": 2}


def serve(requests, answers) -> int:
    """Size models until ``requests`` closes: one ``ModelConfig.to_dict()`` JSON a line in, one JSON line out
    for each, ``{"memory": {...}}`` or ``{"error": "cannot size this model: ..."}``. The first line out is
    ``{"ready": true}``, once torch is imported and warmed up. The app keeps one such process per Train form."""
    import contextlib
    import json
    import sys

    from .config import ModelConfig

    _yield_to_interactive_work()
    with contextlib.redirect_stdout(sys.stderr):  # a plugin's block that prints must not garble the answers
        training_memory(ModelConfig.from_dict(WARM_UP_MODEL).validate())
        _answer(answers, {"ready": True})
        for line in iter(requests.readline, ""):
            if not line.strip():
                continue
            try:
                config = ModelConfig.from_dict(json.loads(line)).validate()
                reply = {"memory": dataclasses.asdict(training_memory(config))}
            except Exception as error:  # noqa: BLE001 - the app gets one sentence, never a traceback
                reply = {"error": f"cannot size this model: {error}"}
            _answer(answers, reply)
    return 0


def _answer(answers, reply: dict) -> None:
    import json

    answers.write(json.dumps(reply) + "\n")
    answers.flush()


def _yield_to_interactive_work() -> None:
    """Linux ``SCHED_BATCH`` for this helper: the same share of the CPU, but it no longer preempts the app's UI
    thread when that wakes up (its torch import runs while the app starts). Elsewhere, or refused: as it was."""
    import os

    policy = getattr(os, "SCHED_BATCH", None)
    if policy is not None:
        try:
            os.sched_setscheduler(0, policy, os.sched_param(0))
        except OSError:
            pass


if __name__ == "__main__":
    raise SystemExit(main())
