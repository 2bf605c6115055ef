"""Evaluate a trained model on a split and write what ``eval.json`` holds.

Beyond accuracy this measures whether the compute really adapts to each image, as
``docs/research/adaptivity.md`` section 6 asks: per-image MAC statistics, per-block iteration
histograms (paper Fig. 2), the cheapest and dearest images (paper Fig. 3), whether MACs track
difficulty (Spearman correlation with a full-depth pass's loss, wrong vs right images, per class),
a collapse alarm, a random-allocation control, and the accuracy-vs-MACs curves of the halting
threshold and of fixed iteration counts.

Cost: one adaptive pass plus one full-depth pass (the difficulty reference, reused as the last
point of the fixed curve), one pass per extra fixed setting, one for the random control and one
per sweep threshold. Every pass uses the compacted forward, so it costs what its MACs say.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import split_forward
from .config import caps_text
from .data.bundle import ImageTensors
from .data.augment import normalize

SWEEP_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
EXTREMES = 16  # easiest and hardest images reported
RANDOM_CONTROL_SEED = 0
COLLAPSE_SPREAD = 1.3  # p90/p10 of per-image MACs below this: no real adaptivity
COLLAPSE_SHARE = 0.8  # one iteration vector used by more than this share of images: collapsed
TOP_K = 5  # top-5 accuracy, reported only with more classes than that (with 5 or fewer it is always 100 %)
#: eval.json's ``split_note`` for an evaluation on the validation images (a dataset without test images).
HELD_OUT_NOTE = ("no test images: these are the validation images, which also chose the model (its best epoch "
                 "and, for a calibrated halting, its threshold), so the accuracy is optimistic")
#: eval.json's ``full_depth_note`` for a model whose run chose not to fit its halting head.
NOT_CALIBRATED_NOTE = ("trained with --no-calibrate (calibrate_halting = false): its halting head was never fitted, "
                       "so the model runs at full depth")


class _Stopped(Exception):
    """``should_stop()`` said yes between two batches."""


@dataclass
class _Pass:
    """Per-image results of one pass over the split (CPU tensors, in split order)."""

    logits: Tensor
    iterations: Tensor
    macs: Tensor

    @property
    def predictions(self) -> Tensor:
        return self.logits.argmax(1)


class _Runner:
    """Runs passes over the split in batches, reporting progress and honouring ``should_stop``."""

    def __init__(self, model: nn.Module, data: ImageTensors, mean, std, device, batch_size: int,
                 total_images: int, should_stop, progress) -> None:
        self.model, self.data, self.mean, self.std = model, data, mean, std
        self.device, self.batch_size = torch.device(device), batch_size
        self.total, self.done = max(total_images, 1), 0
        self.should_stop, self.progress = should_stop, progress

    def batches(self, indices: Tensor | None = None, passes: int = 1):
        """Yield (index, normalised images, labels); ``passes`` = forwards per batch, for progress."""
        count = len(self.data) if indices is None else len(indices)
        for start in range(0, count, self.batch_size):
            if self.should_stop is not None and self.should_stop():
                raise _Stopped
            if indices is None:
                index = torch.arange(start, min(start + self.batch_size, count))
            else:
                index = indices[start : start + self.batch_size]
            images = self.data.images[index.to(self.data.images.device)].to(self.device)
            labels = self.data.labels[index.to(self.data.labels.device)]
            yield index, normalize(images, self.mean, self.std), labels.cpu()
            self.done += len(index) * passes
            if self.progress is not None:
                self.progress(min(self.done / self.total, 1.0))

    def run(self, exits: tuple[int, ...] | None = None, indices: Tensor | None = None) -> _Pass:
        logits, iterations, macs = [], [], []
        for _, x, _ in self.batches(indices):
            out = split_forward.forward(self.model, x, exits=exits)
            logits.append(out.logits.float().cpu())
            iterations.append(out.iterations.cpu())
            macs.append(out.macs.cpu())
        return _Pass(torch.cat(logits), torch.cat(iterations), torch.cat(macs))


#: The note for the validation images of data the model was not trained on: they chose nothing.
OTHER_DATA_NOTE = "no test images: the validation split of this folder"


def evaluation_split(bundle, chose_the_model: bool = True) -> tuple[str, ImageTensors, dict[str, str]]:
    """The images to evaluate a ``DatasetBundle`` on: (split name, images, what eval.json records of them).

    The test split, unless the dataset has none of its own (an image folder without test/, whose "test" split
    is its validation split): then the validation images, named "val" with ``HELD_OUT_NOTE``, since they chose
    the model and are no test of it. ``chose_the_model=False`` (the bundle is not the model's own training
    data, e.g. ``evaluate --data-root`` another folder): still "val", with the neutral ``OTHER_DATA_NOTE``.
    """
    if len(bundle.test) and not getattr(bundle, "test_is_val", False):
        return "test", bundle.test, {"split": "test"}
    return "val", bundle.val, {"split": "val", "split_note": HELD_OUT_NOTE if chose_the_model else OTHER_DATA_NOTE}


def evaluate(
    model: nn.Module,
    data: ImageTensors,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    classes: Sequence[str],
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    sweep: bool = True,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[float], None] | None = None,
    calibrate_halting: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` (moved to ``device``, in eval mode for the duration) on ``data``.

    Returns a JSON-serialisable dict (the content of ``eval.json``). ``should_stop`` is polled
    between batches: when it answers True the result so far comes back with ``"stopped": true``.
    ``progress`` receives the finished fraction in [0, 1]. The model's threshold and training
    flag are restored afterwards. ``calibrate_halting=False`` (the run's setting, ``--no-calibrate``): an unfitted
    halting head was left so on purpose, and the model is evaluated as it then runs, at full depth.
    """
    if len(data) == 0:
        raise ValueError("evaluate: the split has no images")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")
    config = model.config
    was_training, threshold_before, mode_before = model.training, config.threshold, config.mode
    # an unfitted head would only add its cost and a verdict on a halting that never halts
    left_unfitted = not calibrate_halting and config.halting_uncalibrated and config.mode == "adaptive"
    mode = "max" if left_unfitted else config.mode
    adaptive = config.architecture == "iamnn" and mode == "adaptive"
    iterative = config.architecture == "iamnn"
    caps = tuple(int(c) for c in model.caps)
    main_is_full_depth = not iterative or mode == "max"
    fixed_settings = _fixed_settings(caps) if (sweep and iterative) else []
    thresholds = list(SWEEP_THRESHOLDS) if (sweep and adaptive) else []

    n = len(data)
    plan = n * (1 if main_is_full_depth else 2)
    plan += n * len([s for s in fixed_settings if s != caps])
    plan += n * len(thresholds) + (n if adaptive else 0)
    runner = _Runner(model.to(device), data, mean, std, device, batch_size, plan, should_stop, progress)

    result: dict[str, Any] = {
        "images": n,
        "classes": list(classes),
        "architecture": config.architecture,
        "mode": mode,
        "full_depth_note": NOT_CALIBRATED_NOTE if left_unfitted else None,
        "halting": config.halting if adaptive else None,
        "threshold": config.halting_threshold if adaptive else None,
        # False: a calibrated-halting model whose head was never fitted (its run stopped before calibration)
        "halting_calibrated": (config.threshold is not None) if adaptive and config.halting == "calibrated" else None,
        "caps": list(caps),
        "halting_caps": list(model.adaptive_caps) if adaptive else None,
        "stopped": False,
        "sweep": None,
    }
    model.eval()
    try:
        model.set_mode(mode)
        with torch.no_grad():
            main, reference, labels, stopped = _main_pass(runner, caps, main_is_full_depth)
            if main is None:
                result.update(images=0, stopped=True)
                return result
            result["images"] = len(labels)
            result.update(_accuracy(main, labels, classes))
            result["macs"] = _mac_stats(main.macs)
            low, high = model.macs_range()
            result["macs_range"] = {"min": int(low), "max": int(high)}
            result["full_depth"] = {
                "top1": _top1(reference.predictions, labels),
                "mean_macs": float(reference.macs.double().mean()),
            }
            loss = F.cross_entropy(reference.logits, labels, reduction="none")
            result["iterations"] = _iteration_stats(main.iterations, caps) if iterative else None
            result["easiest"], result["hardest"] = _extremes(main, labels, loss, classes)
            result["adaptivity"] = _adaptivity(main, labels, loss, classes) if adaptive else None
            if stopped:
                result["stopped"] = True
                return result

            if adaptive:
                result["adaptivity"]["random_allocation"] = _random_allocation(runner, main, labels)
            if sweep and iterative:
                result["sweep"] = {"fixed": [], "threshold": []}  # filled point by point: a stop keeps what is done
                _fixed_curve(runner, result["sweep"]["fixed"], reference, labels, fixed_settings,
                             main if adaptive else None)
                if adaptive:
                    _threshold_curve(runner, result["sweep"]["threshold"], main, labels, thresholds)
    except _Stopped:
        result["stopped"] = True
    finally:
        model.set_mode(mode_before)
        model.set_threshold(threshold_before)
        model.train(was_training)
    if progress is not None and not result["stopped"]:
        progress(1.0)
    return result


