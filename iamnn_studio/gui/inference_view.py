"""The "Use" tab: classify images with a trained checkpoint and see how much compute each took."""
from __future__ import annotations

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget


class InferenceView(QWidget):
    """Drop images, see predictions, iterations per block and halting scores."""

    def load_checkpoint(self, path: str) -> bool:
        return False

    def add_image_files(self, paths: list[str]) -> None:
        pass

    def add_image(self, image: "QImage | object", name: str) -> None:
        pass
