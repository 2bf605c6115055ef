"""The user's own images: a folder with one subfolder per class (torchvision's ``ImageFolder`` layout).

``root/<class>/<image>`` is split into train/val by ``val_fraction``; ``root/train/<class>/...`` with
``root/val/...`` (and optionally ``root/test/...``) uses the given splits. Every image is decoded once,
made square (short side resized, centre cropped) and kept as uint8. Files that do not decode are
skipped and counted, never fatal: one stray ``Thumbs.db`` must not stop a run. A folder whose list of files
cannot be read is fatal: its class would be missing from training without a word.
"""
from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from ..config import DataConfig
from .base import DATASETS, DatasetProvider, user_folder
from .bundle import DatasetBundle, ImageTensors

DEFAULT_SIZE = 32
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
LAYOUT_HINT = "expected <folder>/<class name>/<image files>, or train/ and val/ folders laid out that way"


class UnreadableFolder(ValueError):
    """A folder whose list of files cannot be read: "image folder: cannot read the class folder /x/cat:
    permission denied". ``problem`` is the message without its "image folder: " (the availability check's words)."""

    def __init__(self, folder: str, error: OSError):
        reason = "permission denied" if isinstance(error, PermissionError) else (error.strerror or str(error)).lower()
        self.problem = f"cannot read {folder}: {reason}"
        super().__init__(f"image folder: {self.problem}")


class ImageFolderProvider(DatasetProvider):
    name = "imagefolder"
    label = "Image folder"
    downloadable = False
    description = "Your own images, one subfolder per class; resized to a square (32 px unless set)."

    def available_offline(self, root: str | None) -> tuple[bool, str]:
        if not root:
            return False, "choose a folder with one subfolder of images per class"
        folder = user_folder(root)
        if not folder.is_dir():
            return False, f"{'not a folder' if folder.exists() else 'folder not found'}: {folder}"
        top = folder / "train" if (folder / "train").is_dir() else folder
        try:
            classes = _class_dirs(top)
            if len(classes) < 2:
                return False, f"{top} has {len(classes)} class subfolder(s); need at least 2 ({LAYOUT_HINT})"
            for name in classes:  # one listing each, not a walk: a check, not a load
                _check_listable(top / name)
        except UnreadableFolder as error:
            return False, error.problem
        return True, f"{len(classes)} classes in {top}"

    def evaluation_split(self, cfg: DataConfig) -> str | None:
        """"test" where the folder has train/ and test/, "val" where it has no test/ (its held-out images stand
        in); None where there is no folder to look at."""
        if not cfg.root or not user_folder(cfg.root).is_dir():
            return None
        return "test" if "test" in _split_dirs(user_folder(cfg.root)) else "val"

    def load(self, cfg: DataConfig, *, seed: int) -> DatasetBundle:
        if not cfg.root:
            raise ValueError(f"imagefolder needs data.root: the folder of images ({LAYOUT_HINT})")
        folder = user_folder(cfg.root)
        if not folder.is_dir():
            problem = "is a file, not a folder" if folder.exists() else "not found"
            raise ValueError(f"image folder {problem}: {folder} ({LAYOUT_HINT})")
        size = cfg.image_size or DEFAULT_SIZE
        split_dirs = _split_dirs(folder)
        classes = _class_dirs(split_dirs["train"])
        if len(classes) < 2:
            found = f"only {classes[0]!r}" if classes else "none"
            raise ValueError(
                f"{split_dirs['train']} needs at least 2 class subfolders to classify, found {found} ({LAYOUT_HINT})"
            )

        samples = {split: _list_samples(d, classes) for split, d in split_dirs.items()}
        decoded, skipped = _decode_all([s for split in samples.values() for s in split], size)
        notes = [f"images resized to {size}x{size} px (short side, centre crop) from {folder}"]
        if skipped:
            example = os.path.relpath(skipped[0], folder)
            notes.append(f"skipped {len(skipped)} unreadable file(s), e.g. {example}")

        grayscale = all(gray for _, gray in decoded.values())
        splits: dict[str, ImageTensors] = {}
        for split, items in samples.items():
            kept = [(decoded[path][0], label) for path, label in items if path in decoded]
            splits[split] = _to_tensors(kept, size, 1 if grayscale else 3)
        if len(splits["train"]) == 0:
            raise ValueError(f"no readable images in {split_dirs['train']} ({LAYOUT_HINT})")
        empty = [c for c, n in zip(classes, torch.bincount(splits["train"].labels, minlength=len(classes))) if n == 0]
        if len(classes) - len(empty) < 2:  # a "classifier" of one class learns nothing (the others' files unreadable)
            [usable] = [c for c in classes if c not in empty]
            raise ValueError(f"only the class {usable!r} has readable training images in {split_dirs['train']}: "
                             f"a classifier needs 2 (the images of {', '.join(repr(c) for c in empty)} could not be "
                             "read)")
        if empty:
            notes.append(f"no training images for class(es): {', '.join(empty)}")

        if split_dirs["train"] != folder and "val" not in splits:
            notes.append("no val/ folder: validation carved from train/")
        bundle = DatasetBundle.from_splits(
            self.name, classes, splits["train"], splits.get("test"),
            val=splits.get("val"), val_fraction=cfg.val_fraction, val_split=cfg.val_split, seed=seed,
            notes=notes,
        )
        if "test" not in splits:  # the counts, known once validation is carved: how much the "test" scores rest on
            if "val" in splits:
                source = f"the {len(bundle.val)} images of val/"
            else:
                where = "train/" if split_dirs["train"] != folder else "the folder"
                source = (f"the share of {where} held out from training: {len(bundle.val)} of its "
                          f"{len(bundle.val) + len(bundle.train)} images")
            bundle.notes.append(f"no test/ folder: the test split is the validation split, {source}")
        return bundle


