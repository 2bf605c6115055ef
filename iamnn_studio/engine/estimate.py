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

import time
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


def memory_problem(parameters: int, available: int, where: str = "free on this computer") -> str | None:
    """A sentence when training ``parameters`` would not fit in ``available`` bytes, else None."""
    needed = parameters * TRAINING_BYTES_PER_PARAMETER
    if needed <= available:
        return None
    return (f"{parameters / 1e6:,.0f} M parameters need about {needed / 2**30:,.1f} GB to train (weights, "
            f"gradients, optimiser state), more than the {available / 2**30:,.1f} GB {where}: choose a smaller width")
