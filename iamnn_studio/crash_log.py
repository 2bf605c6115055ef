"""Unexpected errors leave their traceback in a temp file (shared by the CLI and the app), so the
user sees one sentence with the file's path instead of a traceback."""
from __future__ import annotations

import tempfile
import time
import traceback
from types import TracebackType


def write_error_log(kind: type[BaseException], error: BaseException, tb: TracebackType | None,
                    *, heading: str = "IamNN Studio") -> str:
    """The traceback in a temp file; returns its path (or why there is none)."""
    text = f"{heading}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n" + "".join(traceback.format_exception(kind, error, tb))
    try:
        with tempfile.NamedTemporaryFile("w", prefix="iamnn-studio-error-", suffix=".log", delete=False) as log:
            log.write(text)
            return log.name
    except OSError:
        return "no log: the temp folder is not writable"
