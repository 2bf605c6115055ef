"""Halting rules, one small function each, so a reader can check them against the papers.

Graves (2016), "Adaptive Computation Time for Recurrent Neural Networks", eqs. (5)-(12):

* each iteration n emits a halting score h_n in (0, 1);
* the block halts at N = min{ n : sum_{j<=n} h_j >= 1 - eps }, or at the iteration cap,
  which forces a halt whatever the scores are;
* the remainder R = 1 - sum_{j<N} h_j replaces h_N, so the weights
  p_n = h_n (n < N) and p_N = R sum to exactly 1;
* the block output is the p-weighted mean of the states, and the ponder cost is N + R.

``1 - eps`` is the *threshold*; the studio lets users move it on a trained model.

The calibrated halting (the studio's default; see ``docs/research/adaptivity.md``) reads the same
head as a hazard: h_n = P(stop at n | not stopped before), so the cumulative halting score
is c_n = 1 - prod_{j<=n} (1 - h_j) and the block halts at the first n with c_n >= threshold.
The output is then the state at the halting iteration (hard exit, weight 1).
"""
from __future__ import annotations

import torch
from torch import Tensor


def act_step(cumulative: Tensor, score: Tensor | None, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """One ACT step for the samples still running.

    Args:
        cumulative: sum of the earlier halting scores, sum_{j<n} h_j.
        score: h_n, or None at the iteration cap (no head is run there: the cap forces a halt).
        threshold: 1 - eps.

    Returns:
        (halt, weight, new_cumulative): ``halt`` marks samples whose N is n; ``weight`` is
        p_n (h_n, or the remainder R = 1 - cumulative for halting samples).
    """
    if score is None:
        halt = torch.ones_like(cumulative, dtype=torch.bool)
        return halt, 1.0 - cumulative, cumulative
    new_cumulative = cumulative + score
    halt = new_cumulative >= threshold
    weight = torch.where(halt, 1.0 - cumulative, score)
    return halt, weight, new_cumulative


def hazard_step(cumulative: Tensor, score: Tensor | None, threshold: float) -> tuple[Tensor, Tensor]:
    """One calibrated-halting step: c_n = 1 - (1 - c_{n-1}) (1 - h_n); halt when c_n >= threshold.

    At the cap (``score`` None) every running sample halts.
    """
    if score is None:
        return torch.ones_like(cumulative, dtype=torch.bool), cumulative
    new_cumulative = 1.0 - (1.0 - cumulative) * (1.0 - score)
    return new_cumulative >= threshold, new_cumulative
