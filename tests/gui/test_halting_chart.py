"""A result card's halting charts: what each block's chart draws, and that it is a plain painted widget."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402
from PySide6.QtWidgets import QGraphicsView  # noqa: E402

from iamnn_studio.gui.widgets import theme  # noqa: E402
from iamnn_studio.gui.widgets.halting_chart import HaltingCharts  # noqa: E402

pytestmark = pytest.mark.gui

NAN = float("nan")
#: Block 1 stops at its cap (scores stay under 0.9), block 2 reaches the threshold at its 2nd of 3
#: iterations, block 3 at its 1st of 4, block 4 has one iteration and so no score.
HALTING = [[0.3], [0.5, 0.85, NAN], [0.95, NAN, NAN, NAN], []]
CUMULATIVE = [[0.3], [0.5, 0.925, NAN], [0.95, NAN, NAN, NAN], []]
ITERATIONS = [2, 2, 1, 1]
CAPS = [2, 3, 4, 1]
REACHED = [None, 2, 1, None]


def close_to(color: QColor, name: str, tolerance: int = 40) -> bool:
    want = QColor(name)
    return abs(color.red() - want.red()) + abs(color.green() - want.green()) + abs(color.blue() - want.blue()) < tolerance


@pytest.fixture
def charts(qtbot, styled_app):
    widget = HaltingCharts(4)
    qtbot.addWidget(widget)
    widget.resize(800, widget.height())
    widget.show()
    widget.set_halting(HALTING, CUMULATIVE, ITERATIONS, CAPS, 0.9, REACHED)
    return widget


def test_each_block_gets_its_scores_cumulative_score_threshold_and_iterations(charts):
    block = charts.blocks[1]
    assert block.scores == pytest.approx((0.5, 0.85))  # the unscored iteration (NaN) is not a bar
    assert block.cumulative == pytest.approx((0.5, 0.925))
    assert (block.ran, block.cap, block.reached) == (2, 3, 2)
    assert block.threshold == pytest.approx(0.9)
    assert charts.blocks[3].scores == () and charts.blocks[3].threshold is None  # nothing scored: no threshold


def test_the_charts_are_painted_not_pyqtgraph_scenes(charts):
    """Four pyqtgraph plots per card cost ~0.1 s to build and ~60 ms to destroy on the UI thread."""
    assert not isinstance(charts, QGraphicsView) and charts.findChildren(QGraphicsView) == []


def test_the_chart_draws_the_score_bars_the_threshold_and_the_cumulative_dots(charts):
    image = charts.grab().toImage()
    b = 1
    for i, score in enumerate(charts.blocks[b].scores, start=1):
        x = round(charts.x_for(b, i))
        inside = image.pixelColor(x, round(charts.y_for(b, score / 2)))  # half-way up the bar
        above = image.pixelColor(x + 3, round(charts.y_for(b, score + 0.04)))  # over it (beside the dot)
        assert close_to(inside, theme.block_color(b)), (i, inside.name())
        assert not close_to(above, theme.block_color(b)), (i, above.name())
    threshold_row = round(charts.y_for(b, 0.9))
    plot = charts.plot_rect(b)
    red = [x for x in range(int(plot.left()), int(plot.right())) if close_to(image.pixelColor(x, threshold_row), theme.ERROR, 80)]
    assert len(red) > plot.width() / 4  # a dashed line across the plot
    dot = image.pixelColor(round(charts.x_for(b, 2)), round(charts.y_for(b, 0.925)))
    assert close_to(dot, theme.TEXT, 60), dot.name()


def test_where_each_block_stopped_is_marked_and_numbered(charts):
    image = charts.grab().toImage()
    for b, ran in enumerate(ITERATIONS):
        x = round(charts.halt_x(b))
        column = [image.pixelColor(x, y) for y in range(round(charts.y_for(b, 1.0)), round(charts.y_for(b, 0.05)))]
        dark = [c for c in column if close_to(c, theme.TEXT_MUTED, 60)]
        assert len(dark) > 0.8 * len(column), f"Block {b + 1}: no stop line after iteration {ran}"
        assert ran in charts.iteration_labels(b)
    assert charts.halt_x(2) < charts.x_for(2, 2)  # block 3 stopped before its second iteration


def test_a_long_blocks_stop_is_numbered_even_between_its_ticks(qtbot, charts):
    charts.set_halting([[0.1] * 6, [], [], []], [[0.1 * i for i in range(1, 7)], [], [], []], [7, 1, 1, 1],
                       [36, 1, 1, 1], 0.9)
    labels = charts.iteration_labels(0)
    assert 7 in labels and 36 in labels and len(labels) <= 8
    gaps = [charts.x_for(0, b) - charts.x_for(0, a) for a, b in zip(labels, labels[1:])]
    assert min(gaps) >= charts.fontMetrics().horizontalAdvance("36")  # no two numbers on top of each other


def test_every_block_explains_itself_in_its_tooltip_and_to_a_screen_reader(charts):
    assert charts.summary(0).startswith("Block 1 stopped after iteration 2 of 2")
    assert "ran to its cap" in charts.summary(0) and "0.30" in charts.summary(0)
    assert charts.summary(1).startswith("Block 2 stopped after iteration 2 of 3")
    assert "reached the threshold 0.9 at iteration 2" in charts.summary(1)
    assert "0.50, 0.85" in charts.summary(1) and "0.50, 0.93" in charts.summary(1)
    # a halting mode limited to one iteration here: no decision to make (QA: "no halting decision in this mode"
    # under Mode "Adaptive")
    assert "in this mode" not in charts.summary(3)
    assert charts.summary(3).startswith("Block 4 ran 1 of 1 iteration: its halting is limited to one iteration")
    assert "no halting decision to make" in charts.summary(3)
    assert charts.accessibleDescription().splitlines()[0] == charts.summary(0).splitlines()[0]
    middle = charts.chart_rect(2).center()
    assert charts.block_at(QPointF(middle)) == 2


def test_without_a_threshold_a_fixed_mode_says_so_in_one_line_not_four_grey_charts(charts):
    """QA: in the fixed modes every card drew four charts of grey columns under a halting score axis."""
    charts.set_halting([[], [], [], []], [[], [], [], []], [2, 2, 2, 1], CAPS, None)
    assert all(block.threshold is None for block in charts.blocks)
    assert "set number of iterations" in charts.note() and "no halting decision" in charts.note()
    assert charts.height() <= 3 * charts.fontMetrics().lineSpacing() < charts.row_height()  # a line, not a row
    image = charts.grab().toImage()
    colours = {theme.ERROR, *(theme.block_color(b) for b in range(4))}  # no threshold line, no score bar
    drawn = [(x, y) for x in range(0, image.width(), 2) for y in range(image.height())
             if any(close_to(image.pixelColor(x, y), colour, 40) for colour in colours)]
    assert drawn == []
    charts.set_halting([[0.3], [], [], []], [[0.3], [], [], []], [2, 1, 1, 1], [2, 1, 1, 1], 0.9)  # adaptive again
    assert charts.note() is None and charts.height() >= charts.row_height()


@pytest.mark.parametrize("width, rows", [(420, 2), (800, 1)])
def test_every_chart_and_its_title_lie_inside_the_widget(charts, width, rows):
    charts.resize(width, charts.height())
    assert charts.rows() == rows and charts.height() >= rows * charts.row_height()
    for b in range(4):
        chart = charts.chart_rect(b)
        assert charts.rect().contains(chart), (b, chart, charts.rect())
        assert chart.contains(charts.title_rect(b)) and chart.contains(charts.plot_rect(b).toRect())
        assert charts.plot_rect(b).height() >= 60 and charts.plot_rect(b).width() >= 40
        assert QPoint(0, 0) != chart.topLeft() or b == 0


def test_a_block_that_ran_past_its_cap_paints_inside_its_own_chart_only(qtbot, styled_app):
    """Review: data with more iterations run (or more scores) than the cap drew its columns, bars, dots and stop
    line over the next block's chart."""
    def painted(overrun: bool):
        widget = HaltingCharts(4)
        qtbot.addWidget(widget)
        widget.resize(800, widget.height())
        first = ([0.1] * 5, [0.1 * i for i in range(1, 6)], 6) if overrun else ([], [], 0)
        widget.set_halting([first[0], [], [], []], [first[1], [], [], []], [first[2], 1, 1, 1], [3, 3, 3, 3], 0.9)
        return widget, widget.grab().toImage()

    widget, spilled = painted(True)
    _, clean = painted(False)
    assert widget.columns == 4  # side by side: the next chart is just right of the first
    own = widget.chart_rect(0)
    outside = [(x, y) for x in range(0, spilled.width(), 2) for y in range(0, spilled.height(), 2)
               if not own.contains(x, y) and spilled.pixelColor(x, y) != clean.pixelColor(x, y)]
    assert outside == [], f"{len(outside)} pixels painted outside block 1's chart, e.g. {outside[:5]}"


