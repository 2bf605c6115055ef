"""The Study view's figures: iteration histograms, per-class accuracy, the accuracy-vs-MACs curve.

Every chart creates its plot items once and ``setData``s them, as the rest of the app does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt

from ..plots import LogAxis
from . import formatting, theme


class _FixedHeightLayout(pg.GraphicsLayoutWidget):
    """A row of plots of one fixed height that also reports it as its size hint.

    A graphics view's default hint is 480 px tall, and stacked widgets and height-for-width
    layouts read the hint, not the fixed height: without this the card around it grows.
    """

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(super().sizeHint().width(), self.minimumHeight())


class IterationHistograms(_FixedHeightLayout):
    """Paper Figure 2: how many test images ran n iterations, per block; dashed line = the cap."""

    def __init__(self, blocks: int = 4, parent=None) -> None:
        super().__init__(parent=parent, show=False)
        self.setBackground(theme.PLOT_BACKGROUND)
        self.ci.layout.setSpacing(10)
        self.plots: list[pg.PlotItem] = []
        self.bars: list[pg.BarGraphItem] = []
        self.cap_lines: list[pg.InfiniteLine] = []
        for b in range(blocks):
            plot = self.addPlot(row=0, col=b, enableMenu=False)
            theme.style_plot(plot, title=f"Block {b + 1}", bottom="iterations")
            plot.setMouseEnabled(False, False)
            plot.getAxis("left").setWidth(34)
            bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush=pg.mkBrush(theme.block_color(b)), pen=pg.mkPen(None))
            cap = pg.InfiniteLine(angle=90, pen=pg.mkPen(theme.TEXT_MUTED, width=1, style=Qt.PenStyle.DashLine))
            plot.addItem(bars)
            plot.addItem(cap)
            self.plots.append(plot)
            self.bars.append(bars)
            self.cap_lines.append(cap)
        self.setFixedHeight(200)

    def set_histograms(self, histograms: Sequence[Sequence[int]], caps: Sequence[int],
                       means: Sequence[float] | None = None) -> None:
        for b, plot in enumerate(self.plots):
            counts = np.asarray(histograms[b] if b < len(histograms) else [], dtype=np.float64)
            cap = int(caps[b]) if b < len(caps) else max(len(counts), 1)
            share = counts / counts.sum() * 100 if counts.sum() else counts
            self.bars[b].setOpts(x=np.arange(1, len(share) + 1, dtype=np.float64), height=share)
            self.cap_lines[b].setValue(cap + 0.5)
            plot.setXRange(0.4, cap + 0.9, padding=0)
            plot.setYRange(0, max(float(share.max()) if share.size else 0.0, 1.0) * 1.12, padding=0)
            ticks = list(range(1, cap + 1)) if cap <= 8 else sorted({1, *range(0, cap + 1, max(1, cap // 5))[1:], cap})
            plot.getAxis("bottom").setTicks([[(i, str(i)) for i in ticks]])
            mean = f"  ·  mean {means[b]:.2f}" if means is not None and b < len(means) else ""
            plot.setTitle(f"Block {b + 1}{mean}", color=theme.TEXT, size=theme.pt(9))


class ClassAccuracyBars(pg.PlotWidget):
    """Test accuracy of every class as horizontal bars, class names on the left."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent, background=theme.PLOT_BACKGROUND, enableMenu=False)
        self.setMouseEnabled(False, False)
        plot = self.getPlotItem()
        theme.style_plot(plot, bottom="accuracy (%)")
        plot.invertY(True)
        self.bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.68, brush=pg.mkBrush(theme.ACCENT), pen=pg.mkPen(None))
        plot.addItem(self.bars)
        self.labels: list[pg.TextItem] = []
        self.values: list[float] = []

    def set_accuracies(self, per_class: dict[str, float | None]) -> None:
        names = list(per_class)
        values = [100 * float(v) if v is not None else 0.0 for v in per_class.values()]
        self.values = values
        plot = self.getPlotItem()
        self.bars.setOpts(x0=np.zeros(len(values)), y=np.arange(len(values), dtype=np.float64),
                          width=np.asarray(values, dtype=np.float64))
        plot.getAxis("left").setTicks([[(i, _short(name, 18)) for i, name in enumerate(names)]])
        plot.setXRange(0, 100, padding=0.02)
        plot.setYRange(-0.6, len(values) - 0.4, padding=0)
        for label in self.labels:
            plot.removeItem(label)
        self.labels = []
        for i, (value, raw) in enumerate(zip(values, per_class.values())):
            text = pg.TextItem(formatting.percent(raw, 1) if raw is not None else "no images",
                               color=theme.TEXT_MUTED, anchor=(1.05 if value > 25 else -0.05, 0.5))
            text.setColor(theme.SURFACE if value > 25 else theme.TEXT_MUTED)
            text.setPos(value, i)
            plot.addItem(text)
            self.labels.append(text)


#: Percentage points an accuracy axis spans at least.
MIN_ACCURACY_SPAN = 2.0


