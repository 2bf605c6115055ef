"""Does the halting pay? Adaptive inference against fixed iteration counts on the same weights.

An adaptive model is worth its halting only if, at the MACs it spends, it is more accurate than
simply running every image for a fixed number of iterations per block (and than dealing the same
iteration vectors to the images at random, ``docs/research/adaptivity.md`` section 6). Both controls
are in an evaluation (``evaluate``'s ``sweep.fixed`` and ``adaptivity.random_allocation``); this
module reads them off and says, in one sentence, what a user should run. Pure Python on the
evaluation dict: it works on any ``eval.json``, old or new, and needs no torch.

How sure: evaluations count, per fixed setting, the images only it or only the adaptive model gets
right (``paired``). The difference of two accuracies on the same images then has the standard
error of a paired (McNemar) comparison, and the verdict says when the difference is within two
of them. The margin over random allocation is held to the same rule: with the images only one of
the two gets right (``random_allocation.paired``), against its own paired standard error; without
them (evaluations from before those counts), against the fixed comparison's standard error, the
nearest yardstick on the same images. A margin within two of them is "level", not a win.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from ..numbers import si

LEADS = {"pays": "The halting pays", "level": "The halting is level with fixed iterations",
         "does not pay": "The halting does not pay on this model",
         "level with random": "The halting is level with random allocation",
         "unmeasured": "The halting is ahead of fixed iterations; random allocation was not measured",
         "nothing to adapt": "The halting has nothing to adapt"}

#: Differences smaller than this (in top-1, as a fraction) are "the same": one image in 2,000.
TIE = 0.0005


def _bracket(curve: Sequence[dict], macs: float) -> tuple[dict, dict, float] | None:
    """The neighbours of ``macs`` on a (mean MACs, top-1) curve and the position between them."""
    points = sorted(curve, key=lambda p: p["mean_macs"])
    for a, b in zip(points, points[1:]):
        if a["mean_macs"] <= macs <= b["mean_macs"]:
            span = b["mean_macs"] - a["mean_macs"]
            return a, b, (macs - a["mean_macs"]) / span if span else 0.0
    return None


def interpolate_top1(curve: Sequence[dict], macs: float) -> float | None:
    """Top-1 of a (mean MACs, top-1) curve at ``macs``, linear between neighbours; None outside it."""
    found = _bracket(curve, macs)
    if found is None:
        return None
    a, b, t = found
    if a["mean_macs"] == b["mean_macs"]:
        return max(a["top1"], b["top1"])
    return a["top1"] + t * (b["top1"] - a["top1"])


def paired_standard_error(point: dict, images: int | None) -> float | None:
    """Standard error of (adaptive - ``point``) top-1 on the same ``images``; None without the counts.

    ``point`` is a fixed-sweep point (``paired.only_fixed_right``) or the random allocation
    (``paired.only_random_right``)."""
    paired = point.get("paired")
    if not isinstance(paired, dict) or not isinstance(images, int) or images <= 0:
        return None
    a, b = paired.get("only_adaptive_right"), paired.get("only_fixed_right", paired.get("only_random_right"))
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (a, b)):
        return None
    return math.sqrt(max(a + b - (a - b) ** 2 / images, 0.0)) / images


def _interpolated_error(curve: Sequence[dict], macs: float, images: int | None) -> float | None:
    """The neighbours' paired errors, mixed as the interpolation mixes them (a bound: as if fully correlated)."""
    found = _bracket(curve, macs)
    if found is None:
        return None
    a, b, t = found
    errors = paired_standard_error(a, images), paired_standard_error(b, images)
    return None if None in errors else (1 - t) * errors[0] + t * errors[1]


def fixed_mode(iterations: Sequence[int]) -> str:
    """The ``--mode`` that runs a fixed sweep point: n iterations per block, capped per block."""
    return f"fixed:{max(iterations)}"


def one_iteration_halting(evaluation: dict[str, Any]) -> bool:
    """Whether ``evaluation``'s model may run only one iteration per block in adaptive mode (its calibration's
    ``halting_caps``, else its caps): no image can differ, so adaptive runs exactly what ``fixed:1`` runs."""
    limits = evaluation.get("halting_caps") or evaluation.get("caps")
    return (evaluation.get("mode") == "adaptive" and isinstance(limits, list) and bool(limits)
            and all(isinstance(n, int) and n <= 1 for n in limits))


