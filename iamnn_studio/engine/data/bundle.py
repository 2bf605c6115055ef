"""Decoded datasets: every split held in memory as uint8 tensors, plus what a trainer needs to know."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from ..config import VAL_SPLITS, one_of


@dataclass
class ImageTensors:
    """One split: ``images`` uint8 [N, C, H, W] and ``labels`` int64 [N]."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise TypeError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise TypeError(f"labels must be int64 [N], got {self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Tensor | Sequence[int]) -> "ImageTensors":
        index = torch.as_tensor(indices, dtype=torch.long, device=self.labels.device)
        return ImageTensors(self.images.index_select(0, index), self.labels.index_select(0, index))

    def to(self, device: torch.device | str) -> "ImageTensors":
        return ImageTensors(self.images.to(device), self.labels.to(device))


def held_out_count(n: int, fraction: float) -> int:
    """How many of ``n`` images a share of ``fraction`` holds out: rounded, at least one when asked for
    (a requested validation split is never silently empty), never all."""
    if n <= 1:
        return 0
    held = min(int(round(n * fraction)), n - 1)
    return max(held, 1) if fraction > 0 else held


def held_out_per_class(class_sizes: Sequence[int], fraction: float) -> list[int]:
    """How many images of each class a per-class split holds out: the share of the whole pool
    (``held_out_count``), shared out in proportion to the classes' sizes (largest remainders first), but at
    least one of every class that has two and never a class's last image."""
    wanted = [round(n * fraction, 9) for n in class_sizes]  # round: 0.29 * 100 is 28.999999999999996
    least = 1 if fraction > 0 else 0
    counts = [min(max(int(w), least), n - 1) if n > 1 else 0 for w, n in zip(wanted, class_sizes)]
    extra = held_out_count(sum(class_sizes), fraction) - sum(counts)
    by_remainder = sorted(range(len(counts)), key=lambda c: counts[c] - wanted[c])
    for c in [c for c in by_remainder if counts[c] < class_sizes[c] - 1][:max(extra, 0)]:
        counts[c] += 1
    return counts


def held_out_total(class_sizes: Sequence[int], fraction: float, method: str) -> int:
    """How many images ``split_off`` holds out of a pool with ``class_sizes`` images per class."""
    per_class = sum(held_out_per_class(class_sizes, fraction)) if method == "per-class" else 0
    return per_class or held_out_count(sum(class_sizes), fraction)


def split_off(data: ImageTensors, fraction: float, seed: int,
              method: str = "random") -> tuple[ImageTensors, ImageTensors]:
    """Hold out ``fraction`` of ``data`` at random (fixed by ``seed``); returns (kept, held_out).

    ``method`` "per-class" holds out that share of every class (``held_out_per_class``: at least one image of
    each class that has two; a class of one image keeps it, so a few fewer than asked may be held out, and
    only where no class can give one is the share drawn over all images); "random" draws it over all images,
    as every run before ``data.val_split`` did, so a small class may get none. Both parts keep the original
    order, so the same seed and method always give the same split: a resumed run sees its own.
    """
    if method not in VAL_SPLITS:
        raise ValueError(f"data.val_split: must be {one_of(VAL_SPLITS)}, got {method!r}")
    n = len(data)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # first: "random" stays as it was
    held = _per_class_picks(order, data.labels.cpu(), fraction) if method == "per-class" else order[:0]
    if len(held) == 0:
        held = order[:held_out_count(n, fraction)]
    is_held = torch.zeros(n, dtype=torch.bool)
    is_held[held] = True
    return data.subset(torch.nonzero(~is_held).flatten()), data.subset(torch.nonzero(is_held).flatten())