def peek_channels_and_classes(cfg: DataConfig) -> tuple[int | None, int | None]:
    """(channels, classes) that ``load`` will give, as far as a glance tells: the class folders, and the first
    image of the training split decoded (in loading's order). Either is None where a glance cannot tell: a grey
    first image leaves the channels open (one colour image anywhere makes the set colour), and an unusable
    folder leaves both (loading says what is wrong). For checks before loading, e.g. before starting processes.
    """
    if not cfg.root or not user_folder(cfg.root).is_dir():
        return None, None
    train = _split_dirs(user_folder(cfg.root))["train"]
    try:
        classes = _class_dirs(train)
        if len(classes) < 2:
            return None, None
        files = itertools.chain.from_iterable(_class_files(train / name) for name in classes)
        for path in itertools.islice(files, 20):  # past a few unreadable files (a Thumbs.db), as loading skips them
            decoded = _decode(path, 8)
            if decoded is not None:
                return (None if decoded[1] else 3), len(classes)
    except UnreadableFolder:
        return None, None
    return None, len(classes)


def _split_dirs(folder: Path) -> dict[str, Path]:
    """train/val/test subfolders when ``train/`` exists, else the folder itself as the training pool."""
    if not (folder / "train").is_dir():
        return {"train": folder}
    dirs = {"train": folder / "train"}
    for split, names in (("val", ("val", "valid", "validation")), ("test", ("test",))):
        for name in names:
            if (folder / name).is_dir():
                dirs[split] = folder / name
                break
    return dirs


def _class_dirs(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError as error:
        raise UnreadableFolder(f"the folder {folder}", error) from None


def _check_listable(class_dir: Path) -> None:
    try:
        with os.scandir(class_dir):
            pass
    except OSError as error:
        raise UnreadableFolder(f"the class folder {class_dir}", error) from None


def _list_samples(folder: Path, classes: list[str]) -> list[tuple[str, int]]:
    unknown = sorted(set(_class_dirs(folder)) - set(classes))
    if unknown:
        raise ValueError(f"{folder} has class folder(s) not in train/: {', '.join(unknown)}")
    return [(path, label) for label, name in enumerate(classes) for path in _class_files(folder / name)]


def _class_files(class_dir: Path) -> Iterator[str]:
    """The files of one class folder, its subfolders included, in a fixed order (hidden ones left out).
    A folder that cannot be listed raises (``os.walk`` alone would skip it, and with it the class)."""

    def unreadable(error: OSError) -> None:
        if isinstance(error, (FileNotFoundError, NotADirectoryError)):
            return  # nothing: val/ without this class's folder, or a folder removed during the walk
        where = os.fspath(error.filename if error.filename is not None else class_dir)
        if where == os.fspath(class_dir):
            raise UnreadableFolder(f"the class folder {where}", error)
        raise UnreadableFolder(f"the folder {where} of the class {class_dir.name!r}", error)

    for dirpath, dirnames, filenames in os.walk(class_dir, onerror=unreadable, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield from (os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith("."))


def _decode_all(samples: list[tuple[str, int]], size: int) -> tuple[dict[str, tuple[np.ndarray, bool]], list[str]]:
    """Decode in threads (PIL releases the GIL while decoding); returns {path: (pixels, was_gray)}, skipped."""
    paths = [path for path, _ in samples]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda p: _decode(p, size), paths))
    decoded = {p: r for p, r in zip(paths, results) if r is not None}
    return decoded, [p for p, r in zip(paths, results) if r is None]


def _decode(path: str, size: int) -> tuple[np.ndarray, bool] | None:
    try:
        with Image.open(path) as img:
            img.draft(None, (2 * size, 2 * size))  # JPEG: decode at reduced scale, far faster for photos
            gray = img.mode in GRAY_MODES
            img = ImageOps.fit(img.convert("L" if gray else "RGB"), (size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8), gray
    except Exception:  # any decoder failure means "not an image we can use": skip and count it
        return None


def _to_tensors(items: list[tuple[np.ndarray, int]], size: int, channels: int) -> ImageTensors:
    images = np.zeros((len(items), channels, size, size), dtype=np.uint8)
    for i, (pixels, _) in enumerate(items):
        images[i] = pixels if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # gray broadcasts to RGB
    labels = np.array([label for _, label in items], dtype=np.int64)
    return ImageTensors(torch.from_numpy(images), torch.from_numpy(labels))


DATASETS.register("imagefolder", ImageFolderProvider())
