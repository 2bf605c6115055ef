"""Does the halting pay? The verdict against fixed iteration counts and random allocation."""
from __future__ import annotations

import pytest

from iamnn_studio.engine.tradeoff import fixed_mode, halting_tradeoff, interpolate_top1, paired_standard_error

CAPS = [3, 4, 6, 3]


def fixed_curve(*top1s: float) -> list[dict]:
    """n = 1, 2, ... iterations per block (capped), 10 M MACs per step of n."""
    return [{"iterations": [min(n, c) for c in CAPS], "mean_macs": 10e6 * n, "top1": t}
            for n, t in enumerate(top1s, start=1)]


def evaluation(top1: float, macs: float, fixed: list[dict], random_top1: float | None = 0.90) -> dict:
    return {"architecture": "iamnn", "mode": "adaptive", "top1": top1, "macs": {"mean": macs},
            "adaptivity": {"random_allocation": {"top1": random_top1}}, "sweep": {"fixed": fixed, "threshold": []}}


def test_fixed_curve_is_interpolated_at_equal_macs():
    curve = [{"mean_macs": 10.0, "top1": 0.80}, {"mean_macs": 30.0, "top1": 0.90}, {"mean_macs": 20.0, "top1": 0.88}]
    assert interpolate_top1(curve, 15.0) == pytest.approx(0.84)
    assert interpolate_top1(curve, 25.0) == pytest.approx(0.89)
    assert interpolate_top1(curve, 5.0) is None


def test_halting_pays_when_adaptive_beats_fixed_counts_at_the_same_macs():
    result = halting_tradeoff(evaluation(0.93, 15e6, fixed_curve(0.90, 0.92, 0.935)))
    assert result["pays"] is True and result["suggested_mode"] == "adaptive"
    assert result["fixed_at_equal_macs"] == pytest.approx(0.91)
    assert "+2.00 pt over fixed iterations at the same MACs and +3.00 pt over random allocation" in result["verdict"]
    assert result["verdict"].endswith("Most accurate: fixed:3 (3-3-3-3 iterations) with 93.50 % at 30.0 M MACs.")


def test_a_fixed_setting_as_accurate_for_no_more_macs_means_the_halting_does_not_pay():
    result = halting_tradeoff(evaluation(0.91, 25e6, fixed_curve(0.90, 0.912, 0.92)))
    assert result["pays"] is False and result["suggested_mode"] == "fixed:2"
    assert result["alternative"]["iterations"] == [2, 2, 2, 2]
    assert "fixed:2 (2-2-2-2 iterations) with 91.20 % at 20.0 M MACs costs no more" in result["verdict"]


def test_fixed_counts_above_the_adaptive_point_do_not_pay_and_the_dearer_alternative_is_named():
    # interpolated at 15 M fixed gives 0.915; adaptive 0.905; 2 per block reaches 0.92 for 33 % more MACs
    result = halting_tradeoff(evaluation(0.905, 15e6, fixed_curve(0.90, 0.93, 0.94)))
    assert result["pays"] is False and result["suggested_mode"] == "fixed:2"
    assert "+1.00 pt more accurate" in result["verdict"] and "33% more MACs" in result["verdict"]
    assert "At least as accurate: fixed:2 (2-2-2-2 iterations) with 93.00 % at 20.0 M MACs, for" in result["verdict"]


def test_no_verdict_without_an_adaptive_model_or_a_fixed_sweep_and_none_outside_the_curve():
    assert halting_tradeoff({**evaluation(0.9, 15e6, fixed_curve(0.9, 0.92)), "mode": "max"}) is None
    assert halting_tradeoff({**evaluation(0.9, 15e6, fixed_curve(0.9, 0.92)), "architecture": "resnet"}) is None
    assert halting_tradeoff(evaluation(0.9, 15e6, [])) is None
    beyond = halting_tradeoff(evaluation(0.95, 35e6, fixed_curve(0.90, 0.92, 0.94), random_top1=None))
    assert beyond["pays"] is None and "do not span" in beyond["verdict"]


def test_fixed_mode_runs_the_largest_count_capped_per_block():
    assert fixed_mode([3, 4, 4, 3]) == "fixed:4" and fixed_mode([1, 1, 1, 1]) == "fixed:1"


def test_the_paired_standard_error_comes_from_the_images_only_one_side_gets_right():
    point = {"paired": {"only_adaptive_right": 30, "only_fixed_right": 10}}
    assert paired_standard_error(point, 1000) == pytest.approx((40 - 20 ** 2 / 1000) ** 0.5 / 1000)
    assert paired_standard_error({"top1": 0.9}, 1000) is None  # evaluations from before the counts


