"""Atomic file writes: killing the process at any instant leaves the old file or the new one."""
from __future__ import annotations

import errno
import glob
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO


def unsaved_reason(error: OSError) -> str:
    """Why a run-folder file could not be written, in words ("the disk is full"), for the trainer's warnings
    and the Study tab. Without the error's file name: callers name the file (the error's is often the temp
    file written first)."""
    reasons = {
        errno.EROFS: "the run folder is on a read-only disk or mount",
        errno.EACCES: "you have no permission to write in the run folder",
        errno.EPERM: "you have no permission to write in the run folder",
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "your disk quota is used up",
        errno.ENOENT: "the run folder no longer exists",
    }
    return reasons.get(error.errno) or (error.strerror or str(error)).rstrip(".")


def bytes_text(size: int) -> str:
    """A file or disk size as people read it: "1.5 MiB", "312 bytes"."""
    for factor, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


def unwritable_reason(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` ("the run folder is on a read-only disk or mount"), by
    creating one as checkpoints are written (a temp file in it); None where it can be. An empty file: a
    disk with no room left is found only when the checkpoint is written (the run then keeps its last one)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
    except FileNotFoundError:
        return None  # no checkpoints folder: the missing checkpoint says so next
    except OSError as exc:
        return unsaved_reason(exc)
    os.close(fd)
    os.unlink(probe)
    return None


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], *, suffix: str = ".tmp") -> None:
    """Write ``path`` through a temp file in the same folder (hidden, ending in ``suffix``), fsync it, then
    ``os.replace``. Whatever ``write`` raises leaves no temp file and ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        give_usual_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def temp_prefix(path: Path) -> str:
    """How the temp files ``path`` is written through begin (hidden, beside it): ``.model.onnx.``."""
    return f".{Path(path).name}."


def temp_files(path: Path, suffix: str = ".tmp") -> set[Path]:
    """The temp files beside ``path`` that writing it through a temp file may leave (a process killed
    mid-write runs no clean-up): ``.model.onnx.<random>.tmp``."""
    path = Path(path)
    try:
        return set(path.parent.glob(f"{glob.escape(temp_prefix(path))}*{glob.escape(suffix)}"))
    except OSError:
        return set()


def _usual_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask (read as it is now)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def give_usual_permissions(path: str | Path) -> None:
    """A temp file is private (0600); the file it becomes gets what any new file would (e.g. 0644),
    so a shared model or run stays readable by whoever may read the folder."""
    try:
        os.chmod(path, _usual_file_mode())
    except OSError:  # a file system without modes: nothing to give
        pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
