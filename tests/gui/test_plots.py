"""Live curves: smoothed trends over noisy steps, and bounded memory however long a run goes."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def plot(qtbot, styled_app):
    import pyqtgraph as pg

    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    yield widget.getPlotItem()  # the widget stays referenced until the test ends
    del widget


def test_a_smoothed_curve_draws_the_trend_over_faint_raw_points(plot):
    from iamnn_studio.gui.plots import add_curve

    curve = add_curve(plot, "#2563EB", "train", smooth=True)
    for step in range(200):
        curve.append(step, 0.0 if step % 2 else 10.0)  # sampled exits: a value that jumps every step
    curve.flush()
    raw_x, raw_y = curve.item.getData()
    trend_x, trend_y = curve.smooth_item.getData()
    assert list(raw_x) == list(trend_x) and set(raw_y) == {0.0, 10.0}
    assert trend_y[-50:] == pytest.approx(5.0, abs=0.6)  # the trend sits in the middle of the jumps
    assert curve.item.opts["pen"].color().alpha() < curve.smooth_item.opts["pen"].color().alpha()


def test_the_trend_starts_at_the_first_value_and_skips_gaps(plot):
    from iamnn_studio.gui.plots import add_curve

    curve = add_curve(plot, "#2563EB", smooth=True)
    for step, value in enumerate([4.0, None, 4.0, 4.0]):
        curve.append(step, value)
    assert curve.smoothed()[0] == pytest.approx(4.0)  # debiased: no ramp up from zero
    assert np.isnan(curve.smoothed()[1]) and curve.smoothed()[3] == pytest.approx(4.0)


def test_a_long_run_keeps_a_bounded_number_of_points_up_to_the_newest(plot):
    from iamnn_studio.gui.plots import BufferedCurve

    curve = BufferedCurve(plot.plot([], []), max_points=1000)
    for step in range(100_000):
        curve.append(step, float(step))
    x, y = curve.data()
    assert 500 <= len(x) <= 1000 and x[0] == 0 and x[-1] == 99_999
    assert np.array_equal(x, y) and (np.diff(x) > 0).all()
    gaps = np.diff(x[:-1])
    assert gaps.max() == gaps.min()  # the whole run evenly sampled, the start as dense as the end
    assert curve._x.size <= 1000  # the buffer itself stopped growing


def test_a_scrolling_window_forgets_what_scrolled_out(plot):
    from iamnn_studio.gui.plots import BufferedCurve

    curve = BufferedCurve(plot.plot([], []))
    for second in range(1000):
        curve.append(second, 1.0)
        curve.drop_before(second - 120)
    x, _ = curve.data()
    assert x[-1] == 999 and x[0] >= 999 - 2 * 120 and len(x) <= 2 * 121


def test_a_series_of_only_gaps_draws_nothing_and_does_not_warn(plot, recwarn):
    from iamnn_studio.gui.plots import add_curve

    curve = add_curve(plot, "#E4572E", symbol="o")
    curve.append(1, None)
    curve.flush()
    assert len(curve.item.getData()[0] or []) == 0
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_constant_series_stays_exactly_flat_when_smoothed(plot):
    from iamnn_studio.gui.plots import add_curve

    curve = add_curve(plot, "#2563EB", smooth=True)
    for step in range(500):
        curve.append(step, 300.0)
    assert set(curve.smoothed()) == {300.0}  # no rounding noise for the axis to zoom into


def test_the_loss_axis_is_labelled_at_one_two_five_steps(plot):
    import math

    from iamnn_studio.gui.plots import LogAxis

    axis = LogAxis("left")
    (_, values), = axis.logTickValues(math.log10(0.3), math.log10(7.0), 200, [])
    assert axis.logTickStrings(values, 1.0, None) == ["0.5", "1", "2", "5"]


def test_a_narrow_loss_range_still_gets_labels(plot):
    import math

    from iamnn_studio.gui.plots import LogAxis

    axis = LogAxis("left")
    (_, values), = axis.logTickValues(math.log10(2.2), math.log10(2.4), 200, [])
    assert axis.logTickStrings(values, 1.0, None) == ["2.2", "2.4"]


def test_a_single_point_is_drawn_as_a_marker_until_a_line_can_be(plot):
    from iamnn_studio.gui.plots import add_curve

    curve = add_curve(plot, "#2563EB", smooth=True)
    curve.append(1, 2.0)
    curve.flush()
    assert curve.smooth_item.opts["symbol"] == "o"
    curve.append(2, 3.0)
    curve.flush()
    assert curve.smooth_item.opts["symbol"] is None
    marked = add_curve(plot, "#2563EB", symbol="o")  # a curve with markers keeps them
    marked.append(1, 2.0)
    marked.append(2, 2.0)
    marked.flush()
    assert marked.item.opts["symbol"] == "o"


def test_a_flat_live_series_does_not_zoom_its_axis_into_rounding_noise(qtbot, styled_app):
    from iamnn_studio.gui.training_view import LiveMonitor

    monitor = LiveMonitor()
    qtbot.addWidget(monitor)
    monitor.resize(900, 500)
    monitor.add_step({"step": 1, "loss": 2.3, "accuracy": 0.125, "images_per_s": 693.22342290, "lr": 0.1,
                      "macs": 5e6, "iterations": [1, 1, 1, 1]})
    for curve in monitor.curves.values():
        curve.flush()
    for name in ("accuracy", "speed"):
        view = monitor.plots[name].getViewBox()
        view.updateAutoRange()
        low, high = view.viewRange()[1]
        assert high - low >= 2.0, (name, low, high)
    monitor.reset((2, 2, 2, 2))  # a new run starts from a clean axis, not the last one's
    low, high = monitor.plots["speed"].getViewBox().viewRange()[1]
    assert high < 100  # the last run's 693 images/s are gone from the axis


def test_equal_accuracies_in_the_threshold_sweep_keep_a_readable_axis(qtbot, styled_app):
    from iamnn_studio.gui.widgets.charts import SweepCurve

    chart = SweepCurve()
    qtbot.addWidget(chart)
    points = [{"mean_macs": m, "top1": 0.125} for m in (1e6, 2e6, 3e6)]  # a collapsed halting
    chart.set_sweep(points, [], None)
    view = chart.getPlotItem().getViewBox()
    view.updateAutoRange()
    low, high = view.viewRange()[1]
    assert high - low >= 2.0 and low < 12.5 < high


def test_consecutive_means_ignore_gaps_and_name_each_runs_last_row():
    from iamnn_studio.gui.plots import consecutive_means

    table = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, np.nan], [4.0, np.nan]])
    means, last = consecutive_means(table, 2)
    assert last.tolist() == [1, 3]
    assert means[0].tolist() == [1.5, 2.0]  # the gap is left out of the mean, not counted as 0
    assert means[1, 0] == 3.5 and np.isnan(means[1, 1])  # no value at all in the run: still a gap
    assert consecutive_means(table, 10)[0].shape == (4, 2)  # fewer rows than points: every row kept
    assert consecutive_means(np.zeros((0, 2)), 5)[1].size == 0


def test_a_title_too_wide_for_its_plot_takes_shorter_words_then_an_ellipsis(qtbot, styled_app):
    """A title none of whose variants fits used to be drawn whole, over its neighbours (at 14 pt in a
    960-px window "MACs / image (M)" ran into "Images per second")."""
    import pyqtgraph as pg

    from iamnn_studio.gui.plots import fit_title, style_plot
    from tests.gui.test_layout import scene_rect

    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    widget.resize(600, 200)
    widget.show()
    short = style_plot(widget.addPlot(row=0, col=0), "Images per second")
    fit_title(short, ["Images per second"], ["Img / s"])
    cut = style_plot(widget.addPlot(row=0, col=1), "Images per second, measured over the last steps")
    for width in (600, 160):
        widget.resize(width, 200)
        qtbot.wait(100)
        for plot in (short, cut):
            assert scene_rect(plot).contains(scene_rect(plot.titleLabel.item)), (width, plot.titleLabel.text)
    assert "Img / s" in short.titleLabel.text  # the shorter words, not "Imag…"
    assert "…" in cut.titleLabel.text
    assert cut.titleLabel.toolTip() == "Images per second, measured over the last steps"  # the whole title
    widget.resize(600, 200)
    qtbot.wait(100)
    assert "Images per second" in short.titleLabel.text and not short.titleLabel.toolTip()  # whole again
