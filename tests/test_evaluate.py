"""evaluate(): consistent statistics, adaptivity evidence, sweeps, stop and progress."""
from __future__ import annotations

import json

import pytest
import torch

from iamnn_studio.engine.data.augment import normalize
from iamnn_studio.engine.evaluate import SWEEP_THRESHOLDS, evaluate
from tiny_models import CLASSES, MEAN, STD, tiny_config, varied_halting_model, varied_images


def run(model, data, **kwargs):
    return evaluate(model, data, mean=MEAN, std=STD, classes=CLASSES, **kwargs)


@pytest.fixture(scope="module")
def model():
    return varied_halting_model()


@pytest.fixture(scope="module")
def data():
    return varied_images(96)


@pytest.fixture(scope="module")
def report(model, data):
    return run(model, data, batch_size=32)


def direct_pass(model, data):
    with torch.no_grad():
        return model(normalize(data.images, MEAN, STD))


def test_report_is_strict_json(report):
    json.loads(json.dumps(report, allow_nan=False))
    assert report["stopped"] is False and report["images"] == 96


def test_accuracy_and_confusion_agree(report, model, data):
    confusion = torch.tensor(report["confusion"])
    assert confusion.sum() == 96
    assert confusion.sum(1).tolist() == torch.bincount(data.labels, minlength=3).tolist()
    assert report["top1"] == pytest.approx(confusion.trace().item() / 96)
    for c, name in enumerate(CLASSES):
        assert report["per_class"][name] == pytest.approx(confusion[c, c].item() / confusion[c].sum().item())
    predictions = direct_pass(model, data).logits.argmax(1)
    assert report["top1"] == pytest.approx((predictions == data.labels).double().mean().item())
    assert report["top5"] is None  # three classes: the true one is always among the top five, which says nothing


def test_mac_statistics_are_ordered_and_match_the_model(report, model, data):
    macs = report["macs"]
    assert macs["min"] <= macs["p10"] <= macs["p50"] <= macs["p90"] <= macs["max"]
    assert macs["min"] <= macs["mean"] <= macs["max"]
    assert macs["max_over_min"] == pytest.approx(macs["max"] / macs["min"])
    direct = direct_pass(model, data).macs.double()
    assert macs["mean"] == pytest.approx(direct.mean().item())
    low, high = model.macs_range()
    assert report["macs_range"] == {"min": low, "max": high}
    assert low <= macs["min"] and macs["max"] <= high


def test_iteration_histograms_count_every_image_per_block(report, model, data):
    iterations = report["iterations"]
    assert [len(h) for h in iterations["histogram"]] == list(model.caps)
    assert all(sum(h) == 96 for h in iterations["histogram"])
    direct = direct_pass(model, data).iterations
    for b, histogram in enumerate(iterations["histogram"]):
        assert histogram == torch.bincount(direct[:, b] - 1, minlength=model.caps[b]).tolist()
    assert iterations["mean"] == pytest.approx(direct.double().mean(0).tolist())
    assert iterations["share_at_one"][0] == 1.0  # block 1 has a cap of 1


def test_extremes_are_the_cheapest_and_dearest_images(report, data):
    easiest, hardest = report["easiest"], report["hardest"]
    assert len(easiest) == len(hardest) == 16
    assert max(e["macs"] for e in easiest) <= min(h["macs"] for h in hardest)
    assert easiest[0]["macs"] == report["macs"]["min"] and hardest[0]["macs"] == report["macs"]["max"]
    for entry in easiest + hardest:
        assert entry["label"] == CLASSES[int(data.labels[entry["index"]])]


@pytest.mark.parametrize("count", [9, 20])
def test_few_images_give_extremes_that_share_none(model, count):
    """Under 32 images, the 16 cheapest and the 16 dearest were the same images in other orders (Study had to
    split them); now each list takes at most half of them."""
    few = varied_images(count)
    report = run(model, few, batch_size=32)
    easiest, hardest = report["easiest"], report["hardest"]
    assert len(easiest) == len(hardest) == count // 2
    assert not {e["index"] for e in easiest} & {h["index"] for h in hardest}
    assert max(e["macs"] for e in easiest) <= min(h["macs"] for h in hardest)


