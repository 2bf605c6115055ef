"""How each block of one image decided to stop: halting score per iteration, cumulative score, threshold.

Painted with QPainter: a result card is built and destroyed per dropped image, and four pyqtgraph
plots per card cost ~0.1 s to build and ~60 ms to destroy (a folder of 200 images: 20 s of UI time).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from . import theme

#: The value axis runs from 0 to this (a little over 1, so a score of 1 and its dot stay inside).
Y_TOP = 1.08
#: Over the plot of a block that halts but is limited to one iteration: it has no score to draw.
ONE_ITERATION_CAPTION = "1 iteration: no halting decision"
#: In place of the charts where every block is limited to one iteration (four empty plots said nothing).
ONE_ITERATION_NOTE = ("Every block ran its only iteration: the halting is limited to one iteration per block (by the "
                      "calibration, or the caps), so there was no halting decision to chart.")
#: In place of the charts in the fixed modes (fixed:N, max): grey columns under a halting score axis said nothing
#: the iteration counts above do not.
SET_ITERATIONS_NOTE = ("In this mode every block runs a set number of iterations (counted above): there is no halting "
                       "decision to chart. The adaptive mode charts it.")


@dataclass(frozen=True)
class BlockHalting:
    """What one block's chart shows."""

    scores: tuple[float, ...]  # halting score of each scored iteration (the cap iteration has none)
    cumulative: tuple[float, ...]  # cumulative score after each scored iteration
    ran: int  # iterations run: where the block stopped
    cap: int  # iterations it could have run
    threshold: float | None  # the line the cumulative score is compared with; None: not shown (fixed modes)
    reached: int | None = None  # the iteration whose cumulative score reached the threshold (the engine's say)
    no_valid_score: bool = False  # scored iterations, but none a number (NaN, inf: a diverged model)
    one_iteration: bool = False  # a halting mode, but limited to 1 iteration here: no decision to make


