"""A row of small test images with a caption under each (the easy-to-hard spectrum, paper Fig. 3)."""
from __future__ import annotations

from typing import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from . import theme
from .prediction_card import thumbnail_pixmap

TILE = 64


class ImageStrip(QWidget):
    """Thumbnails side by side; each shows its MACs and, when wrong, what the model said."""

    def __init__(self, columns: int = 8, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.columns = columns
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setHorizontalSpacing(8)
        self._grid.setVerticalSpacing(2)
        self.tiles: list[QLabel] = []

    def full_width(self) -> int:
        """The width a full row of tiles takes (known before any tile exists)."""
        return self.columns * TILE + (self.columns - 1) * self._grid.horizontalSpacing()

    def set_items(self, images: Sequence[QImage | None], captions: Sequence[str], tooltips: Sequence[str],
                  wrong: Sequence[bool] | None = None, placeholder: str = "…") -> None:
        """One tile per image; a tile whose image is None shows ``placeholder`` ("…": still loading; "": none
        will come)."""
        while self._grid.count():
            item = self._grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.tiles = []
        for index, (image, caption, tooltip) in enumerate(zip(images, captions, tooltips)):
            row, column = 2 * (index // self.columns), index % self.columns
            tile = QLabel()
            tile.setFixedSize(TILE, TILE)
            tile.setAlignment(Qt.AlignmentFlag.AlignCenter)
            mistaken = bool(wrong[index]) if wrong is not None and index < len(wrong) else False
            border = theme.ERROR if mistaken else theme.BORDER
            tile.setStyleSheet(f"background: {theme.BACKGROUND}; border: 1px solid {border}; border-radius: 3px;")
            pixmap = thumbnail_pixmap(image, TILE - 4)
            if pixmap.isNull():
                tile.setText(placeholder)
            else:
                tile.setPixmap(pixmap)
            tile.setToolTip(tooltip)
            text = QLabel(caption)
            text.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            text.setStyleSheet(f"color: {theme.ERROR if mistaken else theme.TEXT_MUTED}; font-size: {theme.pt(8)};")
            text.setToolTip(tooltip)
            self._grid.addWidget(tile, row, column, Qt.AlignmentFlag.AlignHCenter)
            self._grid.addWidget(text, row + 1, column, Qt.AlignmentFlag.AlignHCenter)
            self.tiles.append(tile)
        self._grid.setColumnStretch(self.columns, 1)
