"""MNIST-format datasets (LeCun's idx files): MNIST and Fashion-MNIST.

Files are found in the user's root, a system folder (Debian's ``dataset-fashion-mnist`` package) or
torchvision's download folder, and read with torchvision's own idx reader. That reader wants plain
files, so ``.gz`` files are decompressed once into the cache.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..config import DataConfig
from ..io import atomic_write
from .base import (
    ALLOW_DOWNLOADS, DATASETS, DatasetProvider, InputShape, datasets_root, download_failed, incomplete_folder,
    join_places, missing_files, user_folder,
)
from .bundle import DatasetBundle, ImageTensors

#: The four files of an idx dataset, by split and kind.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


class IdxProvider(DatasetProvider):
    """A torchvision ``MNIST``-family dataset read from idx files (plain or gzipped)."""

    def __init__(
        self,
        name: str,
        label: str,
        description: str,
        *,
        torchvision_class: str,
        classes: list[str],
        system_dirs: tuple[str, ...] = (),
        manual_install: str = "put the four idx files in the dataset folder",
        default_augment: str = "crop-flip",
    ) -> None:
        self.name, self.label, self.description = name, label, description
        self.torchvision_class = torchvision_class  # also the folder torchvision downloads into
        self.classes = classes
        self.system_dirs = system_dirs
        self.manual_install = manual_install  # how to get the files without downloading
        self.default_augment = default_augment
        self.shape = InputShape(channels=1, size=28, classes=len(classes))  # every idx dataset here is 28x28 grey

    # ------------------------------------------------------------------ finding
    def search_dirs(self, root: str | None) -> list[Path]:
        """Where to look: the user's folder when one is given (only there: a folder typed by mistake
        must not be passed over in silence for another copy), else the system folders, then
        torchvision's download root."""
        if root:
            return [user_folder(root)]
        return [Path(d) for d in self.system_dirs] + [datasets_root()]

    def candidate_folders(self, root: str | None) -> list[Path]:
        # Each place itself, or torchvision's layout below it (<root>/<Class>/raw).
        return [folder for place in self.search_dirs(root)
                for folder in (place, place / "raw", place / self.torchvision_class / "raw")]

    def find_files(self, root: str | None) -> dict[tuple[str, str], Path] | None:
        for folder in self.candidate_folders(root):
            found = {key: _existing(folder / stem) for key, stem in IDX_FILES.items()}
            if all(found.values()):
                return found  # type: ignore[return-value]
        return None

    def available_offline(self, root: str | None) -> tuple[bool, str]:
        files = self.find_files(root)
        if files is None:
            return False, self._not_found(root)
        return True, f"found in {files['train', 'images'].parent}"

    def _not_found(self, root: str | None) -> str:
        incomplete = incomplete_folder(self.candidate_folders(root), list(IDX_FILES.values()),
                                       lambda stem: _existing(stem) is not None)
        if incomplete:
            folder, missing = incomplete
            missing = [name + "[.gz]" for name in missing]
            return f"{missing_files(self.label, folder, missing)}; {ALLOW_DOWNLOADS} or {self.manual_install}"
        return (
            f"{self.label} not found (looked in {join_places(self.search_dirs(root))} for "
            f"{IDX_FILES['train', 'images']}[.gz] and its three siblings); {ALLOW_DOWNLOADS} or {self.manual_install}"
        )

    # ------------------------------------------------------------------ loading
    def load(self, cfg: DataConfig, *, seed: int) -> DatasetBundle:
        files = self.find_or_download(cfg, self.find_files)

        from torchvision.datasets.mnist import read_image_file, read_label_file

        splits = {}
        for split in ("train", "test"):
            images = _read(files[split, "images"], read_image_file)
            labels = _read(files[split, "labels"], read_label_file)
            if len(images) != len(labels):
                raise ValueError(
                    f"{self.label}: {files[split, 'images']} has {len(images)} images but "
                    f"{files[split, 'labels']} has {len(labels)} labels"
                )
            splits[split] = ImageTensors(images.unsqueeze(1).contiguous(), labels)
        return DatasetBundle.from_splits(
            self.name, self.classes, splits["train"], splits["test"],
            val_fraction=cfg.val_fraction, val_split=cfg.val_split, seed=seed,
            default_augment=self.default_augment,
            notes=[f"read from {files['train', 'images'].parent}"],
        )

    def _download(self, root: Path) -> None:
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, self.torchvision_class)
        try:
            dataset_class(str(root), train=True, download=True)
        except Exception as exc:  # no network, a proxy, a full disk: all end the same for the user
            raise download_failed(self.label, root, exc, self.manual_install) from None


def _existing(stem: Path) -> Path | None:
    """The plain file if present (cheaper to read), else the gzipped one, else None."""
    for candidate in (stem, stem.with_name(stem.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path, reader: Callable[[str], torch.Tensor]) -> torch.Tensor:
    try:
        with _plain_file(path) as plain:
            problem = _header_problem(plain)  # torchvision reads a cut-short header as "invalid literal for int()"
            tensor = None if problem else reader(str(plain))
    except (OSError, EOFError, AssertionError, TypeError, ValueError, RuntimeError) as exc:
        # torchvision's reader asserts on a bad header; say which file is broken instead.
        why = str(exc) or "its header is not that of an idx file"  # torchvision's asserts have no message
        raise ValueError(f"cannot read {path}: not a valid idx file ({why})") from None
    if problem:
        raise ValueError(f"cannot read {path}: {problem}")
    return tensor


def _header_problem(plain: Path) -> str | None:
    """"the file is empty", or "too short to be an idx file" where it ends inside its header (4 bytes, then 4 per
    dimension); None otherwise."""
    size = plain.stat().st_size
    if size == 0:
        return "the file is empty"
    with plain.open("rb") as file:
        magic = file.read(4)
    if len(magic) < 4 or size < 4 + 4 * magic[3]:
        return f"the file is too short to be an idx file ({size} bytes)"
    return None


@contextmanager
def _plain_file(path: Path) -> Iterator[Path]:
    """``path`` itself, or its decompressed copy (cached; a temp file if the cache is read-only)."""
    if path.suffix != ".gz":
        yield path
        return
    cache = datasets_root() / "decompressed"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        writable = os.access(cache, os.W_OK)
    except OSError:
        writable = False
    if writable:
        yield _cached_gunzip(path, cache)
        return
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / path.stem
        with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield plain


def _cached_gunzip(path: Path, cache: Path) -> Path:
    stat = path.stat()
    # Keyed by where the file is and its size/mtime, so a replaced source is never served stale.
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache / f"{path.stem}-{key}"
    if not target.is_file():
        with gzip.open(path, "rb") as src:
            atomic_write(target, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))
    return target


FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

DATASETS.register(
    "fashion-mnist",
    IdxProvider(
        "fashion-mnist",
        "Fashion-MNIST",
        "Zalando's 28x28 grayscale clothing photos: 60,000 train and 10,000 test images in 10 classes.",
        torchvision_class="FashionMNIST",
        classes=FASHION_MNIST_CLASSES,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        manual_install="install Debian's dataset-fashion-mnist (apt install dataset-fashion-mnist)",
    ),
)

DATASETS.register(
    "mnist",
    IdxProvider(
        "mnist",
        "MNIST",
        "LeCun's 28x28 grayscale handwritten digits: 60,000 train and 10,000 test images.",
        torchvision_class="MNIST",
        classes=[str(d) for d in range(10)],
        system_dirs=("/usr/share/datasets/mnist",),
        default_augment="crop",  # a mirrored digit is a different glyph
    ),
)
