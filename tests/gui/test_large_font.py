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
    line = charts.fontMetrics().height()
    for b in range(4):
        chart, plot = charts.chart_rect(b), charts.plot_rect(b)
        assert charts.rect().contains(chart), (f"Block {b + 1}", chart, charts.rect())
        below = chart.bottom() + 1 - plot.bottom()  # room for the iteration numbers under the plot
        assert below >= line, (f"Block {b + 1}: numbers taller than the room under the plot", below, line)
        assert plot.height() >= 60, (f"Block {b + 1} plot area", plot)


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


# ---------------------------------------------------------------- the desktop's font size
@pytest.mark.parametrize("desktop_pt, expected", [(9, 10), (10, 10), (12, 12), (13.5, 13.5), (14, 14), (22, 16)])
def test_the_app_follows_a_larger_desktop_font_within_10_to_16_pt(styled_app, desktop_pt, expected):
    """app_font() was 10 pt whatever the desktop said: a user who set 14 pt to read comfortably got 10."""
    from PySide6.QtGui import QFont

    from iamnn_studio.gui.style import FONT_FAMILIES, app_font

    desktop = QFont("Sans Serif")
    desktop.setPointSizeF(desktop_pt)
    font = app_font(desktop)
    assert font.pointSizeF() == expected
    assert font.families() == FONT_FAMILIES  # the app's own look, only the size follows


def test_the_app_font_reads_the_desktop_font_from_the_application(styled_app):
    """Without an argument the application's font (the desktop's until apply_style) decides; a
    desktop font given in pixels counts too (24 px at 96 dpi are 18 pt: clamped to 16)."""
    from PySide6.QtGui import QFont

    from iamnn_studio.gui.style import MAX_POINT_SIZE, app_font

    original = QFont(styled_app.font())
    try:
        larger = QFont(original)
        larger.setPointSizeF(12)
        styled_app.setFont(larger)
        assert app_font().pointSizeF() == 12
        in_pixels = QFont(original)
        in_pixels.setPixelSize(24)
        dpi = styled_app.primaryScreen().logicalDotsPerInchY()
        assert app_font(in_pixels).pointSizeF() == min(MAX_POINT_SIZE, round(24 * 72 / dpi * 2) / 2)
    finally:
        styled_app.setFont(original)


def test_scaled_px_keeps_10_pt_sizes_and_grows_with_the_line_height(styled_app):
    from PySide6.QtGui import QFont, QFontMetricsF

    from iamnn_studio.gui.style import app_font, scaled_px

    base = app_font(QFont())
    assert base.pointSizeF() == 10 and scaled_px(280, base) == 280  # the default look is unchanged
    large = QFont(base)
    large.setPointSizeF(14)
    ratio = QFontMetricsF(large).height() / QFontMetricsF(base).height()
    assert scaled_px(280, large) == round(280 * ratio) > 280


# ---------------------------------------------------------------- the tabs at 960 x 640
def assert_whole_and_inside(widget, container, name: str) -> None:
    """A shown widget at least its size hint wide (its text not cut) and within ``container``."""
    assert widget.isVisible(), name
    assert widget.width() >= widget.sizeHint().width(), (f"{name} squeezed", widget.width(), widget.sizeHint().width())
    rect = widget.rect().translated(widget.mapTo(container, widget.rect().topLeft()))
    assert container.rect().contains(rect), (f"{name} sticks out", rect, container.rect())


def assert_apart(widgets, name: str) -> None:
    rects = [w.geometry().translated(w.parentWidget().mapToGlobal(w.parentWidget().rect().topLeft()))
             for w in widgets if w.isVisible()]
    for i, first in enumerate(rects):
        for second in rects[i + 1:]:
            assert not first.intersects(second), (f"{name}: buttons overlap", first, second)


@pytest.fixture
def font_pt(request, styled_app):
    """The application font at ``request.param`` points for one test, then back."""
    from PySide6.QtGui import QFont

    original = QFont(styled_app.font())
    font = QFont(original)
    font.setPointSizeF(request.param)
    styled_app.setFont(font)
    yield request.param
    styled_app.setFont(original)


