"""The calibrated-halting recipe: an anytime backbone, then a halting head fitted on stop labels.

Why: trained with Graves' N + R ponder cost, the halting collapses to the same ~2 iterations
for every image (``docs/research/adaptivity.md`` section 1). What gives per-image compute that
tracks difficulty (section 3, recipe 1):

1. Train the shared blocks so that *any* iteration count works: every batch runs at a sampled
   per-block count (``sample_exits``: full depth, one iteration everywhere, or random per block;
   the "sandwich" of slimmable networks). Per-iteration and per-exit batchnorms make every
   setting consistent.
2. Freeze the backbone. On held-out images, find the reference: the most accurate of the fixed
   settings (n iterations per block, capped). Past it, depth costs compute and accuracy (measured:
   at 30 epochs three iterations per block beat full depth), so it becomes the model's
   ``halting_caps``. Label each block's stop point greedily, block by block: the fewest iterations
   whose exit, continued at the reference depth, keeps the reference's answer.
3. Train each block's halting head as a hazard, h_n = P(stop at n | not stopped before), with
   binary cross-entropy on the samples still at risk at n.
4. On another held-out half, sweep the threshold on the cumulative score 1 - prod(1 - h) and keep
   the cheapest one that agrees with the reference's answer on ``target_agreement`` of the images,
   and on at least half of those whose answer the cheapest setting changes (``required_agreement``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import IamNN, PooledFeatures

#: Share of training batches run at full depth and at one iteration per block; the rest
#: draw every block's count uniformly from 1..cap.
FULL_DEPTH_SHARE = 0.25
MINIMUM_SHARE = 0.15
#: Thresholds tried on the cumulative score. Most images need one iteration per block, so the
#: hazard at the first iteration is high for nearly all of them: the useful range is near 1.
THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


#: Fewer held-out images than this cannot choose a reference depth, labels and a threshold.
MIN_CALIBRATION_IMAGES = 20
#: Without a validation split, this share of the training images calibrates the halting.
FALLBACK_CALIBRATION_SHARE = 0.1


def calibration_images(train: int, val: int) -> int:
    """How many held-out images calibrate the halting: the validation split, else the training share
    ``FALLBACK_CALIBRATION_SHARE`` (as ``data.split_off`` rounds it)."""
    if val or train < 2:
        return val
    return max(1, min(int(round(train * FALLBACK_CALIBRATION_SHARE)), train - 1))


def calibration_images_problem(train: int, val: int, *, val_carved: bool = True,
                               class_sizes: Sequence[int] | None = None, val_split: str = "random") -> str | None:
    """Why ``train`` training and ``val`` validation images cannot calibrate the halting, with what
    would fix it, or None when they can. ``val_carved=False``: the validation images are the dataset's own
    (a val/ folder), which no validation split changes. ``class_sizes`` (the images of each class, training
    and validation together) and ``val_split`` let the advice count as a split per class does."""
    held = calibration_images(train, val)
    if held >= MIN_CALIBRATION_IMAGES:
        return None
    total = train + val
    percent = _smallest_split_percent(total, class_sizes, val_split)
    if not val_carved and val:
        fix = "more images in its validation folder (val/)"
    else:
        fix = f"a validation split of at least {percent} %" if percent < 90 else "more images"
    return (f"calibrating the halting needs at least {MIN_CALIBRATION_IMAGES} held-out images and this dataset "
            f"leaves {held} of its {total}: use {fix}, or turn the halting calibration off")


def _smallest_split_percent(total: int, class_sizes: Sequence[int] | None, val_split: str) -> int:
    """The smallest validation split, in whole percent, that holds out ``MIN_CALIBRATION_IMAGES`` (100: none
    does): rounded per class, a split holds out fewer (or more) than its share of the total."""
    if class_sizes is None:
        return math.ceil(100 * MIN_CALIBRATION_IMAGES / total) if total else 100
    from .data import held_out_total

    return next((percent for percent in range(1, 100)
                 if held_out_total(class_sizes, percent / 100, val_split) >= MIN_CALIBRATION_IMAGES), 100)


def sample_exits(caps: tuple[int, ...], generator: torch.Generator) -> tuple[int, ...]:
    """Iteration counts per block for one anytime-training batch."""
    u = float(torch.rand((), generator=generator))
    if u < FULL_DEPTH_SHARE:
        return tuple(caps)
    if u < FULL_DEPTH_SHARE + MINIMUM_SHARE:
        return (1,) * len(caps)
    return tuple(int(torch.randint(1, cap + 1, (), generator=generator)) for cap in caps)


@dataclass
class BlockTrajectory:
    exits: list[Tensor]  # output of the block if it stopped after n+1 iterations
    pooled: list[Tensor]  # the halting head's pooled input at iterations 0..cap-2


def block_trajectory(block, x0: Tensor, limit: int | None = None) -> BlockTrajectory:
    """Run a block to ``limit`` iterations (default its cap), keeping every possible exit and the head inputs."""
    limit = block.cap if limit is None else limit
    state = None  # s_0 = 0
    features = PooledFeatures(x0, block.channels)
    prepared = block.prepare(x0)
    exits, pooled = [], []
    for n in range(limit):
        state, step_features = block._advance(prepared, state, n, pooled=features, in_place=True)
        exits.append(block.exit_norm[n](state))
        if n < limit - 1:
            pooled.append(step_features.float())
    return BlockTrajectory(exits, pooled)


def finish_at(model: IamNN, h: Tensor, first_block: int, depth: tuple[int, ...]) -> Tensor:
    """Logits from the output of block ``first_block - 1``, running the later blocks ``depth`` iterations."""
    for b in range(first_block, len(model.blocks)):
        h = model.pool(h)
        h = model.blocks[b](h, rule="fixed", threshold=1.0, exit_at=depth[b]).output
    return model.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


@torch.no_grad()
def fixed_setting_accuracy(model: IamNN, batches: Callable[[], Iterable[tuple[Tensor, Tensor]]]) -> list[dict]:
    """Held-out top-1 and mean MACs of every fixed setting (n iterations per block, capped); ``batches()``
    yields the (images, labels) afresh for each setting, so they need not all be in memory."""
    caps = model.caps
    points = []
    for n in range(1, max(caps) + 1):
        setting = tuple(min(n, cap) for cap in caps)
        correct = total = macs = 0
        for x, y in batches():
            out = model(x, exits=setting)
            correct += int((out.logits.argmax(1) == y).sum())
            total += len(y)
            macs += int(out.macs.sum())
        points.append({"iterations": list(setting), "accuracy": correct / max(total, 1), "mean_macs": macs / max(total, 1)})
    return points


def reference_setting(points: list[dict], images: int) -> tuple[int, ...]:
    """The most accurate fixed setting; one image's worth of accuracy is a tie, won by the cheaper."""
    best = max(p["accuracy"] for p in points)
    tied = [p for p in points if p["accuracy"] >= best - 1.0 / max(images, 1) - 1e-9]
    return tuple(min(tied, key=lambda p: p["mean_macs"])["iterations"])


