"""The "Runs" tab: browse past runs in the runs folder."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget


class RunsView(QWidget):
    open_run = Signal(str)
    continue_run = Signal(str)
    use_checkpoint = Signal(str)

    def set_runs_dir(self, path: str) -> None:
        pass

    def refresh(self) -> None:
        pass
