"""Titled panels that group one figure or table of a view, and small figure tiles for key numbers."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from . import theme


class Section(QFrame):
    """A white card: a bold title, an optional one-line explanation, then ``body`` (a QVBoxLayout)."""

    def __init__(self, title: str, caption: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("section")
        self.setStyleSheet(theme.card_stylesheet("section"))
        self.title = QLabel(title)
        self.title.setStyleSheet(f"font-weight: 600; font-size: {theme.pt(11)}; color: {theme.TEXT};")
        self.caption = QLabel(caption)
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet(f"color: {theme.TEXT_MUTED};")
        self.caption.setVisible(bool(caption))
        self.header = QHBoxLayout()
        self.header.setSpacing(theme.SPACING)
        self.header.addWidget(self.title)
        self.header.addStretch(1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(theme.MARGIN, theme.SPACING, theme.MARGIN, theme.MARGIN)
        outer.setSpacing(6)
        outer.addLayout(self.header)
        outer.addWidget(self.caption)
        self.body = QVBoxLayout()
        self.body.setSpacing(theme.SPACING)
        outer.addLayout(self.body, 1)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        """The height the content needs at the current width (a wrapped caption's own hint is far taller)."""
        hint = super().sizeHint()
        if self.width() > 0 and self.hasHeightForWidth():
            hint.setHeight(self.heightForWidth(self.width()))
        return hint

    def set_caption(self, text: str) -> None:
        self.caption.setText(text)
        self.caption.setVisible(bool(text))


class FigureTile(QFrame):
    """One key number: a small caption, the value in large type and a muted detail line."""

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("figureTile")
        self.setStyleSheet(theme.card_stylesheet("figureTile"))
        # Preferred, not Fixed, vertically: a fixed height is the width-blind size hint, so a detail
        # that wraps onto one more line in a narrow window would be cut off and drawn over the value.
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.caption = QLabel(caption.upper())
        self.caption.setStyleSheet(f"color: {theme.TEXT_MUTED}; font-size: {theme.pt(8)}; font-weight: 600; letter-spacing: 1px;")
        self.value = QLabel("–")
        self.value.setStyleSheet(f"color: {theme.TEXT}; font-size: {theme.pt(17)}; font-weight: 600;")
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setStyleSheet(f"color: {theme.TEXT_MUTED};")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.MARGIN, theme.SPACING, theme.MARGIN, theme.SPACING)
        layout.setSpacing(2)
        layout.addWidget(self.caption)
        layout.addWidget(self.value)
        layout.addWidget(self.detail)
        layout.addStretch(1)
        self.setMinimumHeight(104)

    def set(self, value: str, detail: str = "", color: str | None = None) -> None:
        self.value.setText(value)
        self.value.setStyleSheet(f"color: {color or theme.TEXT}; font-size: {theme.pt(17)}; font-weight: 600;")
        self.detail.setText(detail)