def _per_class_picks(order: Tensor, labels: Tensor, fraction: float) -> Tensor:
    """Each class's share of ``order`` (a random permutation): its first images in that order."""
    shuffled = labels[order]
    by_class = order[torch.argsort(shuffled, stable=True)]  # each class's images together, still in random order
    sizes = torch.unique_consecutive(shuffled.sort().values, return_counts=True)[1].tolist()
    starts = [0, *itertools.accumulate(sizes)][:-1]
    counts = held_out_per_class(sizes, fraction)
    picks = [by_class[start:start + count] for start, count in zip(starts, counts)]
    return torch.cat(picks) if picks else order[:0]


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images in [0, 1] scale.

    A 256-bin histogram per channel gives exact moments without a float copy of the dataset.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1).cpu(), minlength=256).double()
        total = hist.sum().clamp_min(1.0)
        mean = (hist * values).sum() / total
        var = (hist * values.square()).sum() / total - mean.square()
        means.append(float(mean))
        stds.append(max(float(var.clamp_min(0.0).sqrt()), 1e-3))  # a constant channel must not divide by 0
    return tuple(means), tuple(stds)


@dataclass
class DatasetBundle:
    """Train/val/test splits decoded once, class names, and train-split normalisation statistics."""

    name: str
    classes: list[str]
    train: ImageTensors
    val: ImageTensors
    test: ImageTensors
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. "difficulty": per-image, test split
    default_augment: str = "crop-flip"
    # whether the validation images are the val_fraction share carved from the training pool (False: the
    # dataset brought its own, e.g. an image folder's val/, which no split setting changes)
    val_carved: bool = True
    # whether the test split is the validation split (the dataset has no test images of its own): an evaluation
    # on it measures the images that chose the model (``evaluate.evaluation_split``)
    test_is_val: bool = False
    # how the carved validation images were drawn ("per-class" or "random"): a plugin that passes no val_split
    # draws at random whatever the run's config.toml says; None where the dataset brought its own
    val_split: str | None = None

    @classmethod
    def from_splits(
        cls,
        name: str,
        classes: Sequence[str],
        train: ImageTensors,
        test: ImageTensors | None,
        *,
        val: ImageTensors | None = None,
        val_fraction: float = 0.0,
        val_split: str | None = None,
        seed: int = 0,
        notes: Sequence[str] = (),
        extras: dict[str, Any] | None = None,
        default_augment: str = "crop-flip",
    ) -> "DatasetBundle":
        """Carve ``val`` out of ``train`` unless the dataset brings its own, then measure the train split.

        ``test=None`` means the dataset has no test images: the validation split stands in for them.
        ``val_split`` is how the share is drawn (``split_off``): providers pass ``cfg.val_split``; one that passes
        none draws at random, as it always did, so its old runs keep their splits (``val_split`` records it).
        Class names become text (a plugin may name them 0, 1, 2): eval.json and every view read text.
        """
        classes = [str(name) for name in classes]
        check_classes_and_labels(name, len(classes), (("train", train), ("test", test), ("val", val)))
        val_carved = val is None
        notes = list(notes)
        method = (val_split or "random") if val_carved else None
        if val_carved:
            pool = len(train)
            train, val = split_off(train, val_fraction, seed, method)
            notes += _classes_not_held_out(classes, train, val, _why_missing(val_split))
            notes += _held_out_more_than_asked(pool, len(val), val_fraction, method)
        test_is_val = test is None
        if test_is_val:
            test = val
        mean, std = channel_stats(train.images)
        return cls(
            name=name, classes=list(classes), train=train, val=val, test=test, mean=mean, std=std,
            notes=notes, extras=dict(extras or {}), default_augment=default_augment, val_carved=val_carved,
            test_is_val=test_is_val, val_split=method,
        )

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> ImageTensors:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {name!r}")
        return getattr(self, name)

    def to(self, device: torch.device | str) -> "DatasetBundle":
        """All splits on ``device`` (small datasets fit on the GPU, so batches never cross the bus)."""
        extras = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.extras.items()}
        return dataclasses.replace(
            self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device), extras=extras
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the ``info`` command and the GUI."""
        return {
            "name": self.name,
            "classes": list(self.classes),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "mean": list(self.mean),
            "std": list(self.std),
            "default_augment": self.default_augment,
            "notes": list(self.notes),
        }


def class_counts(split: ImageTensors, num_classes: int | None = None) -> list[int]:
    """Images per class label (pass ``num_classes`` so classes absent at the end still count 0)."""
    return torch.bincount(split.labels.cpu(), minlength=num_classes or 0).tolist()


def preview(bundle: DatasetBundle, per_class: int = 4, split: str = "train") -> tuple[Tensor, Tensor]:
    """The first ``per_class`` images of every class, grouped by class, for the GUI's preview grid."""
    data = bundle.split(split)
    labels = data.labels.cpu()
    picks = [torch.nonzero(labels == c).flatten()[:per_class] for c in range(bundle.num_classes)]
    index = torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)
    return data.images.cpu().index_select(0, index), labels.index_select(0, index)