def halting_tradeoff(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """Adaptive against its controls, with a verdict; None unless ``evaluation`` is of an adaptive
    model with a fixed-count sweep.

    Keys: ``top1`` and ``mean_macs`` (adaptive), ``fixed_at_equal_macs`` (the fixed curve
    interpolated there), ``random_top1``, ``best_fixed`` (the most accurate fixed setting),
    ``alternative`` (the cheapest fixed setting at least as accurate as adaptive, if any),
    ``pays`` (True, False, or None where the fixed curve does not reach the adaptive MACs),
    ``outcome`` (what the verdict leads with: "pays", "level" when the difference is within noise,
    "does not pay", "nothing to adapt" where the halting is limited to one iteration per block, or None), ``standard_error`` of the difference it rests on and ``within_noise`` (|difference| < 2 of them;
    None without paired counts), ``versus_random`` (adaptive minus the random allocation, None without
    it), ``random_standard_error`` (its paired standard error, else the fixed comparison's; None
    without either), ``random_within_noise`` (a margin above ``TIE`` but under two of them; None
    without a random control or an error) and ``beats_random`` (True: by more than ``TIE`` and
    beyond the noise; False: by no more than ``TIE``; None: not measured, or within noise),
    ``verdict`` (sentences for a person) and ``suggested_mode`` (what to run for this accuracy).

    The halting pays only where it beats both controls (adaptivity.md section 6): ahead of fixed counts
    but no better than the random allocation, its gain comes from the mix of iteration counts, not from
    choosing them per image, and the outcome is "does not pay". Ahead of fixed counts but within the
    noise of random allocation, or where random allocation was not measured (every image used the same
    iterations: nothing to permute), the outcome is "level" (``pays`` False or None): a control that was
    not measured is not beaten. Figures that are not finite numbers (a damaged file's NaN) are left
    out: no figure, no verdict on it.
    """
    if not evaluation or evaluation.get("mode") != "adaptive" or evaluation.get("architecture") != "iamnn":
        return None
    fixed = [p for p in (evaluation.get("sweep") or {}).get("fixed") or [] if _is_point(p)]
    top1, macs = _finite(evaluation.get("top1")), _finite((evaluation.get("macs") or {}).get("mean"))
    if not fixed or top1 is None or macs is None:
        return None
    random = (evaluation.get("adaptivity") or {}).get("random_allocation")
    random = random if isinstance(random, dict) else {}
    random_top1 = _finite(random.get("top1"))
    at_equal = interpolate_top1(fixed, macs)
    best = max(fixed, key=lambda p: (p["top1"], -p["mean_macs"]))
    as_good = [p for p in fixed if p["top1"] >= top1 - TIE]
    alternative = min(as_good, key=lambda p: p["mean_macs"]) if as_good else None
    images = evaluation.get("images")
    result: dict[str, Any] = {
        "top1": top1, "mean_macs": macs, "fixed_at_equal_macs": at_equal, "random_top1": random_top1,
        "best_fixed": best, "alternative": alternative, "pays": None, "outcome": None, "suggested_mode": "adaptive",
        "standard_error": None, "within_noise": None,
        "versus_random": None if random_top1 is None else top1 - random_top1,
        "random_standard_error": None, "random_within_noise": None,
        "beats_random": None if random_top1 is None or top1 - random_top1 > TIE else False,
    }
    if one_iteration_halting(evaluation):  # adaptive is fixed:1 here: neither wins, there is no choice to judge
        result["outcome"] = "nothing to adapt"
        result["verdict"] = (f"{LEADS['nothing to adapt']}: it is limited to one iteration per block, so adaptive and "
                             f"fixed:1 are the same computation (adaptive {_pct(top1)} at {_macs(macs)} MACs).")
        if best["top1"] > top1 + TIE:
            result["verdict"] += f" Most accurate: {_describe(best)}."
        return result
    cheaper = alternative is not None and alternative["mean_macs"] <= macs
    if cheaper:
        difference, error = top1 - alternative["top1"], paired_standard_error(alternative, images)
    else:
        difference = None if at_equal is None else top1 - at_equal
        error = _interpolated_error(fixed, macs, images)
    if error is not None and difference is not None:
        result["standard_error"], result["within_noise"] = error, abs(difference) < 2 * error
    if random_top1 is not None:
        random_error = paired_standard_error(random, images)
        result["random_standard_error"] = random_error if random_error is not None else error
        if result["beats_random"] is None:  # ahead of random by more than TIE: beyond the noise?
            margin, noise = top1 - random_top1, result["random_standard_error"]
            result["random_within_noise"] = None if noise is None else margin < 2 * noise
            result["beats_random"] = None if result["random_within_noise"] else True
        elif result["random_standard_error"] is not None:
            result["random_within_noise"] = False
    versus = fixed_mode(alternative["iterations"]) if cheaper else "fixed iterations at the same MACs"
    adaptive = f"adaptive {_pct(top1)} at {_macs(macs)} MACs{_noise(result, versus)}"
    named: list[dict] = []  # fixed settings the verdict already names
    if cheaper:
        result["pays"], result["outcome"] = False, "does not pay"
        result["suggested_mode"] = fixed_mode(alternative["iterations"])
        result["verdict"] = (f"{LEADS['does not pay']}: {_describe(alternative)} costs no more "
                             f"({adaptive}).")
        named.append(alternative)
    elif at_equal is None:
        result["verdict"] = (f"No like-for-like comparison: the fixed iteration counts do not span {_macs(macs)} "
                             f"MACs ({adaptive}).")
    elif top1 >= at_equal - TIE and result["beats_random"] is False:
        result["pays"], result["outcome"] = False, "does not pay"
        result["verdict"] = (f"{LEADS['does not pay']}: dealing the same iteration counts to the images at random is "
                             f"as accurate ({_signed(top1 - random_top1)} over random allocation), so its "
                             f"{_signed(top1 - at_equal)} over fixed iterations at the same MACs comes from the mix of "
                             f"counts, not from choosing them per image ({adaptive}).")
    elif top1 >= at_equal - TIE and result["beats_random"] is None:  # random allocation not measured, or level
        measured = random_top1 is not None
        result["pays"], result["outcome"] = (False if measured else None), "level"
        lead = "level" if result["within_noise"] else "level with random" if measured else "unmeasured"
        versus_random = (f" and {_signed(top1 - random_top1)} over random allocation, "
                         f"{_random_noise(result['random_standard_error'], random_error is not None)}"
                         if measured else "")
        result["verdict"] = (f"{LEADS[lead]}: {_signed(top1 - at_equal)} over fixed iterations at the same MACs"
                             f"{versus_random} ({adaptive}).")
        if not measured:
            result["verdict"] += (" Whether it chooses iterations per image better than dealing them at random "
                                  "is unknown.")
    elif top1 >= at_equal - TIE:
        result["pays"], result["outcome"] = True, "level" if result["within_noise"] else "pays"
        versus_random = "" if random_top1 is None else f" and {_signed(top1 - random_top1)} over random allocation"
        result["verdict"] = (f"{LEADS[result['outcome']]}: {_signed(top1 - at_equal)} over fixed iterations at the same MACs"
                             f"{versus_random} ({adaptive}).")
    else:
        result["pays"], result["outcome"] = False, "level" if result["within_noise"] else "does not pay"
        result["verdict"] = (f"{LEADS[result['outcome']]}: fixed iterations at the same MACs are "
                             f"{_signed(at_equal - top1)} more accurate ({adaptive}).")
        if alternative is not None:
            result["suggested_mode"] = fixed_mode(alternative["iterations"])
            result["verdict"] += (f" At least as accurate: {_describe(alternative)}, "
                                  f"for {alternative['mean_macs'] / macs - 1:.0%} more MACs.")
            named.append(alternative)
    if best["top1"] > top1 + TIE and not any(best is point for point in named):
        result["verdict"] += f" Most accurate: {_describe(best)}."
    return result


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None for what is not a finite number (null, text, NaN, true/false)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _is_point(point: Any) -> bool:
    """A fixed-sweep point the verdict can use: iterations, and finite MACs and top-1."""
    return (isinstance(point, dict) and bool(point.get("iterations"))
            and _finite(point.get("mean_macs")) is not None and _finite(point.get("top1")) is not None)


def _noise(result: dict[str, Any], versus: str) -> str:
    """The rule the fixed comparison is held to, with its band: "; against fixed:1 the difference is within two
    paired standard errors, ±0.30 pt, so within noise" (QA: "within its standard error" beside a larger margin)."""
    if result["standard_error"] is None:
        return ""
    where, band = ("within" if result["within_noise"] else "beyond"), _band(result["standard_error"])
    return (f"; against {versus} the difference is {where} two paired standard errors, {band}"
            + (", so within noise" if result["within_noise"] else ""))


def _random_noise(error: float, own: bool) -> str:
    """The rule a margin over random allocation is held to: its own paired standard errors, else (no paired
    counts against random) the fixed comparison's, said as such."""
    if own:
        return f"within two paired standard errors of that comparison, {_band(error)}"
    return (f"within two paired standard errors of the fixed comparison, {_band(error)}, as its own paired counts "
            "were not recorded")


def _band(error: float) -> str:
    """Two standard errors either side: the band a difference must leave to count (``within_noise``)."""
    return f"±{200 * error:.2f} pt"


def _describe(point: dict) -> str:
    return (f"{fixed_mode(point['iterations'])} ({_iterations(point)} iterations) with {_pct(point['top1'])} at "
            f"{_macs(point['mean_macs'])} MACs")  # the unit every time: "at 2.82 M" alone read as anything


def _iterations(point: dict) -> str:
    return "-".join(str(n) for n in point["iterations"])


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _signed(value: float) -> str:
    return f"{100 * value:+.2f} pt"


def _macs(value: float) -> str:
    """As every other count reads (numbers.si): "720 k", "5.22 M", not "0.7 M"."""
    return si(value) or "?"