def _finite(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(v for v in (float(x) for x in values) if math.isfinite(v))


def _score(value: float) -> str:
    return f"{value:.2f}"


class HaltingCharts(QWidget):
    """One small chart per block, side by side, or two by two where the row is too narrow for
    every chart's title and axis (a 960 px window).

    Per block: shaded columns = iterations that ran, a dark line after the last one = where the
    block stopped (its number in bold), bars = halting score of each scored iteration, line with
    dots = cumulative score after it, dashed line = the halting threshold.
    """

    HEIGHT = 150  # of a row of charts, at least
    #: A row is this many pixels of plot plus TEXT_LINES lines of the font (title, tick labels, their
    #: gaps): 150 px under the app's 10-pt font; a larger font gets taller rows, not cut-off labels.
    PLOT_PX = 105
    TEXT_LINES = 3
    SPACING = 6
    NOTE_MARGIN = 4  # above and below the note that replaces the charts
    #: The narrowest chart under the 10-pt font (grown with the font): four fit a 1024 px window's card.
    MIN_CHART_PX = 116

    def __init__(self, blocks: int = 4, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.blocks: list[BlockHalting] = [BlockHalting((), (), 0, 1, None) for _ in range(blocks)]
        self.halting_mode = True  # a halting decides the iterations (adaptive), not the mode (fixed:N, max)
        self.columns = max(1, blocks)  # no blocks: one empty column, not a division by zero
        # until the blocks or the font change: every card resize and layout pass asked for it (QA: 13,000 times
        # for 150 cards, each measuring every title and tick label)
        self._chart_width: int | None = None
        self._axis_px: int | None = None  # until the font changes: every point painted asks for it
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Halting per block")
        self.setMouseTracking(False)
        self._fit_height()

    # ------------------------------------------------------------------ data
    def set_halting(self, halting: Sequence[Sequence[float]], cumulative: Sequence[Sequence[float]],
                    iterations: Sequence[int], caps: Sequence[int], threshold: float | None,
                    reached: Sequence[int | None] | None = None) -> None:
        """Show one prediction; ``threshold`` None for a fixed mode (fixed:N, max): a note replaces the charts."""
        blocks = []
        halting_mode = threshold is not None and math.isfinite(threshold)
        for b in range(len(self.blocks)):
            scores = _finite(halting[b]) if b < len(halting) else ()
            no_valid_score = b < len(halting) and len(halting[b]) > 0 and not scores
            shown = halting_mode and (bool(scores) or no_valid_score)
            cap = max(1, int(caps[b])) if b < len(caps) else 1
            blocks.append(BlockHalting(
                scores=scores,
                cumulative=_finite(cumulative[b]) if b < len(cumulative) else (),
                ran=int(iterations[b]) if b < len(iterations) else 0,
                cap=cap,
                threshold=float(threshold) if shown else None,
                reached=reached[b] if reached is not None and b < len(reached) else None,
                no_valid_score=no_valid_score,
                one_iteration=halting_mode and not shown and cap == 1,
            ))
        self.blocks = blocks
        self.halting_mode = halting_mode
        self._chart_width = None
        self.setAccessibleDescription("\n".join(self.summary(b) for b in range(len(blocks))))
        self._fit_columns(self.width())
        self.update()

    def note(self) -> str | None:
        """The line shown instead of the charts, where no block has a halting decision to chart; else None."""
        if not self.blocks:
            return None
        if not self.halting_mode:
            return SET_ITERATIONS_NOTE
        return ONE_ITERATION_NOTE if all(block.one_iteration for block in self.blocks) else None

    def plot_caption(self, b: int) -> str | None:
        """The words over block ``b``'s plot where it has no scores to draw because it cannot decide anything."""
        return ONE_ITERATION_CAPTION if self.blocks[b].one_iteration else None

    def summary(self, b: int) -> str:
        """Block ``b``'s chart in words: its tooltip, and what a screen reader says."""
        block = self.blocks[b]
        name = f"Block {b + 1}"
        if block.one_iteration:  # QA: said "no halting decision in this mode" under Mode "Adaptive"
            return (f"{name} ran {block.ran} of 1 iteration: its halting is limited to one iteration (by the "
                    "calibration, or its cap), so there is no halting decision to make.")
        if block.threshold is None:
            return f"{name} ran {block.ran} of {block.cap} iterations (no halting decision in this mode)."
        if block.no_valid_score:
            return (f"{name} ran {block.ran} of {block.cap} iterations with no valid halting score: every score is "
                    f"NaN or infinite (the model may have diverged), so none could reach the threshold "
                    f"{block.threshold:.3g}.")
        if block.reached is not None:
            reason = (f"its cumulative halting score reached the threshold {block.threshold:.3g}"
                      f" at iteration {block.reached}")
        elif block.ran >= block.cap:
            reason = f"its cumulative halting score stayed under the threshold {block.threshold:.3g}: it ran to its cap"
        else:
            reason = f"its cumulative halting score stayed under the threshold {block.threshold:.3g}: its halting limit"
        lines = [f"{name} stopped after iteration {block.ran} of {block.cap}: {reason}."]
        lines.append("Halting score per iteration: " + ", ".join(_score(s) for s in block.scores) + ".")
        lines.append("Cumulative score: " + ", ".join(_score(c) for c in block.cumulative) + ".")
        if block.ran > len(block.scores):
            lines.append("The last iteration has no score.")
        return "\n".join(lines)

    # ------------------------------------------------------------------ size
    def _title_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(max(1.0, font.pointSizeF() * 0.9))  # 9 pt under the app's 10-pt font
        return font

    def _title(self, b: int) -> str:
        block = self.blocks[b]
        return f"Block {b + 1}  ·  {block.ran} / {block.cap}"

    def row_height(self) -> int:
        return max(self.HEIGHT, self.PLOT_PX + self.TEXT_LINES * self.fontMetrics().lineSpacing())

    def rows(self) -> int:
        return math.ceil(len(self.blocks) / max(1, self.columns))

    def _axis_width(self) -> int:
        if self._axis_px is None:
            metrics = self.fontMetrics()
            self._axis_px = max(metrics.horizontalAdvance(t) for t in ("0", ".5", "1")) + 10
        return self._axis_px

    def minimum_chart_width(self) -> int:
        """The width one chart needs for its title, value axis and iteration numbers."""
        if self._chart_width is None:
            self._chart_width = self._measure_chart_width()
        return self._chart_width

    def _measure_chart_width(self) -> int:
        from iamnn_studio.gui.style import scaled_px

        titles = QFontMetrics(self._title_font())
        title = max((titles.horizontalAdvance(self._title(b)) for b in range(len(self.blocks))), default=0) + 16
        metrics = self.fontMetrics()
        ticks = self._axis_width() + max((len(_tick_steps(block.cap)) * (metrics.horizontalAdvance(str(block.cap)) + 8)
                                          for block in self.blocks), default=0)
        return max(title, ticks, scaled_px(self.MIN_CHART_PX, self.font()))

    def one_row_width(self) -> int:
        """The width all charts need side by side."""
        count = len(self.blocks)
        return max(0, count * self.minimum_chart_width() + self.SPACING * (count - 1))

    def _fit_columns(self, width: int) -> None:
        """All charts in one row where each gets the width it needs, else two per row."""
        count = len(self.blocks)
        one_row = count * self.minimum_chart_width() + self.SPACING * (count - 1) <= width
        self.columns = max(1, count if one_row else min(2, count))
        self._fit_height()

    def _fit_height(self) -> None:
        height = max(0, self.rows() * self.row_height() + (self.rows() - 1) * self.SPACING)
        if self.note() is not None:
            height = self._note_rect(max(self.width(), 1)).height() + 2 * self.NOTE_MARGIN
        if height != self.height() or self.minimumHeight() != height:
            self.setFixedHeight(height)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(self.one_row_width(), self.height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(0 if not self.blocks else 2 * self.minimum_chart_width() + self.SPACING, self.height())

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._chart_width = self._axis_px = None
            self._fit_columns(self.width())
            self.updateGeometry()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit_columns(event.size().width())

    # ------------------------------------------------------------------ geometry
    def chart_rect(self, b: int) -> QRect:
        """Block ``b``'s whole chart: title, axes and plot."""
        column, row = b % self.columns, b // self.columns
        width = (self.width() - self.SPACING * (self.columns - 1)) / self.columns
        left = round(column * (width + self.SPACING))
        right = round(column * (width + self.SPACING) + width)
        top = row * (self.row_height() + self.SPACING)
        return QRect(left, top, right - left, self.row_height())

    def title_rect(self, b: int) -> QRect:
        chart = self.chart_rect(b)
        return QRect(chart.left(), chart.top(), chart.width(), QFontMetrics(self._title_font()).height() + 6)

    def plot_rect(self, b: int) -> QRectF:
        """Where block ``b``'s bars and lines are drawn, inside its axes."""
        chart = self.chart_rect(b)
        top = self.title_rect(b).bottom() + 1 + 4
        bottom = chart.bottom() + 1 - (self.fontMetrics().height() + 6)
        return QRectF(chart.left() + self._axis_width(), top, chart.width() - self._axis_width() - 4, bottom - top)

    def _y_top(self, b: int) -> float:
        cumulative = self.blocks[b].cumulative
        return max(Y_TOP, max(cumulative) + 0.05) if cumulative else Y_TOP

    def x_for(self, b: int, iteration: float) -> float:
        """The x pixel of iteration ``iteration`` (from 1) in block ``b``'s chart: slots 1..cap, each 1 wide."""
        plot = self.plot_rect(b)
        return plot.left() + (iteration - 0.4) / (self.blocks[b].cap + 0.2) * plot.width()

    def y_for(self, b: int, value: float) -> float:
        plot = self.plot_rect(b)
        return plot.bottom() - value / self._y_top(b) * plot.height()

    def halt_x(self, b: int) -> float | None:
        """Where block ``b``'s stop line is drawn: after its last iteration run; None if it ran none."""
        ran = self.blocks[b].ran
        return self.x_for(b, ran + 0.5) if ran > 0 else None

    def iteration_labels(self, b: int) -> list[int]:
        """The iteration numbers under block ``b``'s chart: a handful for a long block, always the one it
        stopped at (bold), without the neighbours it would overlap."""
        block = self.blocks[b]
        ticks = _tick_steps(block.cap)
        if block.ran <= 0 or block.ran in ticks:
            return ticks
        room = self.fontMetrics().horizontalAdvance(str(block.cap)) + 6
        kept = [i for i in ticks if abs(self.x_for(b, i) - self.x_for(b, block.ran)) >= room]
        return sorted(kept + [block.ran])

    def block_at(self, point: QPointF) -> int | None:
        for b in range(len(self.blocks)):
            if self.chart_rect(b).contains(point.toPoint()):
                return b
        return None

    # ------------------------------------------------------------------ painting
    def event(self, event) -> bool:  # noqa: D102
        if event.type() == QEvent.Type.ToolTip:
            b = self.block_at(QPointF(event.pos()))
            if b is None:
                QToolTip.hideText()
                event.ignore()
            else:
                QToolTip.showText(event.globalPos(), self.summary(b), self, self.chart_rect(b))
            return True
        return super().event(event)

    def _note_rect(self, width: int) -> QRect:
        """Where the note goes, wrapped to ``width``."""
        flags = int(Qt.TextFlag.TextWordWrap)
        return self.fontMetrics().boundingRect(QRect(0, self.NOTE_MARGIN, width, 10_000), flags, self.note() or "")

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        if self.note() is not None:
            painter.setPen(QColor(theme.TEXT_MUTED))
            painter.drawText(self.rect().adjusted(0, self.NOTE_MARGIN, 0, -self.NOTE_MARGIN),
                             int(Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignLeft), self.note())
            painter.end()
            return
        try:
            for b in range(len(self.blocks)):
                if self.chart_rect(b).intersects(event.rect()):
                    self._paint_block(painter, b)
        finally:
            painter.end()

    def _paint_block(self, painter: QPainter, b: int) -> None:
        painter.save()
        try:
            # data past the cap (more iterations run or more scores than it) must not spill into the next chart
            painter.setClipRect(self.chart_rect(b))
            self._paint_block_clipped(painter, b)
        finally:
            painter.restore()

    def _paint_block_clipped(self, painter: QPainter, b: int) -> None:
        block = self.blocks[b]
        plot = self.plot_rect(b)
        metrics = self.fontMetrics()
        muted, axis = QColor(theme.PLOT_TEXT), QColor(theme.PLOT_AXIS)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)

        painter.setFont(self._title_font())
        painter.setPen(QColor(theme.TEXT))
        painter.drawText(self.title_rect(b), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                         self._title(b))

        # iterations run: shaded columns
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(theme.BACKGROUND))
        top = self.y_for(b, Y_TOP)
        for i in range(1, block.ran + 1):
            left, right = self.x_for(b, i - 0.45), self.x_for(b, i + 0.45)
            painter.drawRect(QRectF(left, top, right - left, plot.bottom() - top))
        # halting score of each scored iteration: bars in the block's colour
        painter.setBrush(QColor(theme.block_color(b)))
        for i, score in enumerate(block.scores, start=1):
            left, right = self.x_for(b, i - 0.275), self.x_for(b, i + 0.275)
            y = self.y_for(b, max(0.0, score))
            painter.drawRect(QRectF(left, y, right - left, plot.bottom() - y))

        # axes: value ticks on the left, iteration numbers under the plot
        painter.setFont(self.font())
        painter.setPen(QPen(axis, 1))
        painter.drawLine(QPointF(plot.left(), plot.top()), QPointF(plot.left(), plot.bottom()))
        painter.drawLine(QPointF(plot.left(), plot.bottom()), QPointF(plot.right(), plot.bottom()))
        for value, text in ((0.0, "0"), (0.5, ".5"), (1.0, "1")):
            y = self.y_for(b, value)
            painter.setPen(QPen(axis, 1))
            painter.drawLine(QPointF(plot.left() - 4, y), QPointF(plot.left(), y))
            painter.setPen(muted)
            painter.drawText(QRectF(plot.left() - self._axis_width(), y - metrics.height() / 2,
                                    self._axis_width() - 7, metrics.height()),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
        bold = QFont(self.font())
        bold.setBold(True)
        for i in self.iteration_labels(b):
            x = self.x_for(b, i)
            painter.setPen(QPen(axis, 1))
            painter.drawLine(QPointF(x, plot.bottom()), QPointF(x, plot.bottom() + 3))
            stopped_here = i == block.ran
            painter.setFont(bold if stopped_here else self.font())
            painter.setPen(QColor(theme.TEXT) if stopped_here else muted)
            painter.drawText(QRectF(x - 20, plot.bottom() + 3, 40, metrics.height() + 2),
                             Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, str(i))

        # where the block stopped: a dark line after its last iteration
        halt = self.halt_x(b)
        if halt is not None:
            painter.setPen(QPen(QColor(theme.TEXT_MUTED), 2))
            painter.drawLine(QPointF(halt, top), QPointF(halt, plot.bottom()))

        caption = self.plot_caption(b)
        if caption is not None:  # over the shaded column of its one iteration
            painter.setFont(self._title_font())
            painter.setPen(QColor(theme.TEXT_MUTED))
            painter.drawText(plot.adjusted(4, 4, -4, -4), int(Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignCenter),
                             caption)
            painter.setFont(self.font())
        if block.threshold is not None:  # crisp, on a whole pixel row: a blended 1 px dash reads as pink
            painter.setPen(QPen(QColor(theme.ERROR), 1, Qt.PenStyle.DashLine))
            y = round(self.y_for(b, block.threshold))
            painter.drawLine(round(plot.left()) + 1, y, round(plot.right()), y)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if block.cumulative:
            points = [QPointF(self.x_for(b, i), self.y_for(b, c)) for i, c in enumerate(block.cumulative, start=1)]
            path = QPainterPath(points[0])
            for point in points[1:]:
                path.lineTo(point)
            painter.setPen(QPen(QColor(theme.TEXT), 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(path)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(theme.TEXT))
            for point in points:
                painter.drawEllipse(point, 2.5, 2.5)


def _tick_steps(cap: int) -> list[int]:
    """Iteration numbers to label: all of them for short blocks, a handful for long ones."""
    if cap <= 8:
        return list(range(1, cap + 1))
    step = math.ceil(cap / 6)
    ticks = list(range(1, cap + 1, step))
    return ticks if ticks[-1] == cap else ticks + [cap]
