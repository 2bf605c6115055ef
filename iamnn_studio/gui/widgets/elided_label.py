"""A one-line label that shortens its text with "…" to the width it gets, instead of widening the window."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """``text()`` is the whole text; the label shows as much as fits and the whole text as its tooltip
    when shortened. Its minimum width is a few characters, so a long run name cannot push a page wider
    than the window."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self._own_tooltip = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setWordWrap(False)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        self._full = text or ""
        self._elide()

    def text(self) -> str:  # the whole text, not what fits
        return self._full

    def shown_text(self) -> str:
        """What the label shows now (ends with "…" when shortened)."""
        return super().text()

    def is_elided(self) -> bool:
        return self.shown_text() != self._full

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt name)
        self._own_tooltip = text or ""
        self._update_tooltip()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        metrics = self.fontMetrics()
        margins = self.contentsMargins()
        return QSize(metrics.horizontalAdvance(self._full) + margins.left() + margins.right() + 2,
                     super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(self.fontMetrics().horizontalAdvance("M" * 4 + "…"), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name): the font (style sheet) sets the width
        super().changeEvent(event)
        if event.type() in (event.Type.FontChange, event.Type.StyleChange):
            self._elide()

    def _elide(self) -> None:
        margins = self.contentsMargins()
        width = max(0, self.width() - margins.left() - margins.right())
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width)
        if shown != super().text():
            super().setText(shown)
        self._update_tooltip()

    def _update_tooltip(self) -> None:
        parts = [self._full] if self.is_elided() else []
        if self._own_tooltip:
            parts.append(self._own_tooltip)
        super().setToolTip("\n".join(parts))