@torch.no_grad()
def stop_labels(model: IamNN, x: Tensor, depth: tuple[int, ...] | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """Greedy per-block stop labels (1-based, at most ``depth``, default the caps) and the head inputs
    [B, depth-1, D] per block: the fewest iterations that, continued at ``depth``, keep its answer."""
    depth = tuple(model.caps if depth is None else depth)
    reference = model(x, exits=depth).logits.argmax(1)
    h = model.stem(x)
    labels, features = [], []
    for b, block in enumerate(model.blocks):
        if b > 0:
            h = model.pool(h)
        traj = block_trajectory(block, h, depth[b])
        label = torch.full((x.shape[0],), depth[b], dtype=torch.long, device=x.device)
        undecided = torch.ones_like(label, dtype=torch.bool)
        for n in range(depth[b] - 1):  # stopping at the reference depth always "keeps" the answer
            if not undecided.any():
                break
            idx = undecided.nonzero().squeeze(1)
            keeps = finish_at(model, traj.exits[n][idx], b + 1, depth).argmax(1) == reference[idx]
            label[idx[keeps]] = n + 1
            undecided[idx[keeps]] = False
        labels.append(label)
        if traj.pooled:
            features.append(torch.stack(traj.pooled, dim=1))
        else:
            features.append(x.new_zeros(x.shape[0], 0, block.halting_head.features))
        h = torch.stack(traj.exits, dim=0)[label - 1, torch.arange(x.shape[0], device=x.device)]
    return labels, features


def train_heads(model: IamNN, labels: list[Tensor], features: list[Tensor], *, epochs: int = 40,
                batch_size: int = 256, seed: int = 0, should_stop: Callable[[], bool] | None = None) -> list[float]:
    """Fit each block's halting head as a hazard with BCE on the samples still at risk."""
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for block, label, feats in zip(model.blocks, labels, features):
        head = block.halting_head
        if feats.shape[1] == 0:
            losses.append(0.0)
            continue
        head.train()
        optimizer = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-4)
        n_samples = feats.shape[0]
        last = 0.0
        for _ in range(epochs):
            if should_stop is not None and should_stop():
                break
            order = torch.randperm(n_samples, generator=generator).to(feats.device)
            for start in range(0, n_samples, batch_size):
                idx = order[start:start + batch_size]
                loss = head_loss(head, feats[idx], label[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                last = loss.item()
        head.eval()
        losses.append(last)
    return losses


def head_loss(head, feats: Tensor, label: Tensor) -> Tensor:
    """Mean BCE over (sample, iteration) pairs at risk: iteration n is at risk when label >= n+1."""
    total, count = feats.new_zeros(()), 0
    for n in range(feats.shape[1]):
        at_risk = label >= n + 1
        if at_risk.sum() < 2:  # batchnorm needs two samples; nothing to learn from fewer
            continue
        score = head.score(feats[at_risk, n], n).clamp(1e-6, 1 - 1e-6)
        target = (label[at_risk] == n + 1).float()
        total = total + F.binary_cross_entropy(score, target, reduction="sum")
        count += int(at_risk.sum())
    return total / max(count, 1)


@torch.no_grad()
def threshold_curve(model: IamNN, x_batches: list[Tensor], y_batches: list[Tensor],
                    thresholds=THRESHOLDS) -> list[dict]:
    """Accuracy, agreement with the reference depth (the model's ``adaptive_caps``) and mean MACs per threshold."""
    previous = model.config.threshold
    reference = [model(x, exits=model.adaptive_caps).logits.argmax(1) for x in x_batches]
    curve = []
    for t in thresholds:
        model.set_threshold(t)
        correct = agree = total = 0
        macs = 0
        for x, y, ref in zip(x_batches, y_batches, reference):
            out = model(x)
            pred = out.logits.argmax(1)
            correct += int((pred == y).sum())
            agree += int((pred == ref).sum())
            total += len(y)
            macs += int(out.macs.sum())
        curve.append({"threshold": t, "accuracy": correct / total, "agreement": agree / total,
                      "mean_macs": macs / total})
    model.set_threshold(previous)
    return curve


def required_agreement(curve: list[dict], target_agreement: float) -> float:
    """The agreement a threshold must reach: ``target_agreement``, and at least half-way from the
    cheapest point of the curve to full agreement.

    Why the second part: when the backbone gains little from depth, the cheapest setting (about one
    iteration per block) already meets a fixed target, and the halting would learn nothing but "stop
    now" (measured at width 16: 97 % agreement at one iteration, 98 % of images stopped there). Asking
    it to keep at least half of the answers that the cheapest setting changes makes it spend compute
    on the images where depth changes the answer; where the cheapest setting is far from the target
    (narrow or short-trained models), the target alone decides, as before.
    """
    cheapest = min(curve, key=lambda p: p["mean_macs"])["agreement"]
    return max(target_agreement, (1.0 + cheapest) / 2.0)


def choose_threshold(curve: list[dict], target_agreement: float) -> float:
    """The cheapest threshold that keeps the reference answer often enough (``required_agreement``)."""
    required = required_agreement(curve, target_agreement)
    good = [p for p in curve if p["agreement"] >= required]
    if good:
        return min(good, key=lambda p: p["mean_macs"])["threshold"]
    return max(curve, key=lambda p: (p["agreement"], -p["mean_macs"]))["threshold"]


def fit_halting(model: IamNN, data, *, mean, std, device="cpu", batch_size: int = 256, seed: int = 0,
                target_agreement: float = 0.97, head_epochs: int = 25,
                should_stop: Callable[[], bool] | None = None,
                progress: Callable[[float], None] | None = None) -> dict:
    """Fit the halting heads of a trained anytime backbone and choose the threshold.

    ``data`` is held-out ``ImageTensors`` (never the images the backbone trained on). Half of it
    chooses the reference depth and labels and trains the heads, the other half picks the
    threshold. Sets ``model.config.halting_caps`` and ``threshold``; returns a summary with the
    fixed settings' accuracy and the threshold curve.
    """
    from .data import normalize  # local: the data package pulls in torchvision

    if len(data.labels) < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"calibration: needs at least {MIN_CALIBRATION_IMAGES} held-out images (raise data.val_fraction)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    heads = [block.halting_head for block in model.blocks]
    for head in heads:
        for p in head.parameters():
            p.requires_grad_(True)

    order = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(seed))
    half = len(order) // 2
    fit_idx, pick_idx = order[:half], order[half:]

    def batches(indices):
        for start in range(0, len(indices), batch_size):
            idx = indices[start:start + batch_size]
            yield normalize(data.images[idx].to(device), mean, std), data.labels[idx].to(device)

    fixed_points = fixed_setting_accuracy(model, lambda: batches(fit_idx))
    depth = reference_setting(fixed_points, half)
    if progress:
        progress(0.2)
    labels, features = [[] for _ in model.blocks], [[] for _ in model.blocks]
    n_batches = max(1, -(-half // batch_size))
    for i, (x, _) in enumerate(batches(fit_idx)):
        if should_stop is not None and should_stop():
            break
        block_labels, block_features = stop_labels(model, x, depth)
        for b in range(len(model.blocks)):
            labels[b].append(block_labels[b])
            features[b].append(block_features[b])
        if progress:
            progress(0.2 + 0.4 * (i + 1) / n_batches)
    if should_stop is not None and should_stop():
        for p in model.parameters():
            p.requires_grad_(True)
        return {"stopped": True, "threshold": model.config.threshold}
    labels = [torch.cat(l) for l in labels]
    features = [torch.cat(f) for f in features]
    if not all(torch.isfinite(f).all() for f in features):
        raise ValueError("calibration: the trained model produces non-finite activations, so no halting head "
                         "can be fitted; train again with a lower learning rate")

    with torch.enable_grad():
        losses = train_heads(model, labels, features, epochs=head_epochs, seed=seed, should_stop=should_stop)
    for p in model.parameters():
        p.requires_grad_(True)
    if progress:
        progress(0.8)

    model.set_halting_caps(None if depth == tuple(model.caps) else depth)
    pick = list(batches(pick_idx))
    curve = threshold_curve(model, [x for x, _ in pick], [y for _, y in pick])
    threshold = choose_threshold(curve, target_agreement)
    model.config.mode = "adaptive"
    model.set_threshold(threshold)
    if progress:
        progress(1.0)
    return {
        "threshold": threshold,
        "halting_caps": list(depth),
        "fixed_settings": fixed_points,  # held-out accuracy of each, on the images that chose the reference
        "target_agreement": target_agreement,
        "required_agreement": required_agreement(curve, target_agreement),
        "curve": curve,
        "head_losses": losses,
        "stop_label_means": [float(l.float().mean()) for l in labels],
        "images_labelled": int(half),
        "images_for_threshold": int(len(pick_idx)),
    }
