"""A calm placeholder that says what to do when a view has nothing to show yet."""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from . import theme


class EmptyState(QFrame):
    """A title, one explaining sentence and optional buttons, centred in a dashed drop area."""

    def __init__(self, title: str = "", text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("emptyState")
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setStyleSheet(f"font-size: {theme.pt(15)}; font-weight: 600; color: {theme.TEXT};")
        self.text = QLabel(text)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setWordWrap(True)
        self.text.setFixedWidth(560)  # a fixed width lets the wrapped label report its true height
        self.text.setStyleSheet(f"color: {theme.TEXT_MUTED};")
        self._buttons = QHBoxLayout()
        self._buttons.setSpacing(theme.SPACING)
        self._buttons.addStretch(1)
        self._buttons.addStretch(1)
        column = QVBoxLayout(self)
        column.setContentsMargins(theme.MARGIN * 2, theme.MARGIN * 2, theme.MARGIN * 2, theme.MARGIN * 2)
        column.setSpacing(theme.SPACING)
        column.addStretch(1)
        column.addWidget(self.title)
        centred = QHBoxLayout()  # not addWidget(..., AlignHCenter): that would ignore the wrapped height
        centred.addStretch(1)
        centred.addWidget(self.text)
        centred.addStretch(1)
        column.addLayout(centred)
        column.addSpacing(theme.SPACING)
        column.addLayout(self._buttons)
        column.addStretch(2)
        self.set_highlighted(False)

    def set_text(self, title: str, text: str = "") -> None:
        self.title.setText(title)
        self.text.setText(text)
        self.text.setVisible(bool(text))

    def add_action(self, label: str, callback: Callable[[], None]) -> QPushButton:
        button = QPushButton(label)
        button.clicked.connect(callback)
        self._buttons.insertWidget(self._buttons.count() - 1, button)
        return button

    def set_highlighted(self, on: bool) -> None:
        """Show that a drag hovering over the view would be accepted."""
        border = theme.ACCENT if on else theme.BORDER
        background = "#eef3fd" if on else theme.SURFACE
        self.setStyleSheet(
            f"#emptyState {{ border: 2px dashed {border}; border-radius: {theme.CARD_RADIUS + 4}px; "
            f"background: {background}; }}"
        )
