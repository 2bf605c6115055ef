"""Export a checkpoint to ONNX, TorchScript or a plain copy."""
from __future__ import annotations

from PySide6.QtWidgets import QDialog, QWidget


class ExportDialog(QDialog):
    def __init__(self, checkpoint_path: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