def test_a_difference_within_two_standard_errors_is_called_noise():
    def curve(disagreeing: int) -> list[dict]:
        points = fixed_curve(0.90, 0.92, 0.935)
        for p in points:
            p["paired"] = {"only_adaptive_right": disagreeing, "only_fixed_right": disagreeing // 2}
        return points

    # adaptive 91.2 % against 91.0 % interpolated: +0.2 pt
    clear = halting_tradeoff({**evaluation(0.912, 15e6, curve(40)), "images": 10_000})
    assert clear["standard_error"] == pytest.approx((60 - 20 ** 2 / 10_000) ** 0.5 / 10_000)
    assert clear["within_noise"] is False
    assert "the difference is beyond two paired standard errors, ±0.15 pt)" in clear["verdict"]
    noisy = halting_tradeoff({**evaluation(0.912, 15e6, curve(400)), "images": 10_000})
    assert noisy["within_noise"] is True
    assert "the difference is within two paired standard errors, ±0.49 pt, so within noise" in noisy["verdict"]
    assert halting_tradeoff(evaluation(0.93, 15e6, fixed_curve(0.90, 0.92)))["standard_error"] is None


def test_the_outcome_is_what_the_verdict_leads_with():
    paired = {"only_adaptive_right": 400, "only_fixed_right": 200}
    level = halting_tradeoff({**evaluation(0.9135, 15e6, [{**p, "paired": paired} for p in fixed_curve(0.90, 0.93)]),
                              "images": 10_000})
    assert level["pays"] is False and level["outcome"] == "level"
    assert level["verdict"].startswith("The halting is level with fixed iterations")
    assert halting_tradeoff(evaluation(0.905, 15e6, fixed_curve(0.90, 0.93)))["outcome"] == "does not pay"
    assert halting_tradeoff(evaluation(0.93, 15e6, fixed_curve(0.90, 0.92)))["outcome"] == "pays"


def test_the_verdict_writes_macs_as_everywhere_else():
    # QA: "fixed:1 ... at 0.7 M costs no more (adaptive 54.11 % at 0.7 M MACs)" beside "720 k" and "5.22 M"
    evaluation = {"mode": "adaptive", "architecture": "iamnn", "top1": 0.5411, "images": 100,
                  "macs": {"mean": 723_456.0},
                  "sweep": {"fixed": [{"iterations": [1, 1, 1, 1], "mean_macs": 720_123.0, "top1": 0.56},
                                     {"iterations": [2, 2, 2, 2], "mean_macs": 5_221_000.0, "top1": 0.6}]}}
    verdict = halting_tradeoff(evaluation)["verdict"]
    # QA: "fixed:1 … at 2.82 M costs no more": every figure of MACs says so, as the adaptive one does
    assert "with 56.00 % at 720 k MACs costs no more (adaptive 54.11 % at 723 k MACs)" in verdict
    assert "at 5.22 M MACs." in verdict and "0.7 M" not in verdict


def test_a_halting_no_better_than_random_allocation_does_not_pay():
    # QA: "The halting pays: +1.28 pt over fixed iterations ... and -0.01 pt over random allocation", in green,
    # under an Adaptivity tile that said "Collapsed": dealing the same iterations at random is as accurate, so
    # the gain over fixed counts comes from the mix of counts, not from choosing them per image.
    result = halting_tradeoff(evaluation(0.93, 15e6, fixed_curve(0.90, 0.92, 0.935), random_top1=0.9301))
    assert result["pays"] is False and result["outcome"] == "does not pay"
    assert result["verdict"].startswith("The halting does not pay on this model")
    assert "random allocation" in result["verdict"] and "-0.01 pt" in result["verdict"]
    assert "pays:" not in result["verdict"]
    assert result["versus_random"] == pytest.approx(-0.0001) and result["beats_random"] is False
    # beating both controls still pays
    assert halting_tradeoff(evaluation(0.93, 15e6, fixed_curve(0.90, 0.92, 0.935)))["beats_random"] is True


def test_a_random_control_that_was_not_measured_is_not_beaten():
    # review: every image used the same iterations (a collapsed halting), so random allocation had nothing to
    # permute (top1 null); the verdict still said "pays" and the Collapsed tile "yet it beats ... random allocation"
    unknown = halting_tradeoff(evaluation(0.93, 15e6, fixed_curve(0.90, 0.92, 0.935), random_top1=None))
    assert unknown["outcome"] == "level" and unknown["pays"] is None and unknown["beats_random"] is None
    assert unknown["verdict"].startswith("The halting is ahead of fixed iterations; random allocation was not measured")
    assert "pays" not in unknown["verdict"] and "+2.00 pt over fixed iterations" in unknown["verdict"]


def test_a_margin_over_random_allocation_within_its_noise_is_level():
    paired = {"only_adaptive_right": 40, "only_fixed_right": 20}
    curve = [{**p, "paired": paired} for p in fixed_curve(0.90, 0.92, 0.935)]
    # adaptive 93.0 % vs fixed 91.0 % at 15 M (SE about 0.08 pt): clearly ahead; random at 92.9 %
    base = {**evaluation(0.93, 15e6, curve, random_top1=0.929), "images": 10_000}
    # without paired counts against random, the fixed comparison's standard error is the yardstick
    level = halting_tradeoff(base)
    assert level["within_noise"] is False and level["random_within_noise"] is True
    assert level["outcome"] == "level" and level["pays"] is False and level["beats_random"] is None
    assert level["verdict"].startswith("The halting is level with random allocation")
    assert ("+0.10 pt over random allocation, within two paired standard errors of the fixed comparison, ±0.15 pt, "
            "as its own paired counts were not recorded") in level["verdict"]
    # with paired counts against random, its own standard error decides: a wide one keeps it level ...
    wide = {**base["adaptivity"]["random_allocation"], "paired": {"only_adaptive_right": 400, "only_random_right": 390}}
    assert halting_tradeoff({**base, "adaptivity": {"random_allocation": wide}})["outcome"] == "level"
    # ... and a narrow one makes the +0.10 pt a win
    narrow = {**base["adaptivity"]["random_allocation"], "paired": {"only_adaptive_right": 12, "only_random_right": 2}}
    won = halting_tradeoff({**base, "adaptivity": {"random_allocation": narrow}})
    assert won["outcome"] == "pays" and won["beats_random"] is True and won["random_within_noise"] is False
    assert won["random_standard_error"] == pytest.approx(paired_standard_error(
        {"paired": {"only_adaptive_right": 12, "only_fixed_right": 2}}, 10_000))


@pytest.mark.parametrize("damage", [{"top1": float("nan")}, {"macs": {"mean": float("nan")}},
                                    {"adaptivity": {"random_allocation": {"top1": float("nan")}}}])
def test_nan_figures_never_reach_the_verdict(damage):
    result = halting_tradeoff({**evaluation(0.93, 15e6, fixed_curve(0.90, 0.92, 0.935)), **damage})
    assert result is None or "nan" not in result["verdict"].lower()
    nan_point = fixed_curve(0.90, 0.92, 0.935)
    nan_point[1]["top1"] = float("nan")
    assert "nan" not in halting_tradeoff(evaluation(0.93, 15e6, nan_point))["verdict"].lower()


@pytest.mark.parametrize("limit", [{"halting_caps": [1, 1, 1, 1]}, {"caps": [1, 1, 1, 1], "halting_caps": None}])
def test_a_halting_limited_to_one_iteration_per_block_has_nothing_to_adapt(limit):
    """QA: a calibration that limited the halting to one iteration per block made adaptive and fixed:1 the same
    computation, and the verdict said "The halting does not pay on this model: fixed:1 … costs no more"."""
    one = {**fixed_curve(0.90)[0], "paired": {"only_fixed_right": 0, "only_adaptive_right": 0}}
    result = halting_tradeoff({**evaluation(0.90, 10e6, [one, *fixed_curve(0.90, 0.93)[1:]], random_top1=None),
                               "caps": CAPS, "images": 1000, **limit})
    assert result["outcome"] == "nothing to adapt" and result["pays"] is None
    assert result["suggested_mode"] == "adaptive"  # nothing to switch to: fixed:1 is what already runs
    assert result["verdict"].startswith("The halting has nothing to adapt: it is limited to one iteration per block, "
                                        "so adaptive and fixed:1 are the same computation (adaptive 90.00 % at "
                                        "10.0 M MACs).")
    assert "does not pay" not in result["verdict"] and "costs no more" not in result["verdict"]
    assert result["verdict"].endswith("Most accurate: fixed:2 (2-2-2-2 iterations) with 93.00 % at 20.0 M MACs.")
    # one block allowed two iterations still leaves a decision: the usual comparison
    partly = halting_tradeoff({**evaluation(0.90, 10e6, [one, *fixed_curve(0.90, 0.93)[1:]]), "caps": CAPS,
                               "halting_caps": [1, 1, 2, 1]})
    assert partly["outcome"] == "does not pay"


def test_the_verdict_states_the_two_standard_error_rule_and_ties_each_error_to_its_comparison():
    # QA, 22 held-out images: "+4.55 pt over random allocation, within its paired standard error of 4.44 pt"
    # (4.55 is not within 4.44: the rule is two of them), then "the difference has a paired standard error of
    # 6.12 pt" without saying it belongs to the comparison with fixed iterations
    images = 22
    fixed = [{**p, "top1": 18 / images, "paired": {"only_adaptive_right": 2, "only_fixed_right": 0}}
             for p in fixed_curve(0, 0)]
    random = {"top1": 19 / images, "paired": {"only_adaptive_right": 1, "only_random_right": 0}}
    result = halting_tradeoff({**evaluation(20 / images, 15e6, fixed), "images": images,
                               "adaptivity": {"random_allocation": random}})
    assert result["random_standard_error"] == pytest.approx(0.0444, abs=1e-4)
    assert result["outcome"] == "level" and result["within_noise"] and result["random_within_noise"]
    verdict = result["verdict"]
    assert "+4.55 pt over random allocation, within two paired standard errors of that comparison, ±8.88 pt" in verdict
    band = f"±{200 * result['standard_error']:.2f} pt"
    assert (f"against fixed iterations at the same MACs the difference is within two paired standard errors, {band}, "
            "so within noise") in verdict
    assert "within its" not in verdict and "has a paired standard error" not in verdict
