"""Which files the app takes where: one rule for the window, the Use tab and the file dialogs.

A dropped checkpoint opens in the Use tab, a run config loads into the Train form, and anything
else is an image to classify (one that does not decode gets an error card saying so). A dropped
folder stands for the images inside it. No Qt here: plain paths in, plain paths out.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
CONFIG_SUFFIXES = (".toml",)
IMAGE_FILTER = f"Images ({' '.join('*' + s for s in IMAGE_SUFFIXES)});;All files (*)"
CHECKPOINT_FILTER = f"Checkpoints ({' '.join('*' + s for s in CHECKPOINT_SUFFIXES)});;All files (*)"
#: A dropped folder adds at most this many of its images (a photo library must not freeze the tab).
MAX_FOLDER_IMAGES = 200


def is_checkpoint(path: str | Path) -> bool:
    return Path(path).suffix.lower() in CHECKPOINT_SUFFIXES


def is_config(path: str | Path) -> bool:
    return Path(path).suffix.lower() in CONFIG_SUFFIXES


def folder_images(folder: str | Path, limit: int = MAX_FOLDER_IMAGES) -> tuple[list[str], bool]:
    """(the first ``limit`` image files in ``folder`` and its subfolders, in sorted order; whether there
    are more). The walk stops there: a dropped photo library is not listed whole on the UI thread."""
    found: list[str] = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(parent, f) for f in sorted(files)
                  if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith(".")]
        if len(found) > limit:
            break
    return found[:limit], len(found) > limit


@dataclass
class Dropped:
    """What a drop (or a file dialog) brought, sorted by what the app does with it."""

    images: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)  # folders with no image inside
    folders_cut_short: list[str] = field(default_factory=list)  # folders with more than MAX_FOLDER_IMAGES


def sort_dropped(paths: list[str]) -> Dropped:
    """Folders replaced by their images; each kind in drop order.

    Files of other kinds count as images, so that the Use tab says why one cannot be read instead of
    the drop being refused without a word.
    """
    dropped = Dropped()
    for path in paths:
        if os.path.isdir(path):
            inside, more = folder_images(path)
            if not inside:
                dropped.empty_folders.append(path)
            if more:
                dropped.folders_cut_short.append(path)
            dropped.images += inside
        elif is_checkpoint(path):
            dropped.checkpoints.append(path)
        elif is_config(path):
            dropped.configs.append(path)
        else:
            dropped.images.append(path)
    return dropped
