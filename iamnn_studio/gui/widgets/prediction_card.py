"""A card per classified image: the image, its top-5 classes, compute used and halting per block."""
from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import QEvent, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPixmap, QTextDocument
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import formatting, theme
from .halting_chart import HaltingCharts

THUMBNAIL = 112
#: Joins the words of a phrase that must not break across lines: "(4 of 8)", "the test average".
NBSP = "\u00a0"


def _together(text: str) -> str:
    return text.replace(" ", NBSP)


def one_line_width(label: QLabel) -> int:
    """The width ``label``'s text (rich text too) takes on one line, in its font."""
    if not label.text():
        return 0
    document = QTextDocument()
    document.setDocumentMargin(0)
    document.setDefaultFont(label.font())
    document.setHtml(label.text())  # the card's figures are always rich text (bold numbers, muted notes)
    return int(document.idealWidth() + 0.999) + 2  # rounding, and the label's own slack


class FigureRow(QWidget):
    """A card's two figures, iterations and compute: side by side where both fit on one line (3 : 2,
    as wide as they need), else one under the other; neither is broken mid-phrase while it fits its line."""

    GAP = theme.SPACING * 2
    LINE_GAP = 2

    def __init__(self, first: QLabel, second: QLabel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.first, self.second = first, second
        for label in (first, second):
            label.setParent(self)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self._widths = (0, 0)  # one-line widths of the two texts
        # heightForWidth by width, until the texts or the font change: every layout pass of the card list asked
        # each card again, and a rich-text label lays its text out for each answer (QA: 20,000 calls for 150 cards)
        self._heights: dict[int, int] = {}

    def refit(self) -> None:
        """The texts changed: measure them again and lay them out."""
        self._widths = (one_line_width(self.first), one_line_width(self.second))
        self._heights.clear()
        self.updateGeometry()
        self._place(self.width())

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._heights.clear()

    def stacked(self, width: int | None = None) -> bool:
        """Whether the second figure goes under the first at ``width`` (default: the current one)."""
        first, second = self._widths
        width = self.width() if width is None else width
        return bool(second) and first + self.GAP + second > width

    def _columns(self, width: int) -> tuple[int, int]:
        first, second = self._widths
        if not second:  # one figure (a waiting image's note): the whole width, wrapping if it must
            return width, 0
        left = max(first, min((width - self.GAP) * 3 // 5, width - self.GAP - second))
        return left, max(0, width - self.GAP - left)

    def _place(self, width: int) -> None:
        if self.stacked(width):
            top = self.first.heightForWidth(width)
            self.first.setGeometry(0, 0, width, top)
            self.second.setGeometry(0, top + self.LINE_GAP, width, self.second.heightForWidth(width))
        else:
            left, right = self._columns(width)
            self.first.setGeometry(0, 0, left, self.first.heightForWidth(left))
            self.second.setGeometry(left + self.GAP, 0, right, self.second.heightForWidth(right))

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt name)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt name)
        if width not in self._heights:
            self._heights[width] = self._height_for(width)
        return self._heights[width]

    def _height_for(self, width: int) -> int:
        if self.stacked(width):
            second = self.second.heightForWidth(width) if self.second.text() else 0
            return self.first.heightForWidth(width) + (self.LINE_GAP + second if second else 0)
        left, right = self._columns(width)
        return max(self.first.heightForWidth(left), self.second.heightForWidth(right) if self.second.text() else 0)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        first, second = self._widths
        width = first + (self.GAP + second if second else 0)
        return QSize(width, self.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(120, self.first.fontMetrics().lineSpacing())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._place(self.width())


class ProbabilityBars(QWidget):
    """Top-k classes as labelled horizontal bars with their probability."""

    ROW = 20  # the least row height, in pixels; a larger font gets its line spacing and a margin
    #: The widest class name shown whole, in average (bold) characters; longer ones are elided.
    LABEL_CHARS = 20
    #: The bars' width the widget asks for under the 10-pt font, grown with the font: a fixed 300 px
    #: widget left 14-pt bars ~20 px wide beside long class names, where 90 % and 10 % looked alike.
    BAR_PX = 120

    def __init__(self, rows: int = 5, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows = rows
        self._items: list[tuple[str, float]] = []
        self._size_hint: QSize | None = None  # until the items or the font change: asked at every card resize
        self.setMinimumWidth(230)  # the bars shrink before a card needs a sideways scroll bar
        self.setFixedHeight(rows * self.row_height())

    def _bold_metrics(self) -> QFontMetrics:
        bold = QFont(self.font())
        bold.setBold(True)
        return QFontMetrics(bold)

    def row_height(self) -> int:
        """A row fits a line of the widget's (bold) font with room above and below: a fixed 20 px made
        the rows of a 14-pt font touch and their bars run into the text."""
        return max(self.ROW, self._bold_metrics().lineSpacing() + 4)

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._size_hint = None
            self.setFixedHeight(self._rows * self.row_height())

    def set_items(self, items: Sequence[tuple[str, float]]) -> None:
        self._items = [(str(label), float(prob)) for label, prob in list(items)[: self._rows]]
        self._size_hint = None
        self.updateGeometry()  # longer class names ask for a wider widget
        self.update()

    def items(self) -> list[tuple[str, float]]:
        return list(self._items)

    def sizeHint(self) -> QSize:
        """Room for the class names (the longest elided at LABEL_CHARS), bars of BAR_PX and the percentages."""
        from iamnn_studio.gui.style import scaled_px

        if self._size_hint is None:
            label, value = self._label_width(), self._value_width()
            self._size_hint = QSize(max(300, label + scaled_px(self.BAR_PX, self.font()) + value),
                                    self._rows * self.row_height())
        return QSize(self._size_hint)

    def _label_width(self) -> int:
        metrics = self._bold_metrics()  # the widest (bold) row decides the label column
        widest = max((metrics.horizontalAdvance(label) for label, _ in self._items), default=40) + 10
        return min(max(150, self.LABEL_CHARS * metrics.averageCharWidth()), widest)

    def _value_width(self) -> int:
        return self._bold_metrics().horizontalAdvance("100.0 %") + 6

    def columns(self) -> tuple[int, int, int]:
        """Widths of the class names, the bars and the percentages; together never wider than the widget."""
        label_width, value_width = self._label_width(), self._value_width()
        label_width = max(40, min(label_width, self.width() - value_width - 20))  # the percentage is never cut off
        bar_width = max(20, self.width() - label_width - value_width)
        return label_width, bar_width, value_width

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = self._bold_metrics()
        label_width, bar_width, value_width = self.columns()
        row_height = self.row_height()
        for row, (label, prob) in enumerate(self._items):
            top = row * row_height
            text_rect = QRectF(0, top, label_width - 8, row_height)
            painter.setPen(QColor(theme.TEXT if row == 0 else theme.TEXT_MUTED))
            font = QFont(painter.font())
            font.setBold(row == 0)
            painter.setFont(font)
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             metrics.elidedText(label, Qt.TextElideMode.ElideRight, int(text_rect.width())))
            track = QRectF(label_width, top + 5, bar_width, row_height - 10)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(theme.BACKGROUND))
            painter.drawRoundedRect(track, 3, 3)
            painter.setBrush(QColor(theme.ACCENT if row == 0 else theme.ACCENT_SOFT))
            painter.drawRoundedRect(QRectF(track.left(), track.top(), max(2.0, bar_width * prob), track.height()), 3, 3)
            painter.setPen(QColor(theme.TEXT_MUTED))
            painter.drawText(QRectF(label_width + bar_width, top, value_width, row_height),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, formatting.percent(prob))
        painter.end()


def thumbnail_pixmap(image: QImage | None, size: int = THUMBNAIL) -> QPixmap:
    """Scale for display: tiny dataset images keep crisp pixels, photos are smoothed."""
    if image is None or image.isNull():
        return QPixmap()
    smooth = image.width() > size or image.height() > size
    mode = Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
    return QPixmap.fromImage(image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode))


