"""Does the halting pay? Adaptive inference against fixed iteration counts on the same weights.

An adaptive model is worth its halting only if, at the MACs it spends, it is more accurate than
simply running every image for a fixed number of iterations per block (and than dealing the same
iteration vectors to the images at random, ``research/adaptivity.md`` section 6). Both controls
are in an evaluation (``evaluate``'s ``sweep.fixed`` and ``adaptivity.random_allocation``); this
module reads them off and says, in one sentence, what a user should run. Pure Python on the
evaluation dict: it works on any ``eval.json``, old or new, and needs no torch.
"""
from __future__ import annotations

from typing import Any, Sequence

#: Differences smaller than this (in top-1, as a fraction) are "the same": one image in 2,000.
TIE = 0.0005


def interpolate_top1(curve: Sequence[dict], macs: float) -> float | None:
    """Top-1 of a (mean MACs, top-1) curve at ``macs``, linear between neighbours; None outside it."""
    points = sorted(curve, key=lambda p: p["mean_macs"])
    for a, b in zip(points, points[1:]):
        if a["mean_macs"] <= macs <= b["mean_macs"]:
            if b["mean_macs"] == a["mean_macs"]:
                return max(a["top1"], b["top1"])
            t = (macs - a["mean_macs"]) / (b["mean_macs"] - a["mean_macs"])
            return a["top1"] + t * (b["top1"] - a["top1"])
    return None


def fixed_mode(iterations: Sequence[int]) -> str:
    """The ``--mode`` that runs a fixed sweep point: n iterations per block, capped per block."""
    return f"fixed:{max(iterations)}"


def halting_tradeoff(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """Adaptive against its controls, with a verdict; None unless ``evaluation`` is of an adaptive
    model with a fixed-count sweep.

    Keys: ``top1`` and ``mean_macs`` (adaptive), ``fixed_at_equal_macs`` (the fixed curve
    interpolated there), ``random_top1``, ``best_fixed`` (the most accurate fixed setting),
    ``alternative`` (the cheapest fixed setting at least as accurate as adaptive, if any),
    ``pays`` (True, False, or None where the fixed curve does not reach the adaptive MACs),
    ``verdict`` (sentences for a person) and ``suggested_mode`` (what to run for this accuracy).
    """
    if not evaluation or evaluation.get("mode") != "adaptive" or evaluation.get("architecture") != "iamnn":
        return None
    fixed = list((evaluation.get("sweep") or {}).get("fixed") or [])
    if not fixed or evaluation.get("top1") is None or not evaluation.get("macs"):
        return None
    top1, macs = float(evaluation["top1"]), float(evaluation["macs"]["mean"])
    random_top1 = ((evaluation.get("adaptivity") or {}).get("random_allocation") or {}).get("top1")
    at_equal = interpolate_top1(fixed, macs)
    best = max(fixed, key=lambda p: (p["top1"], -p["mean_macs"]))
    as_good = [p for p in fixed if p["top1"] >= top1 - TIE]
    alternative = min(as_good, key=lambda p: p["mean_macs"]) if as_good else None
    result: dict[str, Any] = {
        "top1": top1, "mean_macs": macs, "fixed_at_equal_macs": at_equal, "random_top1": random_top1,
        "best_fixed": best, "alternative": alternative, "pays": None, "suggested_mode": "adaptive",
    }
    adaptive = f"adaptive {_pct(top1)} at {_macs(macs)} MACs"
    named: list[dict] = []  # fixed settings the verdict already names
    if alternative is not None and alternative["mean_macs"] <= macs:
        result["pays"] = False
        result["suggested_mode"] = fixed_mode(alternative["iterations"])
        result["verdict"] = (f"The halting does not pay on this model: {_describe(alternative)} costs no more "
                             f"({adaptive}).")
        named.append(alternative)
    elif at_equal is None:
        result["verdict"] = (f"No like-for-like comparison: the fixed iteration counts do not span {_macs(macs)} "
                             f"MACs ({adaptive}).")
    elif top1 >= at_equal - TIE:
        result["pays"] = True
        versus_random = "" if random_top1 is None else f" and {_signed(top1 - random_top1)} over random allocation"
        result["verdict"] = (f"The halting pays: {_signed(top1 - at_equal)} over fixed iterations at the same MACs"
                             f"{versus_random} ({adaptive}).")
    else:
        result["pays"] = False
        result["verdict"] = (f"The halting does not pay on this model: fixed iterations at the same MACs are "
                             f"{_signed(at_equal - top1)} more accurate ({adaptive}).")
        if alternative is not None:
            result["suggested_mode"] = fixed_mode(alternative["iterations"])
            result["verdict"] += (f" For this accuracy run {_describe(alternative)}, "
                                  f"{alternative['mean_macs'] / macs - 1:.0%} more MACs.")
            named.append(alternative)
    if best["top1"] > top1 + TIE and not any(best is point for point in named):
        result["verdict"] += f" Most accurate: {_describe(best)}."
    return result


def _describe(point: dict) -> str:
    return (f"{fixed_mode(point['iterations'])} ({_iterations(point)} iterations) with {_pct(point['top1'])} at "
            f"{_macs(point['mean_macs'])}")


def _iterations(point: dict) -> str:
    return "-".join(str(n) for n in point["iterations"])


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _signed(value: float) -> str:
    return f"{100 * value:+.2f} pt"


def _macs(value: float) -> str:
    return f"{value / 1e6:.1f} M" if value < 1e9 else f"{value / 1e9:.2f} G"