@pytest.mark.parametrize("font_pt", [10, 14, 16], indirect=True)
def test_the_runs_buttons_fit_a_960_px_window(qtbot, font_pt, tmp_path):
    """At 14 pt the five buttons were squeezed into a 960 px row ("pen in Stud", "ntinue traini")."""
    from iamnn_studio.gui.runs_view import RunsView

    view = RunsView()
    qtbot.addWidget(view)
    view.resize(960, 560)
    view.show()
    view.detail.setText(str(tmp_path / "runs" / "a-run"))
    qtbot.wait(50)
    assert view.width() == 960, "the buttons' row must not need more than a 960 px window gives"
    buttons = [view.reveal_button, view.train_from_button, view.continue_button, view.use_button, view.open_button]
    for button in buttons:
        assert_whole_and_inside(button, view, button.text())
    assert_apart(buttons + [view.detail], "Runs")
    assert view.detail.height() >= view.detail.heightForWidth(view.detail.width())  # the detail is not cut
    if font_pt == 10:  # the 10-pt look: the detail beside the buttons, on one line
        assert view.detail.geometry().right() < view.reveal_button.x()
        assert len({button.y() for button in buttons}) == 1


@pytest.mark.parametrize("font_pt", [10, 14], indirect=True)
def test_the_train_tab_fits_960_x_640(qtbot, font_pt, window):
    """Under a 14-pt font the settings column (a fixed 400 px) cut its fields off at the right, and the
    header squeezed "Ready to train" to one word per line beside its buttons. Views sized by the font must not
    push the window's least size past 960 x 640 either (a 1024 x 768 screen): checked first, on the window as it
    opened (one window for both checks: building one takes a second or two)."""
    from PySide6.QtCore import QPoint, QSize

    from tests.gui.test_layout import resize_and_settle

    hint = window.minimumSizeHint()
    assert hint.width() <= 960 and hint.height() <= 640, hint

    resize_and_settle(qtbot, window, (960, 640))
    assert window.size() == QSize(960, 640)  # the window's minimum still allows it
    training = window.training
    scroll = training.form.pages.currentWidget()
    content = scroll.widget()
    assert content.width() <= scroll.viewport().width(), ("form rows cut off", content.width(), scroll.viewport().width())
    assert content.width() >= content.minimumSizeHint().width()
    header = training.header
    for button in (header.start, header.pause, header.stop):
        assert_whole_and_inside(button, header, button.text())
    assert_apart([header.start, header.pause, header.stop], "header")
    for label in (header.title, header.subtitle):  # whole lines, not cut at the bottom of the card
        assert label.height() >= label.heightForWidth(label.width()), label.text()
    if font_pt == 10:  # the 10-pt look: buttons beside the title, the column as wide as before
        assert header.start.mapTo(header, QPoint()).y() < header.title.mapTo(header, QPoint()).y() + header.title.height()
        assert training.form.width() == 420

    # after a completed run: the result and its buttons (the 10-pt row was wider than the header at 14 pt)
    header.result.setText("Completed: 61.5 % validation accuracy, 83.3 % on the test images")
    header.actions.setVisible(True)
    header.open_study.setVisible(True)
    header.use_model.setVisible(True)
    # a stopped run adds "Continue from last checkpoint": every button whole, none over another
    for shown in ([header.open_study, header.use_model], [header.continue_run, header.open_study, header.use_model]):
        for button in shown:
            button.setVisible(True)
        qtbot.wait(100)
        for button in shown:
            assert button.width() >= button.sizeHint().width(), button.text()
            assert 0 <= button.mapTo(header, button.rect().topLeft()).x() <= header.width() - button.width(), button.text()
            if font_pt == 10:
                assert_whole_and_inside(button, header, button.text())
        assert_apart(shown + [header.result], "result actions")


