"""The last line of defence: a bug that escapes a slot becomes one sentence in the window and a
log file with the traceback, never a traceback on the terminal and a window that seems to ignore
the click. Expected problems (a bad file, a wrong setting) are handled where they happen; this
only catches what nobody expected.
"""
from __future__ import annotations

import sys
from types import TracebackType
from typing import Callable

from ..crash_log import write_error_log

ErrorHook = Callable[[type[BaseException], BaseException, TracebackType | None], None]


def unexpected_error_sentence(error: BaseException, log_path: str) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    what = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    plugins = sys.modules.get("iamnn_studio.engine.plugins")  # loaded with the engine, if at all
    blame = plugins.plugin_at_fault(error) if plugins is not None else None
    return f"Something went wrong{f' in {blame}' if blame else ''} ({what}); the window still works. Details: {log_path}"


def install_error_hook(show: Callable[[str], None]) -> ErrorHook:
    """Route uncaught exceptions to ``show(sentence)``; Ctrl-C keeps Python's own behaviour."""

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)
            return
        try:
            show(unexpected_error_sentence(error, write_error_log(kind, error, tb)))
        except Exception:  # the window itself is broken: fall back to the terminal
            sys.__excepthook__(kind, error, tb)

    sys.excepthook = hook
    return hook