def test_adaptivity_evidence_is_reported(report):
    adaptivity = report["adaptivity"]
    assert adaptivity["distinct_iteration_vectors"] > 1
    assert -1.0 <= adaptivity["spearman_macs_vs_loss"] <= 1.0
    assert set(adaptivity["per_class_macs"]) == set(CLASSES)
    collapse = adaptivity["collapse"]
    assert collapse["alarm"] == bool(collapse["reasons"])
    assert collapse["alarm"] == (collapse["p90_over_p10"] < 1.3 or collapse["top_vector_share"] > 0.8)


def test_a_collapsed_halting_names_its_iterations_as_the_app_writes_caps(model, data):
    """The alarm read "100% of images use iterations [1, 1, 1, 1]": a Python list in the CLI and the Study tab."""
    import copy

    collapsed = copy.deepcopy(model)
    collapsed.set_threshold(1e-6)  # every block halts at its first iteration
    reasons = run(collapsed, data, sweep=False)["adaptivity"]["collapse"]["reasons"]
    assert "100% of images use iterations 1·1·1·1 (> 80%)" in reasons, reasons


def test_random_control_deals_out_the_same_iteration_vectors(report, model, data):
    control = report["adaptivity"]["random_allocation"]
    assert 0.0 <= control["top1"] <= 1.0
    # A permutation keeps the multiset of iteration vectors, so the backbone MACs are the same.
    iterations = direct_pass(model, data).iterations
    without_heads = model.macs_for(iterations, torch.zeros_like(iterations)).double().mean().item()
    assert control["mean_macs"] == pytest.approx(without_heads)
    # the images only one of the two gets right: the paired standard error the verdict holds the margin to
    paired = control["paired"]
    assert (paired["only_adaptive_right"] - paired["only_random_right"]) / report["images"] == pytest.approx(
        control["adaptive_minus_random"])


def test_sweep_points_equal_evaluations_at_that_setting(report, model, data):
    curve = report["sweep"]["threshold"]
    assert [p["threshold"] for p in curve] == sorted({*SWEEP_THRESHOLDS, 0.7})
    evaluated = [p for p in curve if p.get("evaluated")]
    assert len(evaluated) == 1 and evaluated[0]["mean_macs"] == pytest.approx(report["macs"]["mean"])
    point = next(p for p in curve if p["threshold"] == 0.3)
    model.set_threshold(0.3)
    try:
        at_03 = direct_pass(model, data)
    finally:
        model.set_threshold(0.7)
    assert point["mean_macs"] == pytest.approx(at_03.macs.double().mean().item())
    assert point["top1"] == pytest.approx((at_03.logits.argmax(1) == data.labels).double().mean().item())
    assert curve[0]["mean_macs"] < curve[-1]["mean_macs"]  # the threshold moves the compute

    fixed = report["sweep"]["fixed"]
    assert [p["iterations"] for p in fixed] == [[1, 1, 1, 1], [1, 2, 2, 2], [1, 2, 3, 2]]
    assert fixed[-1]["mean_macs"] == report["full_depth"]["mean_macs"] == model.macs_for(
        torch.tensor([model.caps]), torch.zeros(1, 4, dtype=torch.long)
    ).item()


def test_each_fixed_point_counts_the_images_only_it_or_only_adaptive_gets_right(report, model, data):
    adaptive_right = direct_pass(model, data).logits.argmax(1) == data.labels
    for point in report["sweep"]["fixed"]:
        with torch.no_grad():
            fixed_right = model(normalize(data.images, MEAN, STD), exits=tuple(point["iterations"])).logits.argmax(1) \
                == data.labels
        assert point["paired"] == {"only_fixed_right": int((fixed_right & ~adaptive_right).sum()),
                                   "only_adaptive_right": int((adaptive_right & ~fixed_right).sum())}
        net = point["paired"]["only_adaptive_right"] - point["paired"]["only_fixed_right"]
        assert net == round(len(data.labels) * (report["top1"] - point["top1"]))


def test_model_settings_are_restored(model, data):
    model.train()
    run(model, data, batch_size=48)
    assert model.training
    assert model.config.threshold == 0.7
    model.eval()


