"""Decoded datasets: every split held in memory as uint8 tensors, plus what a trainer needs to know."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor


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


def split_off(data: ImageTensors, fraction: float, seed: int) -> tuple[ImageTensors, ImageTensors]:
    """Hold out ``fraction`` of ``data`` at random (fixed by ``seed``); returns (kept, held_out).

    Both parts keep the original order, so the same seed always gives the same split.
    """
    n = len(data)
    n_held = min(int(round(n * fraction)), n - 1) if n > 1 else 0
    if fraction > 0 and n > 1:
        n_held = max(n_held, 1)  # a requested validation split is never silently empty
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held, kept = order[:n_held].sort().values, order[n_held:].sort().values
    return data.subset(kept), data.subset(held)


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
        seed: int = 0,
        notes: Sequence[str] = (),
        extras: dict[str, Any] | None = None,
        default_augment: str = "crop-flip",
    ) -> "DatasetBundle":
        """Carve ``val`` out of ``train`` unless the dataset brings its own, then measure the train split.

        ``test=None`` means the dataset has no test images: the validation split stands in for them.
        Class names become text (a plugin may name them 0, 1, 2): eval.json and every view read text.
        """
        classes = [str(name) for name in classes]
        for split, images in (("train", train), ("test", test), ("val", val)):
            _check_labels(name, split, images, len(classes))
        val_carved = val is None
        if val_carved:
            train, val = split_off(train, val_fraction, seed)
        test_is_val = test is None
        if test_is_val:
            test = val
        mean, std = channel_stats(train.images)
        return cls(
            name=name, classes=list(classes), train=train, val=val, test=test, mean=mean, std=std,
            notes=list(notes), extras=dict(extras or {}), default_augment=default_augment, val_carved=val_carved,
            test_is_val=test_is_val,
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


def _check_labels(name: str, split: str, images: ImageTensors | None, num_classes: int) -> None:
    """Labels outside the class list (files of another dataset, a damaged label file) are refused
    here: in training they end in an IndexError of the loss, far from the files."""
    if images is None or len(images.labels) == 0:
        return
    low, high = int(images.labels.min()), int(images.labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name}: its {split} labels run from {low} to {high}, but its {num_classes} classes "
                         f"are numbered 0 to {num_classes - 1}: the label files are damaged or of another dataset")