# --------------------------------------------------------------------------- passes
def _main_pass(runner: _Runner, caps: tuple[int, ...], main_is_full_depth: bool):
    """The model's own pass and the full-depth reference, batch by batch (one data sweep).

    Returns (main, reference, labels, stopped); on a stop the passes cover the images done so far.
    """
    parts: dict[str, list[Tensor]] = {k: [] for k in ("logits", "iterations", "macs", "ref_logits", "ref_macs", "labels")}
    stopped = False
    try:
        for _, x, labels in runner.batches(passes=1 if main_is_full_depth else 2):
            out = split_forward.forward(runner.model, x)
            ref = out if main_is_full_depth else split_forward.forward(runner.model, x, exits=caps)
            parts["logits"].append(out.logits.float().cpu())
            parts["iterations"].append(out.iterations.cpu())
            parts["macs"].append(out.macs.cpu())
            parts["ref_logits"].append(ref.logits.float().cpu())
            parts["ref_macs"].append(ref.macs.cpu())
            parts["labels"].append(labels)
    except _Stopped:
        stopped = True
    if not parts["labels"]:
        return None, None, None, True
    cat = {k: torch.cat(v) for k, v in parts.items()}
    main = _Pass(cat["logits"], cat["iterations"], cat["macs"])
    reference = _Pass(cat["ref_logits"], cat["iterations"].new_tensor([caps]).expand(len(cat["labels"]), -1), cat["ref_macs"])
    return main, reference, cat["labels"], stopped


