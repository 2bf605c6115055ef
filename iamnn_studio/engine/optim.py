"""Optimiser and learning-rate schedule of a run, built from its ``RunConfig``.

Schedules step once per optimiser step (not per epoch), so a run capped by ``max_steps``
still anneals over its whole (shortened) length.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, OneCycleLR

from .config import RunConfig

#: Where the ``step`` schedule divides the learning rate by 10 (fractions of the run).
STEP_MILESTONES = (0.5, 0.75)


def planned_steps(config: RunConfig, steps_per_epoch: int) -> int:
    """Optimiser steps of the whole run: every epoch, or fewer when ``max_steps`` caps it."""
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return max(1, total)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on convolution and linear weights only.

    Decaying batchnorm scales and biases only shrinks them towards zero without regularising
    anything (they have no fan-in to constrain), so they form a group of their own.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, config: RunConfig) -> Optimizer:
    """SGD with Nesterov momentum, or AdamW, over ``model``'s trainable parameters."""
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise ValueError(f"optimizer: unknown optimiser {config.optimizer!r}")


def build_scheduler(optimizer: Optimizer, config: RunConfig, total_steps: int) -> LRScheduler:
    """The learning-rate schedule over ``total_steps`` optimiser steps."""
    total_steps = max(1, int(total_steps))
    if config.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "one-cycle":
        return OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    if config.schedule == "step":
        milestones = [math.floor(f * total_steps) for f in STEP_MILESTONES]
        return LambdaLR(optimizer, _StepFactor(milestones))
    if config.schedule == "constant":
        return LambdaLR(optimizer, _constant_factor)
    raise ValueError(f"schedule: unknown schedule {config.schedule!r}")


class _StepFactor:
    """x0.1 at each milestone; a class rather than a lambda so the schedule pickles for DDP workers."""

    def __init__(self, milestones: list[int]) -> None:
        self.milestones = milestones

    def __call__(self, step: int) -> float:
        return 0.1 ** sum(step >= m for m in self.milestones)


def _constant_factor(step: int) -> float:
    return 1.0
