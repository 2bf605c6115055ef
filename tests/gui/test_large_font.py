"""A larger application font (a user's accessibility setting) must enlarge the whole app evenly:
titles stay bigger than the text under them, rows and charts grow instead of cutting text off,
and axis labels thin out instead of overlapping."""
from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.gui

#: Point sizes added to the app's 10-pt font: what "large text" settings give.
LARGER = 4


@pytest.fixture
def large_font(qtbot, styled_app):
    """The application font LARGER points up for one test, then back."""
    from PySide6.QtGui import QFont

    original = QFont(styled_app.font())
    font = QFont(original)
    font.setPointSizeF(original.pointSizeF() + LARGER)
    styled_app.setFont(font)
    yield font
    styled_app.setFont(original)


def test_card_titles_stay_larger_than_the_text_under_a_larger_font(qtbot, large_font):
    """The style sheet pinned card titles ("Dataset", "Run log", "System") at 11 pt: under a 14-pt
    application font they were smaller than the fields they head."""
    from PySide6.QtWidgets import QLabel

    from iamnn_studio.gui.forms.fields import FormCard
    from iamnn_studio.gui.widgets.section import FigureTile, Section

    card = FormCard("Dataset")
    qtbot.addWidget(card)
    card.show()
    title = card.findChild(QLabel)
    assert title.objectName() == "CardTitle"
    body = large_font.pointSizeF()
    assert title.font().pointSizeF() > body, (title.font().pointSizeF(), body)

    section = Section("Iterations per block", "caption")  # the Study tab's section headings
    qtbot.addWidget(section)
    section.show()
    assert section.title.font().pointSizeF() > body
    tile = FigureTile("Test accuracy")  # the big number of a figure tile stays big
    qtbot.addWidget(tile)
    tile.show()
    assert tile.value.font().pointSizeF() > 1.5 * body


def test_plot_titles_follow_a_larger_font(qtbot, large_font):
    """Plot titles were 9 pt whatever the font: tiny over tick labels drawn in the 14-pt app font."""
    import pyqtgraph as pg
    from PySide6.QtGui import QFontMetricsF

    from iamnn_studio.gui.plots import style_plot

    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    plot = style_plot(widget.getPlotItem(), "Loss")
    item = plot.titleLabel.item
    title_height = item.boundingRect().height() - 2 * item.document().documentMargin()  # the text's own height
    assert title_height >= 0.8 * QFontMetricsF(large_font).height(), title_height


@pytest.mark.parametrize("pixels", [40, 60, 90, 140, 220])
@pytest.mark.parametrize("font_pt", [10, 14, 20])
def test_loss_axis_labels_never_overlap(qtbot, styled_app, pixels, font_pt):
    """A log axis labelled 1, 2, 5 of every decade whatever its height: on the Train tab's Loss plot
    under a 2x scale or a 14-pt font, "10 5 2 1 0.5" were stacked on top of each other."""
    from PySide6.QtGui import QFont, QFontMetricsF

    from iamnn_studio.gui.plots import LogAxis

    axis = LogAxis("left")
    font = QFont(styled_app.font())
    font.setPointSize(font_pt)
    axis.setStyle(tickFont=font)
    line = QFontMetricsF(font).height()
    low, high = math.log10(0.4), math.log10(15.0)
    (_, values), = axis.logTickValues(low, high, pixels, [])
    assert values, "at least one label"
    per_decade = pixels / (high - low)
    gaps = [(b - a) * per_decade for a, b in zip(values, values[1:])]
    assert all(gap >= line for gap in gaps), (axis.logTickStrings(values, 1.0, None), gaps, line)
    if pixels >= 220 and font_pt == 10:  # a tall plot keeps the 1-2-5 labels
        assert axis.logTickStrings(values, 1.0, None) == ["0.5", "1", "2", "5", "10"]


def test_probability_rows_fit_a_larger_font(qtbot, large_font):
    """Top-5 rows were 20 px whatever the font: 14-pt class names touched and ran into the bars."""
    from PySide6.QtGui import QFont, QFontMetrics

    from iamnn_studio.gui.widgets.prediction_card import ProbabilityBars

    bars = ProbabilityBars(rows=5)
    qtbot.addWidget(bars)
    bars.set_items([("horizontal stripes", 0.9), ("dot grid", 0.05), ("diagonal", 0.03), ("ring", 0.01), ("plus", 0.01)])
    bars.resize(400, bars.height())
    bars.show()
    bold = QFont(bars.font())
    bold.setBold(True)
    line = QFontMetrics(bold).lineSpacing()
    assert bars.font().pointSizeF() == large_font.pointSizeF()
    assert bars.height() >= 5 * (line + 2), (bars.height(), line)
    bars.grab()  # paints without error at the new row height


def test_halting_charts_keep_their_axis_labels_under_a_larger_font(qtbot, large_font):
    """The charts' row was 150 px whatever the font: under 14 pt the iteration numbers under
    each chart were cut off at the bottom of the card."""
    from iamnn_studio.gui.widgets.halting_chart import HaltingCharts

    charts = HaltingCharts(4)
    qtbot.addWidget(charts)
    charts.resize(1000, charts.height())
    charts.show()
    charts.set_halting([[0.4, 0.9], [0.99], [0.2, 0.3, 0.6], [1.0]], [[0.4, 1.3], [0.99], [0.2, 0.5, 1.1], [1.0]],
                       [2, 1, 3, 1], [2, 3, 4, 2], 0.95)
    qtbot.wait(100)  # the columns are refitted after the resize
    shown = charts.mapToScene(charts.viewport().rect()).boundingRect()
    for b, plot in enumerate(charts.plots):
        axis = plot.getAxis("bottom")
        labels = axis.mapRectToScene(axis.boundingRect())
        assert shown.contains(labels), (f"Block {b + 1}", labels, shown)
        assert axis.height() >= charts.fontMetrics().height(), (f"Block {b + 1}: numbers taller than their axis",
                                                                axis.height(), charts.fontMetrics().height())
        view = plot.getViewBox().sceneBoundingRect()
        assert view.height() >= 60, (f"Block {b + 1} plot area", view)


@pytest.mark.parametrize("width", [230, 300, 420])
def test_probability_percentages_stay_inside_the_bars_widget(qtbot, large_font, width):
    """With long class names under a 14-pt font, the name column must give way before the
    percentage is pushed past the widget's right edge ("100.0 %" was cut to "100.0 9")."""
    from iamnn_studio.gui.widgets.prediction_card import ProbabilityBars

    bars = ProbabilityBars(rows=2)
    qtbot.addWidget(bars)
    bars.set_items([("horizontal stripes with a long name", 0.9), ("dot grid", 0.1)])
    bars.resize(width, bars.height())
    bars.show()
    label, bar, value = bars.columns()
    assert label + bar + value <= bars.width(), (label, bar, value, bars.width())
    assert value >= bars.fontMetrics().horizontalAdvance("100.0 %")
