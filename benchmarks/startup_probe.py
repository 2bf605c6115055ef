"""Launch the app exactly as ``python -m iamnn_studio`` does and report when its window first paints.

Used by ``bench_startup.py`` as a child process: before handing over to ``iamnn_studio``'s
``__main__``, it wraps ``QMainWindow.show`` so that the first paint of the shown main window
prints ``first-paint <time.monotonic()>`` on stdout and ends the process at once (the engine
is still loading in the background then; ending with ``os._exit`` also skips saving window
settings). Nothing else of the app is changed.
"""
from __future__ import annotations

import os
import runpy
import sys
import time

TIMEOUT_S = 60.0


def install_probe() -> None:
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QMainWindow

    original_show = QMainWindow.show

    class FirstPaint(QObject):
        def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.Paint:
                report(time.monotonic())
            return False

    def report(stamp: float) -> None:
        print(f"first-paint {stamp:.6f}", flush=True)
        os._exit(0)

    def show(self) -> None:
        self._startup_probe = FirstPaint(self)
        self.installEventFilter(self._startup_probe)
        original_show(self)
        QTimer.singleShot(int(TIMEOUT_S * 1000), lambda: (print("no paint", flush=True), os._exit(1)))

    QMainWindow.show = show


if __name__ == "__main__":
    install_probe()
    sys.argv = ["iamnn_studio"]
    runpy.run_module("iamnn_studio", run_name="__main__", alter_sys=True)