class _Card(QFrame):
    removed = Signal(object)  # the card

    def __init__(self, name: str, object_name: str, background: str, border: str, parent=None) -> None:
        super().__init__(parent)
        self.name = name
        self.setObjectName(object_name)
        self.setStyleSheet(theme.card_stylesheet(object_name, background, border))
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setToolTip("Remove this image")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(lambda: self.removed.emit(self))

    def _name_label(self) -> QLabel:
        label = QLabel(self.name)
        label.setToolTip(self.name)
        label.setStyleSheet(f"font-weight: 600; color: {theme.TEXT};")
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setMinimumWidth(40)
        label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        return label


class PredictionCard(_Card):
    """One image's answer: thumbnail, top-5, iterations per block, MACs and halting charts."""

    def __init__(self, name: str, image: QImage | None, parent: QWidget | None = None) -> None:
        super().__init__(name, "predictionCard", theme.SURFACE, theme.BORDER, parent)
        self.thumbnail = QLabel()
        self.thumbnail.setFixedSize(THUMBNAIL, THUMBNAIL)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setStyleSheet(f"background: {theme.BACKGROUND}; border-radius: 4px;")
        self.set_image(image)
        self.title = self._name_label()
        self.probabilities = ProbabilityBars()
        self.iterations_label = QLabel()
        self.iterations_label.setToolTip("Iterations each block ran, out of its cap")
        self.macs_label = QLabel()
        self.macs_label.setToolTip("Multiply-accumulates this image cost, against the mean of the run's "
                                  "evaluation (or the mode's maximum, without one)")
        for label in (self.iterations_label, self.macs_label):
            label.setStyleSheet(f"color: {theme.TEXT};")
            label.setWordWrap(True)  # on a narrow window the figures wrap instead of widening the card
        self.notes_label = QLabel()  # how the image was adapted to the model: colours, size, transparency
        self.notes_label.setWordWrap(True)
        self.notes_label.setToolTip("What was done to the image so the model could read it")
        self.notes_label.hide()
        self.charts = HaltingCharts()
        self.prediction: Any = None

        left = QVBoxLayout()
        left.setSpacing(6)
        left.addWidget(self.thumbnail)
        left.addStretch(1)

        middle = QVBoxLayout()
        middle.setSpacing(6)
        middle.addWidget(self.title)
        middle.addWidget(self.probabilities)
        middle.addWidget(self.notes_label)
        middle.addStretch(1)

        self._right = QVBoxLayout()
        self._right.setSpacing(4)
        self.figures = FigureRow(self.iterations_label, self.macs_label)
        stats = QHBoxLayout()
        stats.setSpacing(theme.SPACING * 2)
        stats.addWidget(self.figures, 1, Qt.AlignmentFlag.AlignVCenter)  # one line: level with the ✕
        stats.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self._right.addLayout(stats)
        self._right.addWidget(self.charts, 1)
        self._right.addStretch(0)

        self._top = QHBoxLayout()
        self._top.setSpacing(theme.MARGIN)
        self._top.addLayout(left)
        self._top.addLayout(middle, 0)
        self._top.addLayout(self._right, 1)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(theme.SPACING, theme.SPACING, theme.SPACING, theme.SPACING)
        self._layout.setSpacing(theme.SPACING)
        self._layout.addLayout(self._top)
        self.charts_below = False
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def _fit_charts(self, width: int) -> None:
        """The halting charts beside the top-5 where all four fit one row there, else under the whole card
        in one row: two by two beside them, a 960 px window's card squeezed the top-5 bars to ~20 px under
        a 14-pt font, and was taller. A note in place of the charts (no halting decision to chart) wraps to any
        width: it stays beside the top-5, under the iteration counts it refers to."""
        beside = (width - 2 * theme.SPACING - THUMBNAIL - self.probabilities.sizeHint().width()
                  - 2 * theme.MARGIN)
        below = self.charts.note() is None and beside < self.charts.one_row_width()
        if below == self.charts_below:
            return
        self.charts_below = below
        (self._right if below else self._layout).removeWidget(self.charts)
        if below:
            self._layout.addWidget(self.charts)
        else:
            self._right.insertWidget(1, self.charts, 1)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._fit_charts(event.size().width())

    def set_image(self, image: QImage | None) -> None:
        pixmap = thumbnail_pixmap(image)
        if pixmap.isNull():
            self.thumbnail.setText("no preview")
        else:
            self.thumbnail.setPixmap(pixmap)

    def set_pending(self, message: str) -> None:
        """Shown before a checkpoint is open: the image waits to be classified."""
        self.prediction = None
        self.probabilities.set_items([])
        self.iterations_label.setText(theme.muted(message))
        self.macs_label.setText("")
        self.figures.refit()
        self.charts.hide()

    def set_prediction(self, prediction: Any, mean_test_macs: float | None, *, halts: bool = True,
                       average_word: str = "test") -> None:
        """Fill the card from an engine ``Prediction``; ``halts=False`` for a model without halting (the
        ResNet baseline): its units per block instead of iterations, and no halting charts. ``average_word``
        names the images ``mean_test_macs`` was measured on ("held-out" where the run had no test split)."""
        self.prediction = prediction
        self.probabilities.set_items(prediction.top)
        iterations = [int(n) for n in prediction.iterations]
        caps = [int(n) for n in prediction.caps]
        if halts:
            self.iterations_label.setText(
                "Iterations  " + "  ·  ".join(f"<b>{n}</b>{_together(' / ')}{cap}" for n, cap in zip(iterations, caps))
                + f"   {theme.muted(_together(f'({sum(iterations)} of {sum(caps)})'))}"
            )
        else:
            self.iterations_label.setText("Units per block  " + "  ·  ".join(f"<b>{n}</b>" for n in caps)
                                          + f"   {theme.muted('(every image runs all of them)')}")
        self.macs_label.setText(describe_macs(prediction.macs, mean_test_macs, getattr(prediction, "macs_range", None),
                                              average_word=average_word))
        self.figures.refit()
        notes = list(getattr(prediction, "notes", None) or [])
        self.notes_label.setText(theme.muted("Input: " + "; ".join(notes)) if notes else "")
        self.notes_label.setVisible(bool(notes))
        self.charts.setVisible(halts)
        if halts:
            self.charts.set_halting(prediction.halting, prediction.cumulative, iterations, caps, prediction.threshold,
                                    getattr(prediction, "reached", None))
        self._fit_charts(self.width())  # the class names' and the charts' widths changed


