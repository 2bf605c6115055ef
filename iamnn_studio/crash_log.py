"""Unexpected errors leave their traceback in a temp file (shared by the CLI and the app), so the
user sees one sentence with the file's path instead of a traceback."""
from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path
from types import TracebackType

ERROR_LOG_PREFIX = "iamnn-studio-error-"


def error_log_pattern() -> str:
    """Where the error logs are written, as a file name pattern (for the user: About, messages)."""
    return str(Path(tempfile.gettempdir()) / f"{ERROR_LOG_PREFIX}*.log")


def write_error_log(kind: type[BaseException], error: BaseException, tb: TracebackType | None,
                    *, heading: str = "IamNN Studio") -> str:
    """The traceback in a temp file; returns its path (or why there is none)."""
    text = f"{heading}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n" + "".join(traceback.format_exception(kind, error, tb))
    try:
        # an argument or path that is not UTF-8 (a lone surrogate) is written as its escape, not a second error
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", errors="backslashreplace", prefix=ERROR_LOG_PREFIX,
                                         suffix=".log", delete=False) as log:
            log.write(text)
            return log.name
    except OSError:
        return "no log: the temp folder is not writable"
