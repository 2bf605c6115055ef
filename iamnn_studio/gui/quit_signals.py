"""SIGTERM (logout, ``kill``, a service manager) and Ctrl-C in the launching terminal quit the app cleanly.

Python runs its signal handlers only between bytecodes of the main thread, and while Qt's event loop
waits in C++ that never happens: by default Ctrl-C does nothing until the next event and SIGTERM kills
the process on the spot, leaving a training run's status at "running". Python's C-level handler writes
each signal to a wakeup socket; a ``QSocketNotifier`` on it wakes the loop, the Python handler runs and
ends the event loop. ``app.main`` then stops a running training run with a checkpoint
(``TrainingView.stop_at_exit``), as when the window is closed.
"""
from __future__ import annotations

import signal
import socket
import threading
from typing import Callable

QUIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def quit_on_signals(app, quit: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """Make SIGTERM and SIGINT call ``quit`` (default ``app.quit``) from the event loop. Returns what
    undoes it, or None where signals cannot be handled (not the main thread)."""
    from PySide6.QtCore import QSocketNotifier

    if threading.current_thread() is not threading.main_thread():
        return None
    quit = quit or app.quit
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, app)

    def drain() -> None:  # waking the interpreter is the point: the Python handler runs right after
        try:
            reader.recv(256)
        except OSError:
            pass

    notifier.activated.connect(drain)
    previous = {sig: signal.signal(sig, lambda *_: quit()) for sig in QUIT_SIGNALS}

    app._quit_signal_plumbing = (reader, writer, notifier)  # alive as long as the app: a closed socket is a dead fd

    def undo() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        notifier.setEnabled(False)
        notifier.deleteLater()
        reader.close()
        writer.close()
        app._quit_signal_plumbing = None

    return undo
