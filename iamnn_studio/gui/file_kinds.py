"""Which files the app takes where: one rule for the window, the Use tab and the file dialogs.

A dropped checkpoint opens in the Use tab, a run config loads into the Train form, and anything
else is an image to classify (one that does not decode gets an error card saying so). A dropped
run folder stands for its run (its checkpoint and report), any other folder for the images inside it.
No Qt here: plain paths in, plain paths out.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from iamnn_studio.image_files import IMAGE_SUFFIXES, folder_images  # noqa: F401  (shared with the CLI)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
CONFIG_SUFFIXES = (".toml",)
IMAGE_FILTER = f"Images ({' '.join('*' + s for s in IMAGE_SUFFIXES)});;All files (*)"
CHECKPOINT_FILTER = f"Checkpoints ({' '.join('*' + s for s in CHECKPOINT_SUFFIXES)});;All files (*)"
#: A folder holding one of these is a run folder (the engine's ``runs`` writes them; no torch here to ask it).
RUN_MARKERS = ("config.toml", "status.json", "metrics.jsonl")
#: A run's checkpoint to open, in order of preference (as the engine's ``run_checkpoint``).
RUN_CHECKPOINTS = ("best.pt", "last.pt")
#: A dropped folder adds at most this many of its images (a photo library must not freeze the tab).
MAX_FOLDER_IMAGES = 200


def is_checkpoint(path: str | Path) -> bool:
    return Path(path).suffix.lower() in CHECKPOINT_SUFFIXES


def is_config(path: str | Path) -> bool:
    return Path(path).suffix.lower() in CONFIG_SUFFIXES


@dataclass
class DroppedRun:
    """A dropped run folder and the checkpoint it stands for (None while it has none yet)."""

    folder: str
    checkpoint: str | None


def dropped_run(path: str | Path) -> DroppedRun | None:
    """The run a dropped path is, or None when it is not a run folder."""
    folder = Path(path)
    try:
        if not folder.is_dir() or not any((folder / marker).is_file() for marker in RUN_MARKERS):
            return None
        checkpoints = [folder / "checkpoints" / name for name in RUN_CHECKPOINTS]
        return DroppedRun(str(folder), next((str(c) for c in checkpoints if c.is_file()), None))
    except (OSError, ValueError):  # unreadable: the Use tab says why, as for any other folder
        return None


@dataclass
class Dropped:
    """What a drop (or a file dialog) brought, sorted by what the app does with it."""

    images: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)  # folders with no image inside
    folders_cut_short: list[str] = field(default_factory=list)  # folders with more than MAX_FOLDER_IMAGES
    # (folder, reason) for each folder, dropped or inside one, whose files cannot be listed ("permission denied")
    unreadable_folders: list[tuple[str, str]] = field(default_factory=list)


def sort_dropped(paths: list[str]) -> Dropped:
    """Folders replaced by their images; each kind in drop order.

    Files of other kinds count as images, so that the Use tab says why one cannot be read instead of
    the drop being refused without a word.
    """
    dropped = Dropped()
    for path in paths:
        if os.path.isdir(path):
            unreadable: list[tuple[str, str]] = []
            inside, more = folder_images(path, MAX_FOLDER_IMAGES,
                                         on_unreadable=lambda folder, reason: unreadable.append((folder, reason)))
            dropped.unreadable_folders += unreadable
            if not inside and not unreadable:  # with an unreadable part, its images may be in there: not "empty"
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