@pytest.mark.parametrize("size", [(960, 640), (1280, 800)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("font_pt", [14], indirect=True)
def test_the_live_plot_titles_stay_over_their_own_plots(qtbot, font_pt, window, size):
    """At 14 pt in a 960 x 640 window "MACs / image (M)" ran into "Images per second" (a title no
    variant of which fitted was drawn whole): shorter words or "…" instead, each over its own plot."""
    from tests.gui.test_layout import assert_titles_fit, feed_a_run, resize_and_settle

    training = window.training
    feed_a_run(training)
    resize_and_settle(qtbot, window, size)
    assert_titles_fit(training.monitor, training.monitor.plots)
    if size == (1280, 800):  # room enough: the whole titles
        for name, words in (("macs", "MACs / image (M)"), ("speed", "Images per second"), ("lr", "Learning rate")):
            assert words in training.monitor.plots[name].titleLabel.text, name


@pytest.mark.parametrize("font_pt", [10, 14], indirect=True)
def test_the_live_plots_keep_a_readable_height_at_960_x_640(qtbot, font_pt, window):
    """At 14 pt in 960 x 640 the six plots shared what the header and the run log left: curves 20 px tall
    under their titles. The page scrolls instead (to the log and the system panel below)."""
    from tests.gui.test_layout import feed_a_run, resize_and_settle

    training = window.training
    feed_a_run(training)
    resize_and_settle(qtbot, window, (960, 640))
    heights = {name: plot.getViewBox().size().height() for name, plot in training.monitor.plots.items()}
    assert min(heights.values()) >= 45, heights
    scroll = training.live_page
    assert scroll.widget().height() <= scroll.viewport().height() or scroll.verticalScrollBar().maximum() > 0


@pytest.mark.parametrize("font_pt", [10, 14], indirect=True)
def test_a_stopped_runs_header_gets_the_height_it_needs_at_960_x_640(qtbot, font_pt, window, tmp_path):
    """At 14 pt the header card of a finished run needed 288 px and got 258 (the live page's least height,
    the System panel's, floored the tabs under it): its last row of buttons was cut off. The live page
    scrolls instead; at 10 pt there is room and nothing scrolls."""
    from tests.gui.test_layout import feed_a_run, resize_and_settle

    run_dir = tmp_path / "runs" / "layout"
    (run_dir / "checkpoints").mkdir(parents=True)
    for name in ("last.pt", "best.pt"):
        (run_dir / "checkpoints" / name).write_bytes(b"")
    training = window.training
    feed_a_run(training)
    training._on_event("finished", {"reason": "stopped", "step": 120, "run_dir": str(run_dir),
                                    "best_accuracy": 0.615})
    training._on_session_finished()
    resize_and_settle(qtbot, window, (960, 640))
    header = training.header
    buttons = [header.continue_run, header.open_study, header.use_model, header.start, header.pause, header.stop]
    assert all(button.isVisible() for button in buttons)
    assert header.height() >= header.heightForWidth(header.width()), (header.height(), header.heightForWidth(header.width()))
    for button in buttons:
        assert_whole_and_inside(button, header, button.text())
    assert_apart(buttons + [header.result], "stopped run")
    assert window.minimumSizeHint().height() <= 640
    plots = [plot.getViewBox().size().height() for plot in training.monitor.plots.values()]
    assert min(plots) >= 45, plots  # the live page scrolls to the log rather than squeeze the curves (24 px at 10 pt)
    resize_and_settle(qtbot, window, (1280, 800))
    if font_pt == 10:  # where there is room, nothing scrolls
        assert not training.live_page.verticalScrollBar().isVisible()


@pytest.mark.parametrize("font_pt", [14], indirect=True)
def test_a_stopped_runs_header_keeps_its_buttons_whole_under_a_long_name(qtbot, font_pt, window, tmp_path):
    """At 14 pt in 960 x 640 a run name that wrapped to two lines cut "Open in Study" and "Use this model" off
    (22 of 37 px showed): the Dataset preview page's least height (160 px) floored the tabs under the header.
    The name now takes one line, shortened with "…"."""
    from tests.gui.test_layout import feed_a_run, resize_and_settle

    name = "a-rather-long-run-name-for-layout-checks"
    run_dir = tmp_path / "runs" / name
    (run_dir / "checkpoints").mkdir(parents=True)
    for checkpoint in ("last.pt", "best.pt"):
        (run_dir / "checkpoints" / checkpoint).write_bytes(b"")
    training = window.training
    feed_a_run(training)
    training._on_event("finished", {"reason": "stopped", "step": 5, "run_dir": str(run_dir)})
    training._on_session_finished()
    training.header.title.setText(name)  # a real run's title (without a session, feed_a_run's header is "Ready")
    resize_and_settle(qtbot, window, (960, 640))
    header = training.header
    assert header.title.height() < 1.5 * header.title.fontMetrics().height(), "the name takes one line"
    assert header.title.is_elided() and header.title.toolTip() == name
    assert header.height() >= header.heightForWidth(header.width()), (header.height(), header.heightForWidth(header.width()))
    for button in (header.continue_run, header.open_study, header.use_model):
        assert button.visibleRegion().boundingRect().height() == button.height(), f"{button.text()} cut off"
        assert_whole_and_inside(button, header, button.text())
    training.pages.setCurrentIndex(0)  # the preview page scrolls rather than floor the header
    qtbot.wait(50)
    assert header.height() >= header.heightForWidth(header.width())


@pytest.mark.parametrize("font_pt", [10, 14], indirect=True)
def test_the_settings_column_widens_first_to_show_its_choices_whole(qtbot, font_pt, window):
    """At 14 pt the settings column kept its least width in any window: the Architecture choice read
    "IamNN (shared, adap" even at 1280 x 800. It widens first where the window has room; where it has
    not (960 px), a choice cut short is whole in its tooltip. At 10 pt the column stays 420 px."""
    from tests.gui.test_layout import resize_and_settle

    training = window.training
    boxes = [training.form.model.architecture, training.form.model.halting, training.form.training.device]
    resize_and_settle(qtbot, window, (1280, 800))
    qtbot.wait(50)
    for box in boxes:
        assert box.width() >= box.whole_text_width(), (box.currentText(), box.width(), box.whole_text_width())
        assert not box.text_is_cut() and not box.tooltip_text().startswith(box.currentText())
    plots_side = training.splitter.sizes()[1]
    assert plots_side >= 540, plots_side
    if font_pt == 10:
        assert training.form.width() == 420

    resize_and_settle(qtbot, window, (960, 640))
    qtbot.wait(50)
    assert training.form.width() == max(420, training.form.minimumWidth())  # the run's side keeps its room
    for box in boxes:
        if box.text_is_cut():
            assert box.tooltip_text().startswith(box.currentText())


def test_the_study_tab_grows_its_fixed_sizes_with_the_font(qtbot, large_font, tmp_path):
    """The compare list (280 px), the progress bar (180), the note beside Evaluate (320) and the
    histograms (200 px high) kept their 10-pt sizes under a 14-pt font: names and axes cramped."""
    from PySide6.QtGui import QFont, QFontMetricsF

    from iamnn_studio.gui.analysis_view import AnalysisView
    from tests.gui.test_analysis_view import made_up_eval, make_run, show

    ten = QFont(large_font)
    ten.setPointSizeF(10)
    ratio = QFontMetricsF(large_font).height() / QFontMetricsF(ten).height()
    view = AnalysisView()
    qtbot.addWidget(view)
    view.resize(960, 600)
    view.show()
    show(qtbot, view, make_run(tmp_path / "runs", "iamnn-run", evaluation=made_up_eval()))
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=30_000)
    assert view.compare_list.width() >= view.one_iteration.sizeHint().width()  # as wide as its checkbox
    assert view.progress.width() >= 180 * ratio - 1
    assert view.evaluate_note.maximumWidth() >= 320 * ratio - 1
    assert view.histograms.height() >= 200 * ratio - 1
    assert view.training.height() >= 220 * ratio - 1
    import pyqtgraph as pg

    plots = [item for item in view.histograms.ci.items if isinstance(item, pg.PlotItem)]
    assert len(plots) == 4
    for b, plot in enumerate(plots):  # the bars keep room under the larger title and tick labels
        assert plot.getViewBox().sceneBoundingRect().height() >= 80, f"block {b + 1}: plot area cramped"
    assert not view.page.horizontalScrollBar().isVisible()


@pytest.mark.parametrize("width", [960, 1200])
def test_the_use_tab_legend_wraps_between_entries_only(qtbot, large_font, width):
    """At 14 pt the halting legend wrapped inside its entries ("cumulative" / "score")."""
    from PySide6.QtGui import QTextDocument

    from iamnn_studio.gui.inference_view import InferenceView

    view = InferenceView()
    qtbot.addWidget(view)
    view.resize(width, 640)
    view.show()
    view.legend.setVisible(True)
    view.totals_label.setText("1 image · mean 599 k MACs · total 599 k MACs")  # beside the legend, as with images
    qtbot.wait(50)
    document = QTextDocument()
    document.setDefaultFont(view.legend.font())
    document.setHtml(view.legend.text())
    document.setDocumentMargin(0)
    document.setTextWidth(view.legend.contentsRect().width())
    document.size()  # lays the text out
    lines = []
    block = document.begin()
    while block.isValid():
        layout = block.layout()
        for i in range(layout.lineCount()):
            line = layout.lineAt(i)
            text = block.text()[line.textStart(): line.textStart() + line.textLength()]
            lines.append(text.replace("\xa0", " ").replace("\u2060", ""))
        block = block.next()
    for entry in ("halting score of each iteration", "●— cumulative score", "- - - threshold", "iterations run",
                  "┃ stopped"):
        assert any(entry in line for line in lines), (entry, lines)


@pytest.mark.parametrize("mode", ["adaptive", "fixed"])
def test_the_use_tab_controls_fit_960_px_under_a_larger_font(qtbot, large_font, mode):
    """The slider (200 px), its value (40 px) and the busy bar (90 px) kept their 10-pt widths."""
    from iamnn_studio.gui.inference_view import InferenceView
    from iamnn_studio.gui.style import scaled_px

    view = InferenceView()
    qtbot.addWidget(view)
    view.resize(960, 640)
    view.show()
    view.mode_combo.setCurrentIndex(view.mode_combo.findData(mode))
    view._update_controls()
    view.busy.setVisible(True)
    qtbot.wait(50)
    assert view.threshold_value.width() >= view.threshold_value.fontMetrics().horizontalAdvance("0.000")
    assert view.threshold_slider.minimumWidth() == scaled_px(200) > 200
    assert view.busy.width() == scaled_px(90) > 90
    for widget in (view.mode_combo, view.threshold_value, view.busy):
        assert_whole_and_inside(widget, view, type(widget).__name__)


@pytest.mark.parametrize("bigger", [0, LARGER])
def test_the_dataset_preview_shows_whole_image_counts(qtbot, styled_app, bigger):
    """The counts column had a bare 48-px minimum: at 14 pt a narrow form cut "54,000" to "l,000"."""
    import numpy as np
    from PySide6.QtGui import QFont
    from PySide6.QtWidgets import QLabel

    from iamnn_studio.gui.forms.dataset_panel import DatasetPreview, PreviewData

    original = QFont(styled_app.font())
    font = QFont(original)
    font.setPointSizeF(original.pointSizeF() + bigger)
    styled_app.setFont(font)
    try:
        classes = ["T-shirt/top", "Trouser", "Ankle boot"]
        images = np.zeros((6, 1, 28, 28), dtype=np.uint8)
        data = PreviewData(name="made-up", classes=classes, images=images, labels=np.repeat(np.arange(3), 2),
                           counts={"train": [54_000, 53_999, 6], "val": [6_000, 5_000, 1], "test": [10_000, 999, 1]},
                           in_channels=1, image_size=28)
        preview = DatasetPreview()
        qtbot.addWidget(preview)
        preview.resize(300, 400)  # narrower than the grid wants: the counts must not be what gives way
        preview.show()
        preview.set_data(data)
        qtbot.waitExposed(preview)
        qtbot.waitUntil(lambda: preview.grid_host.findChild(QLabel).isVisible())  # new children show on the next loop
        counts = [label for label in preview.grid_host.findChildren(QLabel) if label.text()[:1].isdigit()]
        assert len(counts) == 9
        for label in counts:
            assert label.width() >= label.fontMetrics().horizontalAdvance(label.text()), (label.text(), label.width())
    finally:
        styled_app.setFont(original)


@pytest.mark.parametrize("font_pt", [10, 14], indirect=True)
def test_the_use_tabs_top5_bars_stay_readable_at_960_x_640(qtbot, font_pt, window, tmp_path):
    """At 14 pt in a 960 x 640 window the class names, percentages and four halting charts left the
    top-5 bars ~20 px wide: a 90 % answer and a 10 % one looked alike."""
    from PySide6.QtCore import QPoint

    from iamnn_studio.gui.style import scaled_px
    from iamnn_studio.gui.widgets.prediction_card import PredictionCard
    from tests.gui.test_inference_view import constant_halting_checkpoint
    from tests.gui.test_layout import resize_and_settle

    checkpoint = constant_halting_checkpoint(tmp_path / "best.pt")
    image = tmp_path / "photo.png"
    from PIL import Image

    Image.new("L", (40, 30), color=90).save(image)
    view = window.view("Use")
    for index in range(window.tabs.count()):
        if window.tabs.tabText(index) == "Use":
            window.tabs.setCurrentIndex(index)
    resize_and_settle(qtbot, window, (960, 640))
    with qtbot.waitSignal(view.checkpoint_loaded, timeout=60_000):
        view.load_checkpoint(str(checkpoint))
    view.add_image_files([str(image)])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None and not view.is_busy(),
                    timeout=60_000)
    card = view.cards[0]
    assert isinstance(card, PredictionCard)
    # the long class names a real dataset has (Fashion-MNIST, the shapes)
    card.probabilities.set_items([("horizontal stripes", 0.62), ("vertical stripes", 0.2), ("Ankle boot", 0.1),
                                  ("dot grid", 0.05), ("diagonal", 0.03)])
    qtbot.wait(100)
    label, bar, value = card.probabilities.columns()
    assert bar >= scaled_px(90), (f"{font_pt} pt: top-5 bars {bar} px wide", label, bar, value)
    viewport = view.scroll.viewport()
    assert card.mapTo(viewport, QPoint(card.width(), 0)).x() <= viewport.width()  # no sideways scrolling
    assert not view.scroll.horizontalScrollBar().isVisible()
    for b in range(4):  # the charts still whole inside the card
        assert card.charts.rect().contains(card.charts.chart_rect(b))


