"""The Train tab at small windows (960 and 1024 x 640) and at the default size: no plot title or legend cut off
or over a neighbour, no axis labels on top of each other."""
from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QRectF, QSize
from PySide6.QtGui import QFont, QFontMetricsF, QPainter, QPicture

pytestmark = pytest.mark.gui

SIZES = [(960, 640), (1024, 640), (1280, 800)]


def feed_a_run(training, steps: int = 120, total: int = 200) -> None:
    """The events of a run part-way through (as the engine sends them), on the Live training page."""
    training._on_event("started", {"config": {"name": "layout", "model": {"iterations": [2, 3, 4, 2]}},
                                   "total_steps": total, "total_epochs": 4, "device": "cpu"})
    for step in range(1, steps + 1):
        training._on_event("step", {
            "step": step, "loss": 2.3 * math.exp(-step / 60) + 0.2, "accuracy": min(0.95, step / 130),
            "macs": 3e6 - step * 5e3, "images_per_s": 800 + 50 * math.sin(step), "lr": 0.004 * min(1, step / 40),
            "iterations": [1.5, 2.2, 3.1, 1.4], "progress": step / total})
        if step % 50 == 0:
            training._on_event("epoch", {"step": step, "epoch": step // 50, "total_epochs": 4, "val_loss": 1.0,
                                         "val_accuracy": 0.6, "macs": 2.8e6})
    training.pages.setCurrentIndex(training.pages.indexOf(training.live_page))
    training.refresher.flush_all()


def resize_and_settle(qtbot, window, size: tuple[int, int]) -> None:
    window.resize(*size)
    qtbot.waitUntil(lambda: window.size() == QSize(*size))
    # The plots' scenes lay themselves out over later passes of the event loop (later still on a busy
    # machine): wait until no plot moves between two looks 100 ms apart.
    previous = None
    for _ in range(50):
        qtbot.wait(100)
        now = plot_geometry(window)
        if now == previous:
            return
        previous = now


def plot_geometry(window) -> list[tuple[float, ...]]:
    import pyqtgraph as pg

    return [(*scene_rect(item).getRect(), *scene_rect(item.titleLabel.item).getRect())
            for view in window.findChildren(pg.GraphicsView) for item in view.items()
            if isinstance(item, pg.PlotItem)]


def scene_rect(item) -> QRectF:
    return item.mapRectToScene(item.boundingRect())


def visible_scene_rect(view) -> QRectF:
    return view.mapToScene(view.viewport().rect()).boundingRect()


def tick_labels(axis) -> list[tuple[QRectF, str]]:
    """The tick labels the axis paints (pyqtgraph's own layout of them, in the axis' coordinates)."""
    picture = QPicture()
    painter = QPainter(picture)
    try:
        if axis.style["tickFont"]:
            painter.setFont(axis.style["tickFont"])
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [] if specs is None else [(rect, text) for rect, _flags, text in specs[2]]


def assert_titles_fit(view, plots: dict) -> None:
    visible = visible_scene_rect(view)
    titles = {}
    for name, plot in plots.items():
        title = scene_rect(plot.titleLabel.item)
        bounds = scene_rect(plot)
        assert bounds.contains(title), f"{name}: title {title} spills out of its plot {bounds}"
        assert visible.contains(title), f"{name}: title {title} is cut off by the window ({visible})"
        titles[name] = title
    names = list(titles)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not titles[first].intersects(titles[second]), f"titles of {first} and {second} overlap"