def test_results_do_not_depend_on_batch_size(report, model, data):
    other = run(model, data, batch_size=7, sweep=False)
    assert other["macs"] == report["macs"]
    assert other["iterations"] == report["iterations"]
    assert other["confusion"] == report["confusion"]
    assert other["sweep"] is None


def test_should_stop_returns_partial_results(model, data):
    calls = []

    def stop_on_third_batch() -> bool:
        calls.append(1)
        return len(calls) >= 3

    partial = run(model, data, batch_size=32, should_stop=stop_on_third_batch)
    assert partial["stopped"] is True
    assert partial["images"] == 64
    assert torch.tensor(partial["confusion"]).sum() == 64
    assert partial["sweep"] is None
    assert model.config.threshold == 0.7


def test_progress_rises_to_one(model, data):
    seen: list[float] = []
    run(model, data, batch_size=32, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 0.2


def test_resnet_baseline_skips_what_does_not_apply():
    model = varied_halting_model(tiny_config(architecture="resnet"))
    result = run(model, varied_images(40), batch_size=20)
    assert result["adaptivity"] is None and result["sweep"] is None and result["iterations"] is None
    assert result["macs"]["min"] == result["macs"]["max"] == model.macs_range()[0]
    assert torch.tensor(result["confusion"]).sum() == 40


def test_stop_during_the_sweep_keeps_the_finished_points(model, data):
    polls = []
    full = run(model, data, batch_size=32, should_stop=lambda: polls.append(1) and False)
    stop_at = len(polls) - 2  # inside the last sweep threshold
    polls.clear()
    partial = run(model, data, batch_size=32, should_stop=lambda: polls.append(1) or len(polls) >= stop_at)
    assert partial["stopped"] is True
    assert partial["macs"] == full["macs"]  # the main results are complete
    done = partial["sweep"]["threshold"]
    assert 0 < len(done) < len(full["sweep"]["threshold"])
    assert done == [p for p in full["sweep"]["threshold"] if p in done]
    assert model.config.threshold == 0.7


def test_the_report_says_whether_a_calibrated_halting_head_was_fitted(model, data):
    previous = model.config.threshold
    try:
        model.config.threshold = None  # as a run stopped before calibration leaves it
        assert run(model, data, sweep=False)["halting_calibrated"] is False
        model.config.threshold = 0.8
        assert run(model, data, sweep=False)["halting_calibrated"] is True
    finally:
        model.config.threshold = previous


def test_a_head_left_unfitted_on_purpose_is_evaluated_at_full_depth(model, data):
    previous = model.config.threshold
    try:
        model.config.threshold = None  # as a run with calibrate_halting = false leaves it
        result = run(model, data, calibrate_halting=False)
        assert model.config.mode == "adaptive"  # restored
    finally:
        model.config.threshold = previous
    assert result["mode"] == "max" and "runs at full depth" in result["full_depth_note"]
    assert result["macs"]["mean"] == result["full_depth"]["mean_macs"]  # no halting head's cost
    assert result["adaptivity"] is None and result["halting_calibrated"] is None
    assert result["sweep"]["threshold"] == [] and result["sweep"]["fixed"]
    # a fitted head is evaluated as it halts, whatever the run's setting
    assert run(model, data, sweep=False, calibrate_halting=False)["mode"] == "adaptive"


def test_top5_is_reported_with_more_than_five_classes():
    from iamnn_studio.engine.evaluate import _top_k

    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0, -1], [0.0, 1, 2, 3, 4, 5, 6]])
    assert _top_k(logits, torch.tensor([4, 0]), 5) == 0.5  # the first's true class is 5th, the second's last


def test_a_dataset_without_test_images_is_evaluated_on_its_validation_images_and_says_so(data):
    """QA: an image folder without test/ said "TEST ACCURACY 100.0 % · 36 test images" of the images that chose
    the best epoch and calibrated the halting."""
    from iamnn_studio.engine.data.bundle import DatasetBundle
    from iamnn_studio.engine.evaluate import evaluation_split

    no_test = DatasetBundle.from_splits("toy", CLASSES, data, None, val_fraction=0.25, seed=0)
    assert no_test.to("cpu").test_is_val  # moved to a device, still known
    split, images, described = evaluation_split(no_test.to("cpu"))
    assert split == "val" and len(images) == len(no_test.val) == 24
    assert described["split"] == "val" and "chose the model" in described["split_note"]
    # another dataset's validation images had nothing to do with training: a neutral note
    other = evaluation_split(no_test, chose_the_model=False)[2]
    assert other["split"] == "val" and "chose" not in other["split_note"] and "validation split" in other["split_note"]
    with_test = DatasetBundle.from_splits("toy", CLASSES, data, data, val_fraction=0.25, seed=0)
    assert evaluation_split(with_test)[0] == "test" and evaluation_split(with_test)[2] == {"split": "test"}