def _random_allocation(runner: _Runner, main: _Pass, labels: Tensor) -> dict[str, Any]:
    """Accuracy when the same iteration vectors are dealt to the images at random.

    Adaptive halting is worth something only if it beats this control at the same MAC histogram;
    ``paired`` counts the images only one of the two gets right, for ``tradeoff``'s standard error.
    """
    generator = torch.Generator().manual_seed(RANDOM_CONTROL_SEED)
    dealt = main.iterations[torch.randperm(len(labels), generator=generator)]
    vectors, which = torch.unique(dealt, dim=0, return_inverse=True)
    if len(vectors) == 1:
        return {"top1": None, "reason": "every image used the same iterations: nothing to permute"}
    predictions = torch.empty_like(labels)
    macs = torch.empty_like(main.macs)
    for v, vector in enumerate(vectors):
        members = torch.nonzero(which == v).flatten()
        group = runner.run(exits=tuple(int(n) for n in vector), indices=members)
        predictions[members] = group.predictions
        macs[members] = group.macs
    random_right, adaptive_right = predictions == labels, main.predictions == labels
    return {
        "top1": _top1(predictions, labels),
        "adaptive_minus_random": _top1(main.predictions, labels) - _top1(predictions, labels),
        "paired": {"only_random_right": int((random_right & ~adaptive_right).sum()),
                   "only_adaptive_right": int((adaptive_right & ~random_right).sum())},
        "mean_macs": float(macs.double().mean()),
        "settings": len(vectors),
        "seed": RANDOM_CONTROL_SEED,
    }


def _fixed_curve(runner: _Runner, curve: list, reference: _Pass, labels: Tensor,
                 settings: list[tuple[int, ...]], adaptive: _Pass | None = None) -> None:
    """Accuracy and MACs at n iterations in every block; full depth reuses the reference pass.

    With the ``adaptive`` pass, each point also counts the images only one of the two gets right
    (``paired``): the spread of a paired difference, which ``tradeoff`` turns into a standard error.
    """
    caps = tuple(runner.model.caps)
    for setting in settings:
        run = reference if setting == caps else runner.run(exits=setting)
        point = _curve_point(run, labels, iterations=list(setting))
        if adaptive is not None:
            fixed_right, adaptive_right = run.predictions == labels, adaptive.predictions == labels
            point["paired"] = {"only_fixed_right": int((fixed_right & ~adaptive_right).sum()),
                               "only_adaptive_right": int((adaptive_right & ~fixed_right).sum())}
        curve.append(point)


def _threshold_curve(runner: _Runner, curve: list, main: _Pass, labels: Tensor, thresholds: list[float]) -> None:
    """Accuracy and MACs per halting threshold; the model's own threshold reuses the main pass."""
    model = runner.model
    own = model.config.threshold
    curve.append({**_curve_point(main, labels, threshold=model.config.halting_threshold), "evaluated": True})
    try:
        for threshold in thresholds:
            if any(math.isclose(threshold, p["threshold"]) for p in curve):
                continue
            model.set_threshold(threshold)
            curve.append(_curve_point(runner.run(), labels, threshold=threshold))
    finally:
        model.set_threshold(own)
        curve.sort(key=lambda p: p["threshold"])


def _fixed_settings(caps: tuple[int, ...]) -> list[tuple[int, ...]]:
    """(1,1,1,1), (2,2,2,2), ... up to the caps: n iterations per block, capped per block."""
    return [tuple(min(n, cap) for cap in caps) for n in range(1, max(caps) + 1)]


# --------------------------------------------------------------------------- statistics
def _top1(predictions: Tensor, labels: Tensor) -> float:
    return float((predictions == labels).double().mean())


