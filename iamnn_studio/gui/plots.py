"""Live plots that stay cheap while a run streams data in.

Events append points to numpy buffers (``BufferedCurve.append``); one ``PlotRefresher`` timer
(250 ms) pushes only the curves that changed into their ``PlotDataItem`` with ``setData``. Items are
created once and never cleared and re-plotted (that leaks on PySide6, pyqtgraph#2672); pens are
1 px, and long curves are clipped to the view and downsampled automatically.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Slot

from .style import COLORS

REFRESH_MS = 250


class BufferedCurve:
    """A growing (x, y) series bound to one PlotDataItem; ``flush`` redraws it if it changed."""

    def __init__(self, item: pg.PlotDataItem, capacity: int = 256) -> None:
        self.item = item
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self._n = 0
        self.dirty = False

    def __len__(self) -> int:
        return self._n

    def append(self, x: float, y: float | None) -> None:
        """Add one point; None (a metric the run does not report) becomes a gap (NaN)."""
        if self._n == len(self._x):
            self._x = np.resize(self._x, 2 * len(self._x))
            self._y = np.resize(self._y, 2 * len(self._y))
        self._x[self._n] = x
        self._y[self._n] = np.nan if y is None else y
        self._n += 1
        self.dirty = True

    def clear(self) -> None:
        self._n = 0
        self.dirty = True

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        return self._x[: self._n], self._y[: self._n]

    def last(self) -> float | None:
        return float(self._y[self._n - 1]) if self._n else None

    def flush(self) -> None:
        if self.dirty:
            x, y = self.data()
            self.item.setData(x, y, connect="finite")
            self.dirty = False


class PlotRefresher(QObject):
    """One timer for many curves: redraws the dirty ones every ``interval_ms`` (never per event)."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = REFRESH_MS) -> None:
        super().__init__(parent)
        self._curves: list[BufferedCurve] = []
        self._callbacks: list = []
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()

    def track(self, curves: Iterable[BufferedCurve]) -> None:
        self._curves.extend(curves)

    def on_refresh(self, callback) -> None:
        """Also call ``callback()`` on every tick (labels, progress: throttled like the plots)."""
        self._callbacks.append(callback)

    @Slot()
    def refresh(self) -> None:
        for curve in self._curves:
            curve.flush()
        for callback in self._callbacks:
            callback()


def style_plot(plot: pg.PlotItem, title: str, y_label: str = "", x_label: str = "") -> pg.PlotItem:
    """The app's plot look: small title, light grid, no mouse menu, long curves downsampled."""
    plot.setTitle(f"<span style='color:{COLORS['text']};font-size:9pt;font-weight:600'>{title}</span>")
    plot.showGrid(x=True, y=True, alpha=0.12)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(COLORS["border_strong"], width=1))
        axis.setTextPen(pg.mkPen(COLORS["text_muted"]))
    if y_label:
        plot.setLabel("left", y_label, color=COLORS["text_muted"])
    if x_label:
        plot.setLabel("bottom", x_label, color=COLORS["text_muted"])
    plot.getViewBox().setMouseEnabled(x=False, y=False)
    return plot


def add_curve(
    plot: pg.PlotItem, color: str, name: str | None = None, *, dashed: bool = False, symbol: str | None = None
) -> BufferedCurve:
    """A 1-px curve (optionally with small markers, for sparse series such as per-epoch values)."""
    pen = pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
    kwargs = {}
    if symbol:
        kwargs = dict(symbol=symbol, symbolSize=5, symbolBrush=color, symbolPen=pg.mkPen(color, width=1))
    item = plot.plot([], [], pen=pen, name=name, **kwargs)
    return BufferedCurve(item)


def add_level_line(plot: pg.PlotItem, value: float, color: str) -> pg.InfiniteLine:
    """A dashed horizontal line at ``value`` (e.g. a block's iteration cap) in ``color``."""
    line = pg.InfiniteLine(pos=value, angle=0, pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine))
    plot.addItem(line)
    return line


def add_legend(plot: pg.PlotItem) -> pg.LegendItem:
    legend = plot.addLegend(offset=(-8, 8), labelTextSize="8pt", labelTextColor=COLORS["text_muted"])
    legend.setBrush(pg.mkBrush(255, 255, 255, 200))
    return legend