def describe_macs(value: float, mean_test_macs: float | None, macs_range: Sequence[float] | None = None, *,
                  average_word: str = "test") -> str:
    """"3.9 M MACs · 0.62× the test average" ("the held-out average" for an evaluation on held-out images), or
    against the model's maximum when no average is known."""
    text = f"<b>{_together(formatting.macs(value))}</b>"
    if mean_test_macs:
        ratio = formatting.ratio(float(value) / float(mean_test_macs))
        return text + theme.muted(f"  ·  {_together(f'{ratio} the {average_word} average')}")
    if macs_range and len(macs_range) == 2 and macs_range[1]:
        share = formatting.percent(float(value) / float(macs_range[1]), 0)
        return text + theme.muted(f"  ·  {_together(f'{share} of the maximum')}")
    return text


class ErrorCard(_Card):
    """A file that could not be classified, with the one-line reason."""

    def __init__(self, name: str, message: str, parent: QWidget | None = None) -> None:
        super().__init__(name, "errorCard", theme.ERROR_SOFT, theme.ERROR, parent)
        self.message = message
        title = self._name_label()
        self.message_label = QLabel(message)
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet(f"color: {theme.ERROR};")
        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(title)
        text.addWidget(self.message_label)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(theme.SPACING, 8, theme.SPACING, 8)
        layout.addLayout(text, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
