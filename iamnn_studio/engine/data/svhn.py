"""SVHN: 32x32 house-number digits, stored as MATLAB ``.mat`` files (reading them needs scipy).

torchvision downloads the files (and checks their md5); reading follows torchvision's ``SVHN`` exactly
(``X`` is H x W x C x N, label 10 means digit 0) but without its md5 check, so that a user's own copy
of the files, or a test's tiny one, loads too.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from .base import (
    ALLOW_DOWNLOADS, DATASETS, DatasetProvider, InputShape, dataset_download, datasets_root, download_failed,
    incomplete_folder, join_places, missing_files, user_folder,
)
from .bundle import DatasetBundle, ImageTensors

SPLIT_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SCIPY_HINT = "SVHN is stored as .mat files, which need scipy: pip install scipy"


def scipy_available() -> bool:
    return importlib.util.find_spec("scipy") is not None


class SvhnProvider(DatasetProvider):
    name = "svhn"
    label = "SVHN"
    description = "Street View House Numbers: 32x32 colour digit crops, 73,257 train and 26,032 test images."
    default_augment = "crop"  # digits: a mirrored 2 is not a 2
    shape = InputShape(channels=3, size=32, classes=10)

    def search_dirs(self, root: str | None) -> list[Path]:
        return [user_folder(root)] if root else [datasets_root() / "svhn"]

    def find_folder(self, root: str | None) -> Path | None:
        for folder in self.search_dirs(root):
            if all((folder / name).is_file() for name in SPLIT_FILES.values()):
                return folder
        return None

    def available_offline(self, root: str | None) -> tuple[bool, str]:
        folder = self.find_folder(root)
        if folder is None:
            return False, self._not_found(root)
        if not scipy_available():
            return False, f"found in {folder}, but {SCIPY_HINT}"
        return True, f"found in {folder}"

    def _not_found(self, root: str | None) -> str:
        incomplete = incomplete_folder(self.search_dirs(root), list(SPLIT_FILES.values()), Path.is_file)
        if incomplete:
            return f"{missing_files(self.label, *incomplete)}; {ALLOW_DOWNLOADS} or put it there"
        files = " and ".join(SPLIT_FILES.values())
        return f"SVHN not found (looked for {files} in {join_places(self.search_dirs(root))}); {ALLOW_DOWNLOADS}"

    def load(self, cfg: DataConfig, *, seed: int) -> DatasetBundle:
        if not scipy_available():
            raise ValueError(SCIPY_HINT)
        folder = self.find_folder(cfg.root)
        if folder is None and cfg.download:
            folder = self.search_dirs(cfg.root)[0]
            with dataset_download(self.label, folder):
                self._download(folder)
            folder = self.find_folder(cfg.root)
        if folder is None:
            raise ValueError(self._not_found(cfg.root))
        train, test = (_read_mat(folder / SPLIT_FILES[split]) for split in ("train", "test"))
        return DatasetBundle.from_splits(
            self.name, [str(d) for d in range(10)], train, test, val_fraction=cfg.val_fraction,
            val_split=cfg.val_split, seed=seed, default_augment=self.default_augment, notes=[f"read from {folder}"],
        )

    def _download(self, folder: Path) -> None:
        from torchvision.datasets import SVHN

        try:
            for split in SPLIT_FILES:
                SVHN(str(folder), split=split, download=True)
        except Exception as exc:  # no network, a proxy, a full disk: all end the same for the user
            raise download_failed(self.label, folder, exc, f"put {' and '.join(SPLIT_FILES.values())} there") from None


def _read_mat(path: Path) -> ImageTensors:
    import scipy.io
    from scipy.io.matlab import MatReadError  # a text file or a truncated one

    try:
        mat = scipy.io.loadmat(str(path))
        images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)  # -> N, C, H, W
        labels = mat["y"].astype(np.int64).reshape(-1)
    except KeyError as exc:
        raise ValueError(f"cannot read {path}: not an SVHN .mat file (no {exc} entry)") from None
    except (OSError, ValueError, TypeError, NotImplementedError, MatReadError) as exc:
        raise ValueError(f"cannot read {path}: not an SVHN .mat file ({exc})") from None
    labels[labels == 10] = 0  # SVHN labels the digit 0 as 10
    if images.shape[1:] != (3, 32, 32) or len(images) != len(labels):
        raise ValueError(f"cannot read {path}: expected X of 32x32x3xN and N labels")
    return ImageTensors(torch.from_numpy(images), torch.from_numpy(labels))


DATASETS.register("svhn", SvhnProvider())