class SweepCurve(pg.PlotWidget):
    """Accuracy against mean MACs: the halting-threshold sweep beside the fixed-iteration settings.

    No legend box (it would sit on a curve): the section's caption names the colours.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent, background=theme.PLOT_BACKGROUND, enableMenu=False)
        self.setMouseEnabled(False, False)
        plot = self.getPlotItem()
        theme.style_plot(plot, left="top-1 accuracy (%)", bottom="mean MACs per image (M)")
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.getViewBox().setDefaultPadding(0.08)  # room for the point labels at the edges
        # equal accuracies (a collapsed halting) must not zoom the axis into rounding noise
        plot.getViewBox().setLimits(minYRange=MIN_ACCURACY_SPAN)
        self.threshold_curve = plot.plot(pen=pg.mkPen(theme.ACCENT, width=1), symbol="o", symbolSize=6,
                                         symbolBrush=theme.ACCENT, symbolPen=None)
        self.fixed_curve = plot.plot(pen=pg.mkPen(theme.SECONDARY, width=1, style=Qt.PenStyle.DashLine), symbol="s",
                                     symbolSize=6, symbolBrush=theme.SECONDARY, symbolPen=None)
        self.evaluated = plot.plot(pen=None, symbol="star", symbolSize=14, symbolBrush=theme.TEXT, symbolPen=None)
        self.fixed_labels: list[pg.TextItem] = []

    def set_sweep(self, threshold_points: Sequence[dict], fixed_points: Sequence[dict],
                  evaluated: tuple[float, float] | None) -> None:
        def xy(points):
            pts = sorted((float(p["mean_macs"]) / 1e6, 100 * float(p["top1"])) for p in points)
            return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])

        self.threshold_curve.setData(*xy(threshold_points))
        self.fixed_curve.setData(*xy(fixed_points))
        if evaluated is None:
            self.evaluated.setData([], [])
        else:
            self.evaluated.setData([evaluated[0] / 1e6], [100 * evaluated[1]])
        plot = self.getPlotItem()
        for label in self.fixed_labels:
            plot.removeItem(label)
        self.fixed_labels = []
        for p in fixed_points:  # name each fixed setting by its iterations per block (capped per block)
            iterations = p.get("iterations") or []
            text = f"{max(iterations)}×" if iterations else ""
            label = pg.TextItem(text, color=theme.SECONDARY, anchor=(0.5, -0.3))
            label.setPos(float(p["mean_macs"]) / 1e6, 100 * float(p["top1"]))
            plot.addItem(label)
            self.fixed_labels.append(label)
        plot.enableAutoRange()


class TrainingCurves(_FixedHeightLayout):
    """Loss, accuracy and mean iterations per block over training, from metrics.jsonl.

    Legends are coloured words in the titles, as in the Train tab (a legend box would hide curves).
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent, show=False)
        self.setBackground(theme.PLOT_BACKGROUND)
        self.ci.layout.setSpacing(10)
        train_val = f"{swatch(theme.ACCENT, 'train')} {swatch(theme.SECONDARY, 'validation')}"
        blocks = " ".join(swatch(theme.block_color(b), str(b + 1)) for b in range(4))
        self.loss_plot = self.addPlot(row=0, col=0, axisItems={"left": LogAxis("left")}, enableMenu=False)
        self.accuracy_plot = self.addPlot(row=0, col=1, enableMenu=False)
        self.iterations_plot = self.addPlot(row=0, col=2, enableMenu=False)
        for plot, title in ((self.loss_plot, f"Loss {train_val}"), (self.accuracy_plot, f"Accuracy % {train_val}"),
                            (self.iterations_plot, f"Iterations per block {blocks}")):
            theme.style_plot(plot, title=title, bottom="epoch")
            plot.setMouseEnabled(False, False)
            plot.showGrid(x=False, y=True, alpha=0.15)
        self.loss_plot.setLogMode(x=False, y=True)  # losses span orders of magnitude early in a run
        validation = dict(symbol="o", symbolSize=5, symbolBrush=theme.SECONDARY, symbolPen=None)
        self.train_loss = self.loss_plot.plot(pen=pg.mkPen(theme.ACCENT, width=1))
        self.val_loss = self.loss_plot.plot(pen=pg.mkPen(theme.SECONDARY, width=1), **validation)
        self.train_accuracy = self.accuracy_plot.plot(pen=pg.mkPen(theme.ACCENT, width=1))
        self.val_accuracy = self.accuracy_plot.plot(pen=pg.mkPen(theme.SECONDARY, width=1), **validation)
        self.iterations = [self.iterations_plot.plot(pen=pg.mkPen(theme.block_color(b), width=1)) for b in range(4)]
        for plot in (self.loss_plot, self.accuracy_plot, self.iterations_plot):
            for item in plot.listDataItems():
                item.setClipToView(True)
                item.setDownsampling(auto=True)
        self.setFixedHeight(220)

    def set_series(self, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """``series`` keys: train_loss, val_loss, train_accuracy, val_accuracy, iterations_1..4 (x in epochs).

        Per-step iteration counts jump (anytime training samples them per batch): they are drawn
        as a running mean over about a tenth of the run.
        """
        empty = (np.empty(0), np.empty(0))
        self.train_loss.setData(*series.get("train_loss", empty))
        self.val_loss.setData(*series.get("val_loss", empty))
        self.train_accuracy.setData(*series.get("train_accuracy", empty))
        self.val_accuracy.setData(*series.get("val_accuracy", empty))
        for b, curve in enumerate(self.iterations):
            x, y = series.get(f"iterations_{b + 1}", empty)
            curve.setData(x, running_mean(y, max(1, len(y) // 10)))


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (shorter at the start)."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), window)
    return (sums[1:] - sums[np.arange(1, values.size + 1) - counts]) / counts


def swatch(color: str, text: str, mark: str = "&#9632;", text_color: str | None = None) -> str:
    """A coloured legend entry for a plot title or caption; ``text_color`` keeps the words neutral."""
    if text_color is None:
        return f"<span style='color:{color};font-weight:400'>{mark}&nbsp;{text}</span>"
    return (f"<span style='color:{color};font-weight:400'>{mark}</span>"
            f"<span style='color:{text_color};font-weight:400'>&nbsp;{text}</span>")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
