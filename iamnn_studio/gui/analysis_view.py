"""The "Study" tab: accuracy, compute and adaptivity of one finished run."""
from __future__ import annotations

from PySide6.QtWidgets import QWidget


class AnalysisView(QWidget):
    def show_run(self, run_dir: str) -> None:
        pass