def _curve_point(run: _Pass, labels: Tensor, **setting: Any) -> dict[str, Any]:
    return {**setting, "mean_macs": float(run.macs.double().mean()), "top1": _top1(run.predictions, labels)}


def _accuracy(run: _Pass, labels: Tensor, classes: Sequence[str]) -> dict[str, Any]:
    k = len(classes)
    confusion = torch.bincount(labels * k + run.predictions, minlength=k * k).view(k, k)
    per_class = {}
    for c, name in enumerate(classes):
        count = int(confusion[c].sum())
        per_class[name] = float(confusion[c, c]) / count if count else None
    return {
        "top1": _top1(run.predictions, labels),
        "top5": _top_k(run.logits, labels, TOP_K) if k > TOP_K else None,  # with k <= 5 it is always 100 %
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def _top_k(logits: Tensor, labels: Tensor, k: int) -> float:
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(1).double().mean())


def _mac_stats(macs: Tensor) -> dict[str, float]:
    values = macs.double().numpy()
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    low, high = float(values.min()), float(values.max())
    return {
        "mean": float(values.mean()),
        "min": low,
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
        "max": high,
        "max_over_min": high / low if low > 0 else None,
        "p90_over_p10": float(p90 / p10) if p10 > 0 else None,
    }


def _iteration_stats(iterations: Tensor, caps: tuple[int, ...]) -> dict[str, Any]:
    """Per-block histograms over 1..cap (paper Fig. 2), means and the shares at 1 and at the cap."""
    count = len(iterations)
    histogram = [torch.bincount(iterations[:, b] - 1, minlength=cap)[:cap].tolist() for b, cap in enumerate(caps)]
    return {
        "caps": list(caps),
        "histogram": histogram,
        "mean": [float(x) for x in iterations.double().mean(0)],
        "share_at_one": [h[0] / count for h in histogram],
        "share_at_cap": [h[-1] / count for h in histogram],
    }


def _extremes(run: _Pass, labels: Tensor, loss: Tensor, classes: Sequence[str]) -> tuple[list, list]:
    """The ``EXTREMES`` cheapest and dearest images (paper Fig. 3); ties go by full-depth loss. Of fewer than
    2 x ``EXTREMES`` images each list takes half, so that no image is both among the easiest and the hardest."""
    macs, difficulty = run.macs.numpy(), loss.numpy()
    shown = min(EXTREMES, len(macs) // 2)
    cheapest = np.lexsort((difficulty, macs))[:shown]
    taken = set(cheapest.tolist())
    dearest = [i for i in np.lexsort((-difficulty, -macs)).tolist() if i not in taken][:shown]

    def describe(i: int) -> dict[str, Any]:
        label, predicted = int(labels[i]), int(run.predictions[i])
        return {
            "index": int(i),
            "macs": int(macs[i]),
            "label": classes[label],
            "prediction": classes[predicted],
            "correct": label == predicted,
            "iterations": run.iterations[i].tolist(),
        }

    return [describe(i) for i in cheapest], [describe(i) for i in dearest]


def _adaptivity(run: _Pass, labels: Tensor, loss: Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Does compute track difficulty, and is there spread at all? (adaptivity.md section 6)"""
    macs = run.macs.double()
    right = run.predictions == labels
    per_class = {}
    for c, name in enumerate(classes):
        mask = labels == c
        per_class[name] = float(macs[mask].mean()) if mask.any() else None
    vectors, counts = torch.unique(run.iterations, dim=0, return_counts=True)
    top = int(counts.argmax())
    top_share = float(counts[top]) / len(labels)
    stats = _mac_stats(run.macs)
    spread = stats["p90_over_p10"]
    reasons = []
    if spread is not None and spread < COLLAPSE_SPREAD:
        reasons.append(f"p90/p10 of MACs is {spread:.2f} (< {COLLAPSE_SPREAD})")
    if top_share > COLLAPSE_SHARE:
        reasons.append(f"{top_share:.0%} of images use iterations {caps_text(vectors[top].tolist())} "
                       f"(> {COLLAPSE_SHARE:.0%})")
    return {
        "spearman_macs_vs_loss": _spearman(macs.numpy(), loss.double().numpy()),
        "macs_wrong": float(macs[~right].mean()) if (~right).any() else None,
        "macs_right": float(macs[right].mean()) if right.any() else None,
        "per_class_macs": per_class,
        "distinct_iteration_vectors": len(vectors),
        "collapse": {
            "alarm": bool(reasons),
            "reasons": reasons,
            "p90_over_p10": spread,
            "top_vector": vectors[top].tolist(),
            "top_vector_share": top_share,
        },
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation with average ranks for ties; None when either side is constant."""
    ra, rb = _average_ranks(a), _average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    return (last - (counts - 1) / 2.0)[inverse]