def test_a_block_whose_every_score_is_nan_says_so_not_that_its_mode_has_no_halting(charts):
    """Review: a diverged model (every halting score NaN) with a threshold set was said to have "no halting
    decision in this mode"; that mode has one, the scores were not numbers."""
    charts.set_halting([[NAN, NAN, NAN]] * 4, [[NAN, NAN, NAN]] * 4, [4, 4, 4, 4], [4, 4, 4, 4], 0.99, [None] * 4)
    summary = charts.summary(0)
    assert "in this mode" not in summary
    assert summary.startswith("Block 1 ran 4 of 4 iterations") and "no valid halting score" in summary
    assert "threshold 0.99" in summary
    # fixed modes (no threshold) keep their words
    charts.set_halting([[NAN] * 3] * 4, [[NAN] * 3] * 4, [2, 2, 2, 2], [4, 4, 4, 4], None)
    assert charts.summary(0) == "Block 1 ran 2 of 4 iterations (no halting decision in this mode)."


def test_a_chart_of_no_blocks_is_empty_not_an_error(qtbot, styled_app):
    widget = HaltingCharts(0)  # was ZeroDivisionError
    qtbot.addWidget(widget)
    widget.set_halting([], [], [], [], 0.9)
    widget.resize(400, 100)
    widget.show()
    widget.grab()
    assert widget.rows() == 0 and widget.height() == 0
    assert widget.sizeHint().width() >= 0 and widget.minimumSizeHint().width() >= 0