@pytest.mark.parametrize("font_pt", [10, 14], indirect=True)
def test_the_progress_line_of_a_run_fits_its_header_at_960_x_640(qtbot, font_pt, window):
    """At 14 pt in 960 x 640 "epoch 3/4 · step 120/200 · 11 h 19 min left" was cut at both ends without "…"
    ("3/4 · step 120/200 · 11 h 19 mi", past the card's edge) and the progress bar shrank to 111 px. Its first
    parts go first (the time left matters most), the whole line is in the tooltip, and the bar keeps its room."""
    from tests.gui.test_layout import feed_a_run, resize_and_settle

    training = window.training
    header = training.header
    header.progress_row.setVisible(True)  # as a run's start shows it
    feed_a_run(training)
    whole = "epoch 3/4 · step 120/200 · 11 h 19 min left"
    header.eta.setText(whole)
    resize_and_settle(qtbot, window, (960, 640))
    eta, bar = header.eta, header.progress
    shown = getattr(eta, "shown_text", eta.text)()  # what it shows (a plain label shows its text)
    assert eta.text() == whole and shown.endswith("11 h 19 min left"), shown
    assert eta.fontMetrics().horizontalAdvance(shown) <= eta.contentsRect().width(), (shown, eta.width())
    right = eta.mapTo(header, eta.rect().topRight()).x()
    assert right < header.width(), ("the progress line sticks out of its card", right, header.width())
    assert bar.width() >= eta.fontMetrics().averageCharWidth() * 12, bar.width()
    if shown != whole:
        assert whole in eta.toolTip()
    if font_pt == 10:  # room enough at 10 pt: the whole line
        assert shown == whole


@pytest.mark.parametrize("font_pt", [14], indirect=True)
def test_a_choice_cut_short_at_960_px_ends_with_an_ellipsis(qtbot, font_pt, window):
    """At 14 pt in a 960 x 640 window the Architecture box read "IamNN (shared, adap": cut mid-word with no
    sign that more follows. It ends with "…" inside the box's text field (the whole choice is in its tooltip)."""
    from PySide6.QtWidgets import QStyle, QStyleOptionComboBox

    from tests.gui.test_layout import resize_and_settle

    resize_and_settle(qtbot, window, (960, 640))
    box = window.training.form.model.architecture
    assert box.text_is_cut()  # the case at hand: no room to widen the column at 960 px
    shown = getattr(box, "shown_text", box.currentText)()
    option = QStyleOptionComboBox()
    box.initStyleOption(option)
    field = box.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                       QStyle.SubControl.SC_ComboBoxEditField, box)
    assert shown.endswith("…") and shown[:-1] in box.currentText(), shown
    assert box.fontMetrics().horizontalAdvance(shown) <= field.width(), (shown, field.width())
    assert box.tooltip_text().startswith(box.currentText())
