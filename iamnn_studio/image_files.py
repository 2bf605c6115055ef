"""Which files are images, and the images in a folder: one rule for the app's drops and the CLI's ``predict``."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def folder_images(folder: str | Path, limit: int, *,
                  on_unreadable: Callable[[str, str], None] | None = None) -> tuple[list[str], bool]:
    """(the first ``limit`` image files in ``folder`` and its subfolders, in sorted order; whether there
    are more). The walk stops there: a dropped photo library is not listed whole on the UI thread.
    ``on_unreadable(folder, reason)`` hears of each folder whose list of files cannot be read, which the
    walk otherwise skips without a word."""

    def unreadable(exc: OSError) -> None:
        if on_unreadable is not None:
            on_unreadable(os.fspath(exc.filename if exc.filename is not None else folder), _reason(exc))

    found: list[str] = []
    for parent, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(parent, f) for f in sorted(files)
                  if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith(".")]
        if len(found) > limit:
            break
    return found[:limit], len(found) > limit


def unreadable_folder_reason(folder: str | Path) -> str | None:
    """Why the list of ``folder``'s files cannot be read ("permission denied"); None where it can. ``os.walk``
    skips such a folder without a word, which would read as a folder with no images in it."""
    try:
        with os.scandir(folder):
            return None
    except OSError as exc:
        return _reason(exc)


def _reason(exc: OSError) -> str:
    """An unreadable folder's reason as the messages say it: "permission denied"."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()