def test_blocks_limited_to_one_iteration_say_so_in_one_line_not_four_empty_charts(qtbot, styled_app):
    """QA: a model calibrated to at most 1 iteration per block showed four empty grey boxes per card."""
    charts = HaltingCharts(4)
    qtbot.addWidget(charts)
    charts.resize(800, charts.height())
    charts.show()
    charts.set_halting([[], [], [], []], [[], [], [], []], [1, 1, 1, 1], [1, 1, 1, 1], 0.9)
    assert "no halting decision" in charts.note()
    assert charts.height() <= 3 * charts.fontMetrics().lineSpacing() < charts.row_height()  # a line, not a row
    image = charts.grab().toImage()
    text = QColor(theme.TEXT_MUTED)
    assert sum(close_to(image.pixelColor(x, y), text.name(), 60)
               for x in range(0, image.width(), 2) for y in range(image.height())) > 20  # the note is painted

    charts.resize(300, charts.height())  # narrow: the note wraps onto more lines, none cut off
    qtbot.waitUntil(lambda: charts.height() > 2 * charts.fontMetrics().lineSpacing(), timeout=2_000)

    charts.set_halting([[0.3], [], [], []], [[0.3], [], [], []], [2, 1, 1, 1], [2, 1, 1, 1], 0.9)  # one block decides
    assert charts.note() is None and charts.height() == charts.rows() * charts.row_height() + (charts.rows() - 1) * 6
    assert charts.plot_caption(0) is None and "no halting decision" in charts.plot_caption(1)


def test_the_chart_of_a_one_iteration_block_captions_its_plot(charts):
    assert charts.blocks[3].one_iteration and "no halting decision" in charts.plot_caption(3)
    assert all(charts.plot_caption(b) is None for b in range(3))


def test_painting_measures_the_value_axis_labels_once_per_font(charts, monkeypatch):
    """Every point painted asked for the axis width, measuring "0", ".5" and "1" again (QA: 16,000 times while
    150 dropped images were shown)."""
    from PySide6.QtGui import QFont, QFontMetrics

    measured = []
    original = QFontMetrics.horizontalAdvance
    monkeypatch.setattr(QFontMetrics, "horizontalAdvance",
                        lambda self, text, *args: measured.append(text) or original(self, text, *args))
    charts.grab()
    charts.grab()
    assert measured.count(".5") <= 1, measured.count(".5")
    font = QFont(charts.font())
    font.setPointSizeF(font.pointSizeF() * 2)
    charts.setFont(font)  # a larger font: measured again, once
    charts.grab()
    assert 1 <= measured.count(".5") <= 2, measured.count(".5")
