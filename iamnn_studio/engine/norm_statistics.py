"""Batchnorm running statistics recomputed at the current weights ("precise BN", Wu & Johnson 2021).

Why: a batchnorm's running statistics are a moving average (momentum 0.1) of past training batches that
starts at mean 0, variance 1. Early in a run, while the learning rate is high, the weights move faster
than that average follows: after ~20 steps every layer's running variance was measured 2-100x below the
variance of what it now normalises (worst for the per-iteration norms of later iterations, which the
anytime training reaches in fewer batches). In eval mode each layer hands its error on to the next; over
the ~30 batchnorms of a small IamNN the logits reached 1e7, the validation loss 1e6-1e11 at chance
accuracy, while the training loss, which normalises with batch statistics, was fine. Averaging the
statistics over a fixed set of training images at the current weights gives eval mode what training
sees (measured: 1.4 instead of 4.8e6 on the same weights).

The refreshed statistics are for eval mode only: validation, calibration, evaluation and the saved
checkpoints. Training goes on from the moving averages, put back before its next step
(``moving_averages``, ``put_back_moving_averages``): it reads them where a batch has one value per
channel (``layers._small_batch_norm``: a single survivor of the halting reaching a halting head's norm,
or a 1x1 map), so training is what it would be without the refresh, and a run stopped (its last.pt
holds refreshed statistics, its training state the moving averages) resumes exactly as an
uninterrupted run goes on.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

#: Training images the statistics are averaged over: a few batches' worth, a small share of an epoch.
REFRESH_IMAGES = 1024
#: Smallest refresh batch size: ``refresh_batches`` cuts near-equal batches of at least half of it (unless the
#: training set is smaller), and smaller ones leave the running statistics alone (``MIN_BATCH_FOR_STATS`` = 16).
REFRESH_BATCH_MIN = 32

Norm = nn.modules.batchnorm._BatchNorm


def _running_norms(model: nn.Module) -> list[tuple[str, Norm]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Norm) and m.track_running_stats]


def _moving_average_buffers(model: nn.Module) -> dict[str, Tensor]:
    return {f"{name}.{buffer}": getattr(norm, buffer)
            for name, norm in _running_norms(model) for buffer in ("running_mean", "running_var")}


def moving_averages(model: nn.Module) -> dict[str, Tensor]:
    """Copies of every batchnorm's running mean and variance, by name: training's moving averages, kept
    aside while refreshed statistics take their place."""
    return {key: buffer.detach().clone() for key, buffer in _moving_average_buffers(model).items()}


def check_moving_averages(model: nn.Module, averages: object) -> None:
    """ValueError where ``averages`` are not ``moving_averages`` of a model like ``model`` (a damaged file)."""
    buffers = _moving_average_buffers(model)
    fits = isinstance(averages, dict) and averages.keys() == buffers.keys() and all(
        isinstance(averages[key], Tensor) and averages[key].shape == buffer.shape for key, buffer in buffers.items())
    if not fits:
        raise ValueError("its batchnorm moving averages do not fit the model")


def put_back_moving_averages(model: nn.Module, averages: dict[str, Tensor]) -> None:
    """Give ``model``'s batchnorms the running statistics ``moving_averages`` took (in place: the cached
    folded weights see the change)."""
    check_moving_averages(model, averages)
    for key, buffer in _moving_average_buffers(model).items():
        buffer.copy_(averages[key])


def refresh_images(count: int, seed: int = 0) -> Tensor:
    """Indices of the training images to average over: a fixed random subset (image folders are sorted by
    class, and a batch of one class has a mean far from the population's), the same at every call and on
    every process, drawn from its own generator so that training's random streams are untouched."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:REFRESH_IMAGES]


def refresh_batches(indices: Tensor, batch_size: int) -> list[Tensor]:
    """``indices`` cut into batches of near-equal size (one image apart at most), none above ``batch_size``.
    Cut at ``batch_size``, a leftover batch can be a single image, which a plain batchnorm on a 1x1 map
    refuses in training mode (training drops such a batch too). A single image makes no batch at all."""
    if len(indices) < 2:
        return []
    return list(torch.tensor_split(indices, math.ceil(len(indices) / batch_size)))


def _weigh_by_images(norms: list[Norm]) -> list:
    """Hooks that make each norm's average weigh images, not batches (momentum None averages per batch, so
    a small batch, or a small subset of survivors, would count as much as a full one): before a batch of
    b images, momentum b / (seen + b). A norm that leaves its statistics alone (a subset too small,
    ``layers.MIN_BATCH_FOR_STATS``) does not count its images: it bumps no ``num_batches_tracked``."""
    seen = dict.fromkeys(norms, 0)
    version = {}

    def before(norm: Norm, inputs) -> None:
        images = inputs[0].shape[0]
        norm.momentum = images / (seen[norm] + images)
        version[norm] = norm.num_batches_tracked._version  # read without a device sync

    def after(norm: Norm, inputs, output) -> None:
        if norm.num_batches_tracked._version != version[norm]:
            seen[norm] += inputs[0].shape[0]

    return [hook for norm in norms for hook in (norm.register_forward_pre_hook(before),
                                                 norm.register_forward_hook(after))]


@torch.no_grad()
def refresh_norm_statistics(model: nn.Module, batches: Iterable[Tensor],
                            forward: Callable[[Tensor], object] | None = None) -> int:
    """Replace the running statistics of every batchnorm that ``forward`` (default: ``model``) reaches
    on ``batches`` (normalised images) by their average over those images (each image weighs the same),
    computed in training mode at the current weights. Batchnorms no batch reached (a halting head the
    anytime training never runs, iterations too few samples got to) keep theirs. Returns how many
    batchnorms were refreshed."""
    norms = [m for m in model.modules() if isinstance(m, Norm) and m.track_running_stats]
    kept = {norm: (norm.momentum, norm.running_mean.clone(), norm.running_var.clone(),
                   norm.num_batches_tracked.clone()) for norm in norms}
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
    hooks = _weigh_by_images(norms)
    model.train()
    try:
        for x in batches:
            (forward or model)(x)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
        refreshed = 0
        for norm, (momentum, mean, var, count) in kept.items():
            norm.momentum = momentum
            if norm.num_batches_tracked > 0:
                refreshed += 1
            else:
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
            norm.num_batches_tracked.copy_(count)  # training's count; in place, so cached folded weights rebuild
    return refreshed


def every_exit(model: nn.Module, exits: Callable[[], tuple[int, ...]] | None = None) -> Callable[[Tensor], None]:
    """A forward pass of an anytime-trained IamNN that runs each block to its cap and normalises the state
    after every iteration with that iteration's exit norm: every exit's statistics come from every batch
    (training reaches exit n only in batches whose drawn count is n). The next block gets the exit that
    ``exits()`` draws for the batch (default: full depth): drawn as training draws them, each block's
    statistics average over the inputs its earlier blocks' exits give it in training."""

    def forward(x: Tensor) -> None:
        counts = model.caps if exits is None else exits()
        h = model.stem_output(x)  # in the blocks' layout: NCHW made the refresh ~2x slower on CPU
        for b, block in enumerate(model.blocks):
            h = _through_every_exit(block, model.pool(h) if b else h, counts[b])

    return forward


def _through_every_exit(block: nn.Module, x0: Tensor, exit_at: int) -> Tensor:
    """Run ``block`` to its cap, normalising the state with every iteration's exit norm (which updates that
    norm's statistics); returns the output of exit ``exit_at``. Only that exit is kept, and no halting-head
    features are computed: the refresh needs nothing else."""
    prepared, state, kept = block.prepare(x0), None, None
    for n in range(block.cap):
        state, _ = block._advance(prepared, state, n, pooled=None, in_place=False)
        out = block.exit_norm[n](state)
        if n == exit_at - 1:
            kept = out
    return kept
