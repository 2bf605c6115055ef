"""The live plots are redrawn plot by plot, a few per timer tick, so no tick stalls the UI."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_refresher_redraws_a_few_plots_per_tick_and_every_plot_in_turn(qtbot):
    import pyqtgraph as pg

    from iamnn_studio.gui.plots import PlotRefresher, add_curve

    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    plots = [widget.addPlot(row=0, col=c) for c in range(6)]
    curves = [add_curve(plot, "#1f77b4") for plot in plots]
    refresher = PlotRefresher(widget, interval_ms=10_000, groups_per_tick=3)
    for curve in curves:
        refresher.track([curve])
        curve.append(1.0, 2.0)
    refresher.refresh()
    drawn = [c.item.getData()[0] is not None and len(c.item.getData()[0]) == 1 for c in curves]
    assert drawn == [True, True, True, False, False, False]
    refresher.refresh()
    assert all(len(c.item.getData()[0]) == 1 for c in curves)


def test_step_axis_is_fixed_to_the_run_length(qtbot):
    from iamnn_studio.gui.training_view import LiveMonitor

    monitor = LiveMonitor()
    qtbot.addWidget(monitor)
    monitor.set_step_range(1000)
    for plot in monitor.plots.values():
        low, high = plot.viewRange()[0]
        assert low <= 0 and 1000 <= high <= 1100
        assert not plot.getViewBox().autoRangeEnabled()[0]