def test_every_report_passes_the_eval_json_check(report, model, data, tmp_path):
    from iamnn_studio.engine.evaluation_file import evaluation_problems, read_evaluation

    assert evaluation_problems(report) == []
    stopped = run(model, data, batch_size=32, should_stop=lambda: True)
    assert evaluation_problems({**stopped, "top1": 0.5}) == []  # partial: keys missing or null are allowed
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(report))
    assert read_evaluation(path) == report


def test_class_names_that_are_numbers_are_accepted_in_eval_json(report):
    """Review: the trainer wrote eval.json for a plugin dataset with classes=[0, 1, 2], and it was refused."""
    from iamnn_studio.engine.evaluation_file import evaluation_problems

    numbered = json.loads(json.dumps(report))
    numbered["classes"] = list(range(len(numbered["classes"])))
    for entry in numbered.get("hardest") or []:
        entry["label"], entry["prediction"] = 0, 1
    assert evaluation_problems(numbered) == []
    assert evaluation_problems({**numbered, "classes": [True, None, 2]}) != []


@pytest.mark.parametrize("damage, said", [
    ({"macs": [1, 2, 3]}, "macs is a list, not an object"),
    ({"macs": {"min": 1, "max": 5}}, "macs has no mean"),
    ({"iterations": [1, 2]}, "iterations is a list, not an object"),
    ({"easiest": [{"macs": 5}] * 3}, "easiest[0] has no index"),
    ({"sweep": {"threshold": [{"top1": 0.2}], "fixed": [{"top1": 0.1}]}}, "sweep.fixed[0] has no iterations"),
    ({"sweep": {"fixed": [{"iterations": [1], "mean_macs": 5}]}}, "sweep.fixed[0] has no top1"),
    ({"per_class": {"a": "x"}}, 'per_class["a"] is text, not a number'),
    ({"confusion": [[1, 2], [3]]}, "confusion is not square"),
    ({"confusion": [[1, 2], [3, 4]]}, "confusion has 2 rows for 3 classes"),
    ({"images": "many"}, "images is text, not a whole number"),
    ({"top1": float("nan")}, "top1 is NaN, not a number"),
    ({"top1": "0.29"}, "top1 is text, not a number"),
    ({"top1": None}, "it holds no top-1 accuracy"),
    ({"top1": 1.5}, "top1 is 1.5, not between 0 and 1"),
])
def test_a_malformed_eval_json_is_refused_saying_what_is_wrong(report, tmp_path, damage, said):
    from iamnn_studio.engine.evaluation_file import read_evaluation

    path = tmp_path / "eval.json"
    path.write_text(json.dumps({**report, **damage}))
    with pytest.raises(ValueError) as refused:
        read_evaluation(path)
    assert said in str(refused.value)


def test_eval_json_that_is_no_evaluation_is_refused(tmp_path):
    from iamnn_studio.engine.evaluation_file import read_evaluation

    path = tmp_path / "eval.json"
    for content, said in (('{"top1": 0.5', "it is not valid JSON: Expecting .* at line 1"),
                          ("[1]", "a list, not an evaluation"), ("  \n", "it is empty")):
        path.write_text(content)
        with pytest.raises(ValueError, match=said):
            read_evaluation(path)
    path.write_text(json.dumps({"top1": 0.5, "easiest": [{"index": i} for i in range(-5, 0)]}))
    with pytest.raises(ValueError, match="; and 2 more problems"):
        read_evaluation(path)
    path.write_text(json.dumps({"top1": 0.5}))  # the oldest evaluations: accuracy only
    assert read_evaluation(path) == {"top1": 0.5}
    with pytest.raises(ValueError, match="too big"):
        read_evaluation(path, max_bytes=4)