def _why_missing(val_split: str | None) -> str:
    """Why a split by the method ``val_split`` names (None: the dataset's provider named none) can leave a
    class without validation images, worded from what was drawn: a new run's config.toml says "per-class"
    even where the provider drew at random."""
    if val_split is None:
        return "the split is drawn at random over all images: the dataset does not split per class"
    if val_split == "random":
        return ("the split is drawn at random over all images (data.val_split = \"random\", as runs made before "
                "that setting keep); \"per-class\" holds out some of every class")
    return "a class needs two images to have one held out"


def _classes_not_held_out(classes: list[str], train: ImageTensors, val: ImageTensors, why: str) -> list[str]:
    """A note naming the classes a carved validation split holds none of (so neither validation, calibration
    nor a test split that is the validation split sees them), with the cause; empty when every class is in it."""
    if len(val) == 0:
        return []  # no split asked for: NO_VALIDATION_NOTE's business, not a class's
    trained = class_counts(train, len(classes))
    missing = [name for name, n_train, n_val in zip(classes, trained, class_counts(val, len(classes)))
               if n_train and not n_val]
    if not missing:
        return []
    return [f"no validation image of {_class_list(missing)}: {why}"]


def _held_out_more_than_asked(pool: int, held: int, fraction: float, method: str) -> list[str]:
    """A note where a per-class split held out clearly more than the share asked for: many classes of a few
    images each give one image apiece, whatever the share (40 classes of 3 images at 10 % hold out a third)."""
    asked = held_out_count(pool, fraction)
    if method != "per-class" or held - asked <= max(1, asked // 10):
        return []
    return [f"the per-class validation split holds out {held} of {pool} images ({100 * held / pool:.0f} %) where "
            f"{100 * fraction:g} % was asked: every class with two images or more gives one; "
            f"data.val_split = \"random\" holds out {100 * fraction:g} % but may leave classes out"]


def _class_list(names: list[str], shown: int = 5) -> str:
    quoted = [repr(name) for name in names[:shown]]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ("class " if len(names) == 1 else "classes ") + ", ".join(quoted) + more


class LabelError(ValueError):
    """Classes or labels no classifier trains on. ``predicate`` is the message after the dataset's name, so that
    ``load_dataset`` can name a plugin's dataset as the user chose it, and its plugin, instead; ``cause`` the
    likely cause for a dataset read from files (a plugin's labels come from its code, not from label files)."""

    def __init__(self, name: str, predicate: str, cause: str = "") -> None:
        super().__init__(name + predicate + (f": {cause}" if cause else ""))
        self.name, self.predicate, self.cause = name, predicate, cause

    def __reduce__(self):  # pickled with every part (a run's error may cross to another process)
        return type(self), (self.name, self.predicate, self.cause)


def check_classes_and_labels(name: str, num_classes: int,
                             splits: Sequence[tuple[str, ImageTensors | None]]) -> None:
    """Fewer than two classes, or labels outside the class list (files of another dataset, a damaged label file),
    are refused here (``LabelError``): in training they end in an IndexError of the loss, far from the files."""
    if num_classes < 2:
        raise LabelError(name, f" has {num_classes} class{'es' * (num_classes != 1)}: a classifier needs at least 2")
    for split, images in splits:
        if images is None or len(images.labels) == 0:
            continue
        low, high = int(images.labels.min()), int(images.labels.max())
        if low < 0 or high >= num_classes:
            raise LabelError(name, f": its {split} labels run from {low} to {high}, but its {num_classes} classes "
                                   f"are numbered 0 to {num_classes - 1}",
                             cause="the label files are damaged or of another dataset")