def assert_labels_apart(name: str, axis) -> None:
    labels = tick_labels(axis)
    line = QFontMetricsF(axis.style["tickFont"] or QFont()).height()
    if axis.orientation in ("left", "right"):
        centres = sorted(rect.center().y() for rect, _ in labels)
        gaps = [b - a for a, b in zip(centres, centres[1:])]
        assert all(gap >= line for gap in gaps), f"{name}: labels {[t for _, t in labels]} only {gaps} px apart"
    else:
        rects = sorted((rect for rect, _ in labels), key=QRectF.left)
        for a, b in zip(rects, rects[1:]):
            assert b.left() >= a.right(), f"{name}: labels {[t for _, t in labels]} overlap"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_train_tabs_plot_titles_and_axis_labels_fit_the_window(qtbot, window, size):
    training = window.training
    feed_a_run(training)
    resize_and_settle(qtbot, window, size)
    monitor = training.monitor
    assert monitor.isVisible()

    # The Iterations legend (block 1-4 in their colours) was cut off at the window's right edge at 1024 px.
    assert_titles_fit(monitor, monitor.plots)
    assert all(c in monitor.plots["iterations"].titleLabel.text for c in "1234")  # the legend is still there
    for name, plot in monitor.plots.items():
        assert_labels_apart(f"{name} (step)", plot.getAxis("bottom"))
        if name != "loss":  # (the loss' log axis labels decades) the MACs axis read "2.6" on "2.8" at 960 x 640
            assert_labels_apart(f"{name} (value)", plot.getAxis("left"))

    # The System panel's CPU axis read "20 40 60 80" one on top of the other at 1024 x 640.
    system = training.system
    assert system._plots, system.message.text()
    assert_titles_fit(system.plots_widget, {f"system {i}": plot for i, plot in enumerate(system._plots)})
    for i, plot in enumerate(system._plots):
        assert_labels_apart(f"system {i}", plot.getAxis("left"))
        assert tick_labels(plot.getAxis("left")), f"system {i}: no value label left at all"


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_run_log_gets_a_fair_share_of_the_bottom_row(qtbot, window, size, gpu):
    """QA: the Run log was a 150 px column at 960 px (250 at 1280), wrapping every two or three words, beside
    a System panel with two plots and empty room."""
    training = window.training
    if gpu:
        training.system.monitor = FakeMonitor(True)  # four GPU plots want more of the row
    training._share_bottom_row()
    feed_a_run(training, steps=10)
    resize_and_settle(qtbot, window, size)
    log, system = training.bottom_row.sizes()
    share = log / (log + system)
    assert (0.35 <= share <= 0.45) if gpu else (0.45 <= share <= 0.55), (log, system)


class FakeMonitor:
    """SystemMonitor's interface with fixed readings: four GPU plots share the panel, or CPU and RAM."""

    def __init__(self, gpu: bool):
        self.gpu_available = gpu
        self.gpu_message = "NVIDIA H100 80GB HBM3" if gpu else "No NVIDIA GPU found: showing CPU and RAM"

    def sample(self):
        gb = 1024**3
        gpu = dict(gpu_util=87.0, gpu_mem_used=12 * gb, gpu_mem_total=80 * gb, gpu_temp=65.0, gpu_power=310.0)
        none = dict.fromkeys(gpu)
        return {**(gpu if self.gpu_available else none), "cpu_util": 42.0, "ram_used": 3 * gb, "ram_total": 16 * gb}

    def close(self):
        pass


#: The System panel's size in a window of 960 x 640, 1024 x 640 and 1280 x 800: with four GPU plots, three
#: fifths of the row beside the run log; with CPU and RAM, half (``TrainingView._share_bottom_row``).
PANEL_SIZES = {True: [(302, 151), (341, 151), (494, 217)], False: [(252, 151), (284, 151), (412, 217)]}


@pytest.mark.parametrize("gpu, size", [(gpu, size) for gpu, sizes in PANEL_SIZES.items() for size in sizes],
                         ids=lambda v: {True: "gpu", False: "cpu"}[v] if isinstance(v, bool) else f"{v[0]}px")
def test_the_system_panel_fits_its_plots_with_and_without_a_gpu(qtbot, styled_app, monkeypatch, gpu, size):
    import iamnn_studio.engine.system as system_module
    from iamnn_studio.gui.system_panel import SystemPanel

    monkeypatch.setattr(system_module, "SystemMonitor", lambda: FakeMonitor(gpu))
    panel = SystemPanel()
    qtbot.addWidget(panel)
    panel.resize(*size)
    panel.show()
    panel.start()
    panel.poll()
    qtbot.wait(100)
    assert len(panel._plots) == (4 if gpu else 2)
    assert_titles_fit(panel.plots_widget, {f"plot {i}": plot for i, plot in enumerate(panel._plots)})
    for i, plot in enumerate(panel._plots):
        assert_labels_apart(f"plot {i}", plot.getAxis("left"))
    panel.stop()


def test_roomy_steps_take_the_finest_round_step_with_room():
    from iamnn_studio.gui.plots import roomy_steps

    assert roomy_steps(-4, 104, lambda step, values: step >= 50) == (50, [0, 50, 100])
    assert roomy_steps(-4, 104, lambda step, values: step >= 20) == (20, [0, 20, 40, 60, 80, 100])
    assert roomy_steps(-4, 104, lambda step, values: False) == (50, [50])  # no room: one label, not a pile
    assert roomy_steps(0.0005, 0.0041, lambda step, values: step >= 0.001) == (0.001, [0.001, 0.002, 0.003, 0.004])
    assert roomy_steps(3, 3, lambda step, values: True) == (0.0, [])
