"""CIFAR-10 and CIFAR-100 (the "python version" pickles from Krizhevsky's page).

torchvision downloads them (and checks the archive's md5). Reading is done here, in the same format
torchvision reads, for two reasons: torchvision's class insists on the md5 of every official file, so a
user's re-packed or trimmed copy (or a test's tiny one) would be refused; and a pickle from a folder the
user picked should not be able to run code, so only numpy arrays may be unpickled.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import DataConfig
from .base import (
    ALLOW_DOWNLOADS, DATASETS, DatasetProvider, InputShape, datasets_root, download_failed, incomplete_folder,
    join_places, missing_files, user_folder,
)
from .bundle import DatasetBundle, ImageTensors


class CifarProvider(DatasetProvider):
    """A CIFAR variant: which folder, which batch files, which label keys."""

    def __init__(
        self,
        name: str,
        label: str,
        description: str,
        *,
        torchvision_class: str,
        base_folder: str,
        train_files: tuple[str, ...],
        test_files: tuple[str, ...],
        meta_file: str,
        label_key: str,
        names_key: str,
        num_classes: int,
    ) -> None:
        self.name, self.label, self.description = name, label, description
        self.torchvision_class = torchvision_class
        self.base_folder = base_folder
        self.train_files, self.test_files = train_files, test_files
        self.meta_file = meta_file
        self.label_key, self.names_key = label_key, names_key
        self.shape = InputShape(channels=3, size=32, classes=num_classes)

    def search_dirs(self, root: str | None) -> list[Path]:
        top = user_folder(root) if root else datasets_root()
        return [top / self.base_folder, top]  # the root may also be the extracted folder itself

    @property
    def needed_files(self) -> list[str]:
        return [*self.train_files, *self.test_files, self.meta_file]

    def find_folder(self, root: str | None) -> Path | None:
        for folder in self.search_dirs(root):
            if all((folder / name).is_file() for name in self.needed_files):
                return folder
        return None

    def available_offline(self, root: str | None) -> tuple[bool, str]:
        folder = self.find_folder(root)
        return (True, f"found in {folder}") if folder else (False, self._not_found(root))

    def _not_found(self, root: str | None) -> str:
        incomplete = incomplete_folder(self.search_dirs(root), self.needed_files, Path.is_file)
        if incomplete:
            return f"{missing_files(self.label, *incomplete)}; {ALLOW_DOWNLOADS} or extract {self.base_folder} again"
        return (
            f"{self.label} not found (looked for {self.base_folder}/ with {', '.join(self.train_files)}, "
            f"{', '.join(self.test_files)} and {self.meta_file} in {join_places(self.search_dirs(root))}); "
            f"{ALLOW_DOWNLOADS} or extract {self.base_folder} there"
        )

    def load(self, cfg: DataConfig, *, seed: int) -> DatasetBundle:
        folder = self.find_or_download(cfg, self.find_folder)

        meta = _load_pickle(folder / self.meta_file)
        classes = [str(c) for c in _field(meta, self.names_key, folder / self.meta_file)]
        train = self._read_batches(folder, self.train_files, len(classes))
        test = self._read_batches(folder, self.test_files, len(classes))
        return DatasetBundle.from_splits(
            self.name, classes, train, test, val_fraction=cfg.val_fraction, val_split=cfg.val_split, seed=seed,
            default_augment=self.default_augment, notes=[f"read from {folder}"],
        )

    def _read_batches(self, folder: Path, names: tuple[str, ...], num_classes: int) -> ImageTensors:
        images, labels = [], []
        for name in names:
            path = folder / name
            entry = _load_pickle(path)
            data = np.asarray(_field(entry, "data", path), dtype=np.uint8)
            targets = np.asarray(_field(entry, self.label_key, path), dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(targets):
                raise ValueError(f"cannot read {path}: expected N rows of 3072 bytes and N labels")
            if len(targets) and not 0 <= targets.min() <= targets.max() < num_classes:
                raise ValueError(f"cannot read {path}: labels outside 0..{num_classes - 1}")
            images.append(data.reshape(-1, 3, 32, 32))  # rows are channel-major: 1024 R, 1024 G, 1024 B
            labels.append(targets)
        return ImageTensors(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))

    def _download(self, root: Path) -> None:
        import torchvision.datasets

        try:
            getattr(torchvision.datasets, self.torchvision_class)(str(root), train=True, download=True)
        except Exception as exc:  # no network, a proxy, a full disk: all end the same for the user
            raise download_failed(self.label, root, exc, f"extract {self.base_folder} into {root}") from None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays, and refuses anything that could run code."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return _ArraysOnly(fh, encoding="latin1").load()  # latin1: the files were pickled by Python 2
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read {path}: not a CIFAR pickle ({exc})") from None


def _field(entry: Any, key: str, path: Path) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise ValueError(f"cannot read {path}: no {key!r} entry")
    return entry[key]


DATASETS.register(
    "cifar10",
    CifarProvider(
        "cifar10",
        "CIFAR-10",
        "32x32 colour photos: 50,000 train and 10,000 test images in 10 classes.",
        torchvision_class="CIFAR10",
        base_folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
)

DATASETS.register(
    "cifar100",
    CifarProvider(
        "cifar100",
        "CIFAR-100",
        "32x32 colour photos: 50,000 train and 10,000 test images in 100 fine classes.",
        torchvision_class="CIFAR100",
        base_folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
)
