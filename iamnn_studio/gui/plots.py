"""Live plots that stay cheap while a run streams data in.

Events append points to numpy buffers (``BufferedCurve.append``); one ``PlotRefresher`` timer
(250 ms) pushes only the curves that changed into their ``PlotDataItem`` with ``setData``. Items are
created once and never cleared and re-plotted (that leaks on PySide6, pyqtgraph#2672); pens are
1 px, long curves are clipped to the view and downsampled automatically, and a curve thins itself
past ``MAX_POINTS`` so that neither memory nor redraw time grows without end.
"""
from __future__ import annotations

import html
import math
from typing import Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Slot
from PySide6.QtGui import QFont, QFontMetricsF, QTextDocumentFragment

from .style import COLORS, scaled_pt

REFRESH_MS = 250
#: Weight of the past in the smoothed curves (about the last 10 points count).
SMOOTHING = 0.9
#: Points a live curve keeps; beyond it the curve is sampled twice as sparsely (memory stays bounded).
MAX_POINTS = 20_000
#: Opacity (of 255) of the raw points under a smoothed curve.
RAW_ALPHA = 70
#: A plot may get this narrow whatever the length of its title.
TITLE_MIN_WIDTH = 60
#: Plot titles' size at the 10-pt application font (``scaled_pt`` grows it with the font).
TITLE_PT = 9



