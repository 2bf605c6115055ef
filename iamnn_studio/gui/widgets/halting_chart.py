"""How each block of one image decided to stop: halting score per iteration, cumulative score, threshold."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt, QTimer

from . import theme


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


class HaltingCharts(pg.GraphicsLayoutWidget):
    """One small chart per block, side by side (one graphics view for all four: cheap per card), or
    two by two where the row is too narrow for every chart's title and axis (a 960 px window).

    Per block: shaded columns = iterations that ran, bars = halting score of each scored
    iteration, line = cumulative score after it, dashed line = the halting threshold.
    """

    HEIGHT = 150  # of a row of charts, at least
    #: A row is this many pixels of plot plus TEXT_LINES lines of the font (title, tick labels, their
    #: gaps): 150 px under the app's 10-pt font; a larger font gets taller rows, not cut-off labels.
    PLOT_PX = 105
    TEXT_LINES = 3
    SPACING = 6
    plots: Sequence[pg.PlotItem] = ()  # none yet while the base class's constructor resizes the view

    def __init__(self, blocks: int = 4, parent=None) -> None:
        super().__init__(parent=parent, show=False)
        self.setBackground(theme.SURFACE)
        self.ci.layout.setSpacing(self.SPACING)
        self.ci.setContentsMargins(0, 0, 0, 0)
        self.plots: list[pg.PlotItem] = []
        self.ran_columns: list[pg.BarGraphItem] = []
        self.score_bars: list[pg.BarGraphItem] = []
        self.cumulative_curves: list[pg.PlotDataItem] = []
        self.threshold_lines: list[pg.InfiniteLine] = []
        self.columns = blocks
        self._refit = QTimer(self, singleShot=True, interval=0)
        self._refit.timeout.connect(self._fit_columns)
        for b in range(blocks):
            plot = self.addPlot(row=0, col=b)
            theme.style_plot(plot, title=f"Block {b + 1}")
            plot.setMouseEnabled(False, False)
            plot.getAxis("left").setWidth(28)
            plot.getAxis("left").setTicks([[(0, "0"), (0.5, ".5"), (1, "1")]])
            plot.setYRange(0, 1.08, padding=0)
            ran = pg.BarGraphItem(x=[], height=[], width=0.9, brush=pg.mkBrush(theme.BACKGROUND), pen=pg.mkPen(None))
            bars = pg.BarGraphItem(x=[], height=[], width=0.55, brush=pg.mkBrush(theme.block_color(b)),
                                   pen=pg.mkPen(None))
            curve = pg.PlotDataItem(pen=pg.mkPen(theme.TEXT, width=1), symbol="o", symbolSize=5,
                                    symbolBrush=theme.TEXT, symbolPen=None)
            line = pg.InfiniteLine(angle=0, pen=pg.mkPen(theme.ERROR, width=1, style=Qt.PenStyle.DashLine))
            for item in (ran, bars, curve, line):
                plot.addItem(item)
            self.plots.append(plot)
            self.ran_columns.append(ran)
            self.score_bars.append(bars)
            self.cumulative_curves.append(curve)
            self.threshold_lines.append(line)
        self._fit_axes()
        self.setFixedHeight(self.row_height())

    def _fit_axes(self) -> None:
        """The iteration numbers' axis as tall as a line of the font (pyqtgraph keeps 20 px, so a
        larger font's numbers hung below it and off the chart)."""
        height = math.ceil(self.fontMetrics().height()) + 5
        for plot in self.plots:
            plot.getAxis("bottom").setHeight(max(20, height))

    def row_height(self) -> int:
        return max(self.HEIGHT, self.PLOT_PX + self.TEXT_LINES * self.fontMetrics().lineSpacing())

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange and self.plots:
            self._fit_axes()
            self.setFixedHeight(self.rows() * self.row_height() + (self.rows() - 1) * self.SPACING)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name): the fixed height, not a graphics view's 480 px
        return QSize(super().sizeHint().width(), self.height())

    def rows(self) -> int:
        return math.ceil(len(self.plots) / self.columns)

    def _fit_columns(self) -> None:
        """All charts in one row where each gets the width its title and axis need, else two per row."""
        needed = sum(plot.effectiveSizeHint(Qt.SizeHint.MinimumSize).width() for plot in self.plots)
        one_row = needed + self.SPACING * (len(self.plots) - 1) <= self.viewport().width()
        columns = len(self.plots) if one_row else min(2, len(self.plots))
        if columns == self.columns:
            return
        self.columns = columns
        for plot in self.plots:
            self.ci.removeItem(plot)
        for b, plot in enumerate(self.plots):
            self.ci.addItem(plot, row=b // columns, col=b % columns)
        self.setFixedHeight(self.rows() * self.row_height() + (self.rows() - 1) * self.SPACING)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        if self.plots:
            # After this event: a height set inside it would not reach the view's viewport, which would
            # go on showing the old rows.
            self._refit.start()

    def set_halting(self, halting: Sequence[Sequence[float]], cumulative: Sequence[Sequence[float]],
                    iterations: Sequence[int], caps: Sequence[int], threshold: float | None) -> None:
        """Show one prediction; blocks without halting scores (fixed mode) show only the columns run."""
        for b, plot in enumerate(self.plots):
            cap = int(caps[b]) if b < len(caps) else 1
            ran = int(iterations[b]) if b < len(iterations) else 0
            scores = _finite(halting[b]) if b < len(halting) else np.empty(0)
            cum = _finite(cumulative[b]) if b < len(cumulative) else np.empty(0)
            x_ran = np.arange(1, ran + 1, dtype=np.float64)
            self.ran_columns[b].setOpts(x=x_ran, height=np.full(ran, 1.08))
            self.score_bars[b].setOpts(x=np.arange(1, scores.size + 1, dtype=np.float64), height=scores)
            self.cumulative_curves[b].setData(np.arange(1, cum.size + 1, dtype=np.float64), cum)
            if threshold is None or not math.isfinite(threshold) or scores.size == 0:
                self.threshold_lines[b].hide()
            else:
                self.threshold_lines[b].setValue(float(threshold))
                self.threshold_lines[b].show()
            top = max(1.08, float(cum.max()) + 0.05) if cum.size else 1.08
            plot.setYRange(0, top, padding=0)
            plot.setXRange(0.4, cap + 0.6, padding=0)
            plot.getAxis("bottom").setTicks([[(i, str(i)) for i in _tick_steps(cap)]])
            plot.setTitle(f"Block {b + 1}  ·  {ran} / {cap}", color=theme.TEXT, size=theme.pt(9))
        self._fit_columns()  # the titles' widths changed


def _tick_steps(cap: int) -> list[int]:
    """Iteration numbers to label: all of them for short blocks, a handful for long ones."""
    if cap <= 8:
        return list(range(1, cap + 1))
    step = math.ceil(cap / 6)
    ticks = list(range(1, cap + 1, step))
    return ticks if ticks[-1] == cap else ticks + [cap]
