"""An inline message above a view's content: errors and notes without a modal dialog."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from . import theme

_KINDS = {
    "error": (theme.ERROR_SOFT, theme.ERROR),
    "warning": ("#fdf6e7", theme.WARNING),
    "info": ("#eef3fd", theme.ACCENT),
}


class MessageBanner(QFrame):
    """One line (wrapping if long) with a close button; hidden until there is something to say."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBanner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(theme.SPACING, 8, 8, 8)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.kind = ""
        self.hide()

    def show_message(self, text: str, kind: str = "info") -> None:
        background, foreground = _KINDS.get(kind, _KINDS["info"])
        self.kind = kind
        self.setStyleSheet(
            f"#messageBanner {{ background: {background}; border: 1px solid {foreground}; border-radius: 6px; }}"
        )
        self.label.setStyleSheet(f"color: {foreground if kind == 'error' else theme.TEXT};")
        self.label.setText(text)
        self.show()

    def show_error(self, text: str) -> None:
        self.show_message(text, "error")

    def text(self) -> str:
        return self.label.text()