def consecutive_means(table: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """``table``'s rows (one per logged step) as at most ``max_points`` rows, each the mean of a run of
    consecutive rows, column by column, NaN ignored (NaN where a column has no value in the run); and
    the index of each run's last row. A mean, not every n-th row: a thinned loss curve keeps its level."""
    n = len(table)
    if n == 0:
        return table.copy(), np.zeros(0, dtype=np.int64)
    starts = np.linspace(0, n, min(max_points, n), endpoint=False).astype(np.int64)
    finite = np.isfinite(table)
    sums = np.add.reduceat(np.where(finite, table, 0.0), starts)
    counts = np.add.reduceat(finite, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means, np.append(starts[1:], n) - 1

class BufferedCurve:
    """A growing (x, y) series bound to one PlotDataItem; ``flush`` redraws it if it changed.

    With a ``smooth_item`` the series is also drawn as its exponential moving average (debiased, as
    TensorBoard does), kept up to date point by point: per-step figures are noisy, and under anytime
    training the iterations and MACs of a step are sampled, so the trend is what a reader wants.

    Memory stays bounded on long runs: once ``max_points`` are kept, every other point is dropped
    and from then on only every 2nd (4th, ...) point arrives, so the whole run stays evenly sampled;
    the newest point is always shown.
    """

    _COLUMNS = ("_x", "_y", "_s", "_i")

    def __init__(
        self,
        item: pg.PlotDataItem,
        capacity: int = 256,
        *,
        smooth_item: pg.PlotDataItem | None = None,
        smoothing: float = SMOOTHING,
        max_points: int = MAX_POINTS,
    ) -> None:
        self.item = item
        self.smooth_item = smooth_item
        self.smoothing = smoothing
        self.max_points = max(4, max_points)
        capacity = min(capacity, self.max_points)
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self._s = np.empty(capacity, dtype=np.float64) if smooth_item is not None else None
        self._i = np.empty(capacity, dtype=np.int64)  # each kept point's arrival number
        self._n = 0
        self._arrived = 0
        self._stride = 1  # keep arrivals whose number is a multiple of this (plus the newest one)
        self._average = 0.0  # the EMA before debiasing, and how many finite points went into it
        self._count = 0
        self.dirty = False
        self._lone_marker = False  # a single point gets a marker: a 1-point line draws nothing

    def __len__(self) -> int:
        return self._n

    def append(self, x: float, y: float | None) -> None:
        """Add one point; None (a metric the run does not report) becomes a gap (NaN)."""
        value = np.nan if y is None else float(y)
        smoothed = self._smoothed(value) if self._s is not None else None
        number, self._arrived = self._arrived, self._arrived + 1
        if self._n and self._i[self._n - 1] % self._stride:
            self._n -= 1  # the previous newest point was off the stride: this one replaces it
        if self._n == len(self._x):
            if self._n == self.max_points:
                self._thin()
            else:
                self._grow(min(2 * len(self._x), self.max_points))
        n = self._n
        self._x[n], self._y[n], self._i[n] = x, value, number
        if self._s is not None:
            self._s[n] = smoothed
        self._n += 1
        self.dirty = True

    def _smoothed(self, value: float) -> float:
        if not np.isfinite(value):
            return np.nan
        self._average = self.smoothing * self._average + (1 - self.smoothing) * value
        self._count += 1
        # 10 significant digits: a constant series must stay exactly flat, or the plot zooms into
        # rounding noise and labels its axis "300.0000000000005".
        return float(f"{self._average / (1 - self.smoothing**self._count):.10g}")

    def _grow(self, size: int) -> None:
        for name in self._COLUMNS:
            array = getattr(self, name)
            if array is not None:
                setattr(self, name, np.resize(array, size))

    def _thin(self) -> None:
        """Double the stride and drop the kept points that are off it."""
        self._stride *= 2
        keep = np.flatnonzero(self._i[: self._n] % self._stride == 0)
        self._move(keep)

    def _move(self, keep: np.ndarray) -> None:
        for name in self._COLUMNS:
            array = getattr(self, name)
            if array is not None:
                array[: len(keep)] = array[keep]
        self._n = len(keep)

    def clear(self) -> None:
        self._n = self._arrived = self._count = 0
        self._stride, self._average = 1, 0.0
        self.dirty = True

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        return self._x[: self._n], self._y[: self._n]

    def smoothed(self) -> np.ndarray | None:
        return None if self._s is None else self._s[: self._n]

    def last(self) -> float | None:
        return float(self._y[self._n - 1]) if self._n else None

    def flush(self) -> None:
        if self.dirty:
            x, y = self.data()
            if not np.isfinite(y).any():  # only gaps so far: nothing to draw (pyqtgraph warns on all-NaN)
                x = y = np.empty(0)
            self.item.setData(x, y, connect="finite")
            if self.smooth_item is not None:
                self.smooth_item.setData(x, self.smoothed() if len(x) else y, connect="finite")
            self._mark_a_lone_point(int(np.isfinite(y).sum()) == 1)
            self.dirty = False

    def _mark_a_lone_point(self, lone: bool) -> None:
        shown = self.smooth_item if self.smooth_item is not None else self.item
        if lone == self._lone_marker or (shown.opts.get("symbol") and not self._lone_marker):
            return  # unchanged, or a curve that has markers anyway
        self._lone_marker = lone
        if lone:
            color = shown.opts["pen"].color() if hasattr(shown.opts["pen"], "color") else None
            shown.setSymbol("o")
            shown.setSymbolSize(5)
            if color is not None:
                shown.setSymbolBrush(color)
                shown.setSymbolPen(color)
        else:
            shown.setSymbol(None)

    def drop_before(self, x: float) -> None:
        """Forget the points left of ``x`` (a scrolling window), once they are half the buffer."""
        stale = int(np.searchsorted(self._x[: self._n], x))
        if stale and stale >= self._n // 2:
            self._move(np.arange(stale, self._n))
            self.dirty = True


class PlotRefresher(QObject):
    """One timer for many curves: redraws the dirty ones every ``interval_ms`` (never per event).

    Curves are tracked in groups (one per plot). Repainting a plot costs tens of milliseconds of
    UI-thread time on a small machine (mostly its axes), so each tick redraws only
    ``groups_per_tick`` groups in turn: the event loop never stalls for all plots at once, and
    with 6 plots, 3 per tick and 250 ms ticks every plot still updates twice a second.
    """

    def __init__(self, parent: QObject | None = None, interval_ms: int = REFRESH_MS,
                 groups_per_tick: int | None = None) -> None:
        super().__init__(parent)
        self._groups: list[list[BufferedCurve]] = []
        self._callbacks: list = []
        self._groups_per_tick = groups_per_tick
        self._next_group = 0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()

    def track(self, curves: Iterable[BufferedCurve]) -> None:
        """Track curves redrawn together (put the curves of one plot in one call)."""
        self._groups.append(list(curves))

    def on_refresh(self, callback) -> None:
        """Also call ``callback()`` on every tick (labels, progress: throttled like the plots)."""
        self._callbacks.append(callback)

    @Slot()
    def refresh(self) -> None:
        count = len(self._groups) if self._groups_per_tick is None else min(self._groups_per_tick, len(self._groups))
        for _ in range(count):
            for curve in self._groups[self._next_group % len(self._groups)]:
                curve.flush()
            self._next_group = (self._next_group + 1) % len(self._groups)
        for callback in self._callbacks:
            callback()

    def flush_all(self) -> None:
        """Redraw every dirty curve now (end of a run, tests)."""
        for group in self._groups:
            for curve in group:
                curve.flush()


class LogAxis(pg.AxisItem):
    """A log-scale axis labelled at 1, 2, 5 x 10^k in plain numbers ("0.5", "2", "10").

    pyqtgraph labels every 1..9 of a decade in log mode, which overlap on a small plot. Here the
    labels keep the room of a :class:`RoomyAxis`: 1, 2, 5 of each decade where they stand
    :data:`LABEL_PITCH` lines apart, else every decade, else every 2nd (5th, ...) one; so a short plot,
    a larger font or a high-DPI screen thins them instead of stacking "10 5 2 1 0.5" on each other.
    Use it with ``plot.setLogMode(y=True)``.
    """

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802, N803 (pyqtgraph's names)
        if not (math.isfinite(minVal) and math.isfinite(maxVal)) or maxVal <= minVal:
            return [(None, [])]
        per_decade = size / (maxVal - minVal) if size and size > 0 else math.inf
        fits = lambda values: all(b - a >= self._label_room(values) / per_decade for a, b in zip(values, values[1:]))
        decades = range(math.floor(minVal) - 1, math.ceil(maxVal) + 1)
        values: list[float] = []
        for multiples, every in (((1, 2, 5), 1), ((1,), 1), ((1,), 2), ((1,), 5), ((1,), 10)):
            values = [math.log10(m) + e for e in decades if e % every == 0 for m in multiples]
            values = [v for v in values if minVal <= v <= maxVal]
            if (len(values) <= 6 or multiples == (1,)) and fits(values):
                break
        if len(values) < 2:  # a narrow range (a loss between 2.2 and 2.4): plain steps inside it
            steps = [math.log10(v) for v in nice_steps(10 ** minVal, 10 ** maxVal)]
            while len(steps) > 1 and not fits(steps):
                steps = steps[::2]
            values = steps if len(steps) >= len(values) else values
        return [(None, values)]

    def _label_room(self, values: list[float]) -> float:
        """Pixels a label needs from the next one: the line pitch upright, the widest label plus a gap lying."""
        metrics = QFontMetricsF(self.style["tickFont"] or QFont())
        if self.orientation in ("left", "right"):
            return LABEL_PITCH * metrics.height()
        labels = self.logTickStrings(values, 1.0, None) or ["0"]
        return max(metrics.horizontalAdvance(label) for label in labels) + LABEL_GAP * metrics.horizontalAdvance("0")

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph's name)
        return [f"{10 ** v * scale:g}" for v in values]


class RoomyAxis(pg.AxisItem):
    """A linear axis whose labels keep room between them, however small the plot.

    pyqtgraph always labels its major ticks, about ln(pixels) of them: on a 60-px high plot that is
    "20 40 60 80", each label touching the next, and on a narrow one "50 100150". Here the step is
    the finest 1-2-5 one whose labels stand :data:`LABEL_PITCH` lines apart (a vertical axis) or
    leave :data:`LABEL_GAP` digits between them (a horizontal one); one label where none does.
    """

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 (pyqtgraph's names)
        low, high = sorted((minVal, maxVal))
        if self.logMode or size <= 0 or not (math.isfinite(low) and math.isfinite(high)) or high <= low:
            return super().tickValues(minVal, maxVal, size)
        metrics = QFontMetricsF(self.style["tickFont"] or QFont())
        pixels_per_unit = size / (high - low)

        def roomy(step: float, values: list[float]) -> bool:
            if self.orientation in ("left", "right"):
                need = LABEL_PITCH * metrics.height()
            else:
                labels = self.tickStrings(values, self.autoSIPrefixScale * self.scale, step)
                widest = max(metrics.horizontalAdvance(label) for label in labels)
                need = widest + LABEL_GAP * metrics.horizontalAdvance("0")
            return step * pixels_per_unit >= need

        step, values = roomy_steps(low, high, roomy)
        if not values:
            return super().tickValues(minVal, maxVal, size)
        return [(step, values)]


#: Label pitch on a vertical ``RoomyAxis``, in text lines (label centres at least this far apart).
LABEL_PITCH = 1.5
#: Space between labels on a horizontal ``RoomyAxis``, in digit widths (at least).
LABEL_GAP = 1.0


def roomy_steps(low: float, high: float, roomy) -> tuple[float, list[float]]:
    """(step, round values inside [low, high]) for the finest step of 1, 2 or 5 x 10^k for which
    ``roomy(step, values)`` holds; where not even two values have room, the one value nearest the
    middle. (0.0, []) for an empty range."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return 0.0, []
    best: tuple[float, list[float]] = (0.0, [])
    crowded = False
    top = math.floor(math.log10(high - low)) + 1
    for exponent in range(top, top - 6, -1):
        for multiple in (5, 2, 1):
            step = multiple * 10.0 ** exponent
            values = [float(f"{k * step:.12g}")
                      for k in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)]
            if len(values) < 2:
                continue
            if not crowded and roomy(step, values):
                best = (step, values)
                continue
            if best[1]:
                return best
            crowded = True
            if len(values) >= 3:
                middle = (low + high) / 2
                return step, [min(values, key=lambda value: abs(value - middle))]
    return best


def nice_steps(low: float, high: float, most: int = 4) -> list[float]:
    """Round values (multiples of 1, 2 or 5 x 10^k) inside [low, high], at least two where the range is
    not empty and at most ``most``."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return []
    for exponent in range(math.floor(math.log10(high - low)), math.floor(math.log10(high - low)) - 3, -1):
        for multiple in (5, 2, 1):
            step = multiple * 10.0 ** exponent
            values = [k * step for k in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)]
            if 2 <= len(values) <= most:
                return [float(f"{v:.12g}") for v in values]
    return []


def set_plot_title(plot: pg.PlotItem, title: str) -> None:
    plot.setTitle(f"<span style='color:{COLORS['text']};font-size:{scaled_pt(TITLE_PT):g}pt;font-weight:600'>"
                  f"{title}</span>")


def style_plot(plot: pg.PlotItem, title: str, y_label: str = "", x_label: str = "") -> pg.PlotItem:
    """The app's plot look: small title (shortened with "…" where the plot is narrower, see
    ``fit_title``), light grid, no mouse menu, long curves downsampled."""
    set_plot_title(plot, title)
    let_title_shrink(plot)
    fit_title(plot, [title])
    plot.showGrid(x=True, y=True, alpha=0.12)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(COLORS["border_strong"], width=1))
        axis.setTextPen(pg.mkPen(COLORS["text_muted"]))
        axis.enableAutoSIPrefix(False)  # no "step (x1e+03)": plain numbers under a plain label
    if y_label:
        plot.setLabel("left", y_label, color=COLORS["text_muted"])
    if x_label:
        plot.setLabel("bottom", x_label, color=COLORS["text_muted"])
    plot.getViewBox().setMouseEnabled(x=False, y=False)
    return plot


def let_title_shrink(plot: pg.PlotItem, min_width: float = TITLE_MIN_WIDTH) -> None:
    """Let a plot be narrower than its title (which then overhangs its edges a little).

    pyqtgraph pins a title's minimum width to its text on every resize, so three plots whose
    titles carry legends could not share a 1024-px window: the scene overflowed and was cut off.
    """
    label = plot.titleLabel
    pin_to_text = label.updateMin

    def update_min() -> None:
        pin_to_text()
        width = min(label.minimumWidth(), min_width)
        label.setMinimumWidth(width)
        for hint in (Qt.SizeHint.MinimumSize, Qt.SizeHint.PreferredSize):  # equal columns, whatever the titles
            label._sizeHint[hint] = (width, label.minimumHeight())

    label.updateMin = update_min
    update_min()


def fit_title(plot: pg.PlotItem, variants: Sequence[str], shorter: Sequence[str] = ()) -> None:
    """Title ``plot`` with the first of ``variants`` (HTML titles, widest first: e.g. with a legend
    of coloured squares, of coloured words, none) that fits over the plot, and choose again
    whenever the plot is resized. Where none fits, the first of ``shorter`` (fewer words: "Img / s"
    for "Images per second") that fits, else the last variant's words cut short with "…" (its whole
    text then in the title's tooltip).

    A title wider than its plot spilled over its neighbour's or out of the window (the Iterations
    legend was cut off at the right edge of a 1024-px window; at 14 pt in a 960-px one "MACs / image
    (M)" ran into "Images per second"); a wide plot keeps its full legend. The plots' columns share
    the row by their titles' widths, so a shortened title asks for the room of the last variant: it
    must not narrow its own column, and so shorten itself further.
    """
    fitter = getattr(plot, "_fitted_title", None)
    if fitter is None:
        fitter = plot._fitted_title = _FittedTitle(plot)
    fitter.set_variants(variants, shorter)


class _FittedTitle:
    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot, self.label = plot, plot.titleLabel
        self.variants: list[str] = []
        self.shorter: list[str] = []
        self.widths: list[float] = []  # of variants, then of shorter
        self.shown: str | None = None
        self.cut_to: tuple[float, str] | None = None  # (room, title) of the last "…" title
        self.pinned = False  # the column's preferred width is the shown variant's, set here
        self.busy = False
        self.label.geometryChanged.connect(self.fit)
        plot.geometryChanged.connect(self.fit)

    def set_variants(self, variants: Sequence[str], shorter: Sequence[str] = ()) -> None:
        self.busy = True
        try:
            self.variants, self.shorter, self.widths = list(variants), list(shorter), []
            self.cut_to = None
            for variant in self.variants + self.shorter:  # a title's width does not depend on the plot's: measured once
                set_plot_title(self.plot, variant)
                self.widths.append(self.label.item.boundingRect().width())
            self.shown = self.shorter[-1] if self.shorter else self.variants[-1] if self.variants else None
        finally:
            self.busy = False
        self.fit()

    def room(self) -> float | None:
        """The widest title that, centred where the title row puts it, stays inside the plot."""
        width = self.plot.size().width()
        if width <= 0 or self.label.size().width() <= 0:
            return None  # not laid out yet
        centre = self.label.mapRectToItem(self.plot, self.label.rect()).center().x()
        return 2 * min(centre, width - centre)

    @Slot()
    def fit(self) -> None:
        if self.busy or not self.variants:
            return
        room = self.room()
        titles = self.variants + self.shorter
        choice = self.variants[0] if room is None else next(
            (title for title, width in zip(titles, self.widths) if width <= room), None)
        if choice is None and self.cut_to is not None and self.cut_to[0] == room:
            choice = self.cut_to[1]  # cut short for this room already
        if choice == self.shown:
            return
        self.busy = True
        try:
            if choice is None:  # not even the shortest words fit: the full ones cut short with "…"
                choice = self._cut_short(self.variants[-1], room)
                self.cut_to = (room, choice)
            set_plot_title(self.plot, choice)
            if choice not in self.variants:
                self.pinned = True
            if self.pinned:
                # Once shortened, the column asks for the room of the title shown, or of the full words
                # for a shorter one: were it to follow the short title, full and short words would take
                # turns as the column narrowed and widened after them.
                full = self.variants.index(choice) if choice in self.variants else len(self.variants) - 1
                self.label.setPreferredWidth(self.widths[full])
            self.shown = choice
            cut = choice not in titles
            self.label.setToolTip(_plain_text(self.variants[-1]) if cut else "")
        finally:
            self.busy = False

    def _cut_short(self, variant: str, room: float) -> str:
        """``variant``'s plain text, cut short with "…" to fit ``room`` (at least its first letter)."""
        text = _plain_text(variant)
        margin = 2 * self.label.item.document().documentMargin()
        metrics = QFontMetricsF(self._title_font())
        guess = metrics.elidedText(text, Qt.TextElideMode.ElideRight, max(0.0, room - margin))
        for length in range(min(len(guess.rstrip("…")), len(text) - 1), 0, -1):  # checked against the item
            candidate = html.escape(text[:length].rstrip() + "…")
            set_plot_title(self.plot, candidate)
            if self.label.item.boundingRect().width() <= room:
                return candidate
        return html.escape(text[:1] + "…")

    def _title_font(self) -> QFont:
        font = QFont(self.label.item.font())
        font.setPointSizeF(scaled_pt(TITLE_PT))
        font.setWeight(QFont.Weight.DemiBold)
        return font


def _plain_text(title: str) -> str:
    """An HTML title's text as it reads ("Loss ■ train ■ val")."""
    return QTextDocumentFragment.fromHtml(title).toPlainText().replace("\xa0", " ").strip()


def add_curve(
    plot: pg.PlotItem,
    color: str,
    name: str | None = None,
    *,
    dashed: bool = False,
    symbol: str | None = None,
    smooth: bool = False,
) -> BufferedCurve:
    """A 1-px curve (optionally with small markers, for sparse series such as per-epoch values).

    ``smooth``: the raw points are drawn faint and their moving average on top in ``color``.
    """
    style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
    kwargs = {}
    if symbol:
        kwargs = dict(symbol=symbol, symbolSize=5, symbolBrush=color, symbolPen=pg.mkPen(color, width=1))
    if not smooth:
        return BufferedCurve(plot.plot([], [], pen=pg.mkPen(color, width=1, style=style), name=name, **kwargs))
    faint = pg.mkColor(color)
    faint.setAlpha(RAW_ALPHA)
    raw = plot.plot([], [], pen=pg.mkPen(faint, width=1, style=style), **kwargs)
    trend = plot.plot([], [], pen=pg.mkPen(color, width=1, style=style), name=name)
    return BufferedCurve(raw, smooth_item=trend)


def add_level_line(plot: pg.PlotItem, value: float, color: str) -> pg.InfiniteLine:
    """A dashed horizontal line at ``value`` (e.g. a block's iteration cap) in ``color``."""
    line = pg.InfiniteLine(pos=value, angle=0, pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine))
    plot.addItem(line)
    return line


def add_legend(plot: pg.PlotItem) -> pg.LegendItem:
    legend = plot.addLegend(offset=(-8, 8), labelTextSize=f"{scaled_pt(8):g}pt", labelTextColor=COLORS["text_muted"])
    legend.setBrush(pg.mkBrush(255, 255, 255, 200))
    return legend
