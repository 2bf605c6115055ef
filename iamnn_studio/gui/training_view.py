"""The Train tab: the run form on the left; on the right the run's controls, progress and live plots.

Engine events arrive as queued signals from the training thread (``worker.TrainingSession``).
Each event only appends to numpy buffers and notes the latest figures; one 250 ms timer
(``plots.PlotRefresher``) redraws what changed and refreshes the labels, so the window's cost
does not grow with the event rate.
"""
from __future__ import annotations

import html
import time
from array import array
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .forms.fields import muted
from .forms.model_panel import format_count, format_range
from .forms.run_form import RunForm
from .plots import (BufferedCurve, LogAxis, PlotRefresher, RoomyAxis, add_curve, add_level_line,
                    consecutive_means, fit_title, style_plot)
from .style import BLOCK_COLORS, COLORS, SERIES, SPACING, configure_pyqtgraph, scaled_pt, scaled_px, set_role
from .system_panel import SystemPanel
from .widgets.action_row import ActionRowLayout, action_row_policy
from .widgets.elided_label import ElidedLabel
from ..split_words import evaluation_word
from .worker import BackgroundTasks, TrainingSession

MAX_LOG_LINES = 2000
#: A resumed run's earlier steps are replayed as at most this many points (means of consecutive steps):
#: a days-long run logs 200,000 step events, and appending them one by one held the UI thread for 3 s.
HISTORY_POINTS = 2000
#: The step-event figures the Train tab plots, averaged when the history is thinned.
_STEP_FIGURES = ("loss", "accuracy", "macs", "images_per_s", "lr")
#: What a run does after its last training step, in order, as the header says it. Calibration and
#: evaluation can take minutes on a CPU (the threshold sweep runs the test split many times), so the
#: header names the phase and counts its seconds: the window must never look stuck at 100 %.
AFTER_TRAINING = {
    "validating": "Measuring the final model",
    "calibrating": "Calibrating the halting on held-out images",
    "evaluating": "Evaluating the best model: accuracy, compute per image and the threshold sweep",  # split: in the log
}
#: The settings column's width and least width at the 10-pt font (under a larger one its rows decide).
FORM_WIDTH, FORM_MIN_WIDTH = 420, 400
#: What the run's side keeps before the settings column widens past that width to show its choices whole
#: (its width beside the 420-px column in a 960-px window).
RUN_SIDE_WIDTH = 540
#: The least room, in characters, the run's title keeps beside the header's buttons (else they go under it).
TITLE_CHARS = 16
#: Shorter titles, longest first, for a plot too narrow for its own (a 14-pt font in a 960-px window).
SHORT_TITLES = {"accuracy": ["Acc. %"], "macs": ["MACs (M)"], "speed": ["Images / s", "Img / s"], "lr": ["LR"]}
#: About the least height of each plot's curve area (45-56 px in the tests): below it a curve reads as a line
#: of noise (at 14 pt in a 960 x 640 window the six plots got 0-20 px); the live page scrolls to the log instead.
PLOT_MIN_HEIGHT = 56
#: The ResNet baseline has no halting threshold to sweep.
EVALUATING_BASELINE = "Evaluating the best model: accuracy and compute per image"


class LiveMonitor(pg.GraphicsLayoutWidget):
    """Six plots of a run: loss, accuracy, iterations per block (with caps), MACs, speed, learning rate."""

    def __init__(self, parent: QWidget | None = None) -> None:
        configure_pyqtgraph()
        super().__init__(parent)
        self.ci.layout.setContentsMargins(4, 4, 4, 4)
        self.ci.layout.setHorizontalSpacing(10)
        self.ci.layout.setVerticalSpacing(8)

        def add_plot(row: int, col: int, **axes: pg.AxisItem) -> pg.PlotItem:
            # no "100150" along the steps, nor values on top of each other in a 960 x 640 window
            roomy = {"bottom": RoomyAxis("bottom"), "left": RoomyAxis("left")}
            return self.addPlot(row=row, col=col, axisItems={**roomy, **axes}, enableMenu=False)

        loss = style_plot(add_plot(0, 0, left=LogAxis("left")), "Loss")
        loss.setLogMode(x=False, y=True)  # an early validation loss of 15 must not flatten the curve at 0.5
        accuracy = style_plot(add_plot(0, 1), "Accuracy %")
        iterations = style_plot(add_plot(0, 2), "Iterations")
        # The block legend: coloured squares where the plot is wide enough, else coloured digits.
        blocks = [(color, str(block + 1)) for block, color in enumerate(BLOCK_COLORS)]
        fit_title(iterations, _legend_titles("Iterations", blocks))
        macs = style_plot(add_plot(1, 0), "MACs / image (M)", x_label="step")
        speed = style_plot(add_plot(1, 1), "Images per second", x_label="step")
        lr = style_plot(add_plot(1, 2), "Learning rate", x_label="step")
        # Narrow plots (a large font in a small window) take shorter words before any "…".
        fit_title(speed, ["Images per second"], SHORT_TITLES["speed"])
        fit_title(lr, ["Learning rate"], SHORT_TITLES["lr"])
        self.plots = {"loss": loss, "accuracy": accuracy, "iterations": iterations, "macs": macs,
                      "speed": speed, "lr": lr}
        self.held_out_split = ""
        self._label_held_out("val")
        for column in range(3):  # equal columns, whatever the titles' lengths
            self.ci.layout.setColumnStretchFactor(column, 1)
            self.ci.layout.setColumnPreferredWidth(column, 10)
        self.curves: dict[str, BufferedCurve] = {
            "train_loss": add_curve(loss, SERIES["train"], "train", smooth=True),
            "val_loss": add_curve(loss, SERIES["val"], "validation", symbol="o"),
            "train_accuracy": add_curve(accuracy, SERIES["train"], "train", smooth=True),
            "val_accuracy": add_curve(accuracy, SERIES["val"], "validation", symbol="o"),
            "macs": add_curve(macs, SERIES["train"], "train", smooth=True),
            "val_macs": add_curve(macs, SERIES["val"], "validation", symbol="o"),
            "images_per_s": add_curve(speed, SERIES["other"], smooth=True),
            "lr": add_curve(lr, SERIES["other"]),
        }
        for block, color in enumerate(BLOCK_COLORS):
            self.curves[f"iterations_{block}"] = add_curve(iterations, color, f"block {block + 1}", smooth=True)
        self.cap_lines = [add_level_line(iterations, 0, color) for color in BLOCK_COLORS]
        for line in self.cap_lines:
            line.setVisible(False)
        iterations.setYRange(0, 4)
        # A flat series (one step so far, a constant rate) must not zoom its axis into rounding
        # noise ("693.22342290"): each axis spans at least a readable amount.
        for plot, span in ((loss, 0.3), (accuracy, 2.0), (macs, 0.5), (speed, 10.0)):  # loss: log10 units
            plot.getViewBox().setLimits(minYRange=span)
        self._fit_minimum_height()

    def _fit_minimum_height(self) -> None:
        """Two rows of plots, each with about ``PLOT_MIN_HEIGHT`` of curves, sized by the font."""
        line = self.fontMetrics().height()
        # a row's title, tick labels and the "step" label under the lower row, with pyqtgraph's spacing: four
        # to five lines of text per row (70 px measured at 10 pt, a 15-px line)
        self.setMinimumHeight(2 * (PLOT_MIN_HEIGHT + 4 * line) + 8)

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._fit_minimum_height()

    def _label_held_out(self, split: str) -> None:
        """Name the per-epoch points after the split they were measured on: "val", or "test" for a run
        without a validation split (the engine then only monitors on the test images)."""
        if split == self.held_out_split:
            return
        self.held_out_split = split
        entries = [(SERIES["train"], "train"), (SERIES["val"], split)]
        for name, title in (("loss", "Loss"), ("accuracy", "Accuracy %"), ("macs", "MACs / image (M)")):
            fit_title(self.plots[name], _legend_titles(title, entries), SHORT_TITLES.get(name, ()))

    def reset(self, caps: tuple[int, ...] | None) -> None:
        self._label_held_out("val")
        for curve in self.curves.values():
            curve.clear()
        for name, plot in self.plots.items():  # no axis range left over from the previous run
            if name != "iterations":
                plot.getViewBox().setRange(yRange=(0, 1), padding=0)
                plot.enableAutoRange(axis="y")
        for block, line in enumerate(self.cap_lines):
            visible = caps is not None and block < len(caps)
            line.setVisible(visible)
            if visible:
                line.setValue(caps[block])
        if caps:
            self.plots["iterations"].setYRange(0, max(caps) + 0.5)

    def add_step(self, data: dict[str, Any]) -> None:
        x = float(data.get("step", 0))
        self.curves["train_loss"].append(x, data.get("loss"))
        self.curves["train_accuracy"].append(x, _percent(data.get("accuracy")))
        self.curves["macs"].append(x, _millions(data.get("macs")))
        self.curves["images_per_s"].append(x, data.get("images_per_s"))
        self.curves["lr"].append(x, data.get("lr"))
        for block, value in enumerate((data.get("iterations") or [])[:4]):
            self.curves[f"iterations_{block}"].append(x, value)

    def add_epoch(self, data: dict[str, Any]) -> None:
        x = float(data.get("step", 0))
        self._label_held_out("test" if data.get("val_split") == "test" else "val")
        self.curves["val_loss"].append(x, data.get("val_loss"))
        self.curves["val_accuracy"].append(x, _percent(data.get("val_accuracy")))
        self.curves["val_macs"].append(x, _millions(data.get("macs")))

    def prepend_history(self, records: list[dict[str, Any]], upto_step: int | None) -> None:
        """Put a resumed run's earlier points (metrics.jsonl records) before the ones already shown."""
        current = {name: curve.data() for name, curve in self.curves.items()}
        current = {name: (x.copy(), y.copy()) for name, (x, y) in current.items()}
        for curve in self.curves.values():
            curve.clear()
        for record in records:
            if upto_step is not None and record.get("step", 0) > upto_step:
                continue
            if record.get("event") == "step":
                self.add_step(record)
            elif record.get("event") == "epoch":
                self.add_epoch(record)
        for name, (xs, ys) in current.items():
            for x, y in zip(xs, ys):
                self.curves[name].append(float(x), None if np.isnan(y) else float(y))

    def curves_list(self) -> list[BufferedCurve]:
        return list(self.curves.values())

    def curves_by_plot(self) -> list[list[BufferedCurve]]:
        """The curves grouped by the plot that shows them (the refresher redraws plot by plot)."""
        groups: dict[int, list[BufferedCurve]] = {}
        for curve in self.curves.values():
            groups.setdefault(id(curve.item.getViewBox()), []).append(curve)
        return list(groups.values())

    def set_step_range(self, total_steps: int | None) -> None:
        """Fix every plot's step axis to the run's length: the axes then stop re-laying out their
        labels on each redraw as the curves grow (the main cost of a refresh)."""
        if not total_steps:
            for plot in self.plots.values():
                plot.enableAutoRange(axis="x")
            return
        for plot in self.plots.values():
            plot.setXRange(0, float(total_steps), padding=0.02)


class RunLog(QPlainTextEdit):
    """The run's story, one entry per line (wrapped, never cut); the oldest go past MAX_LOG_LINES."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LOG_LINES)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setStyleSheet(f"QPlainTextEdit {{ background: {COLORS['surface']}; border: 1px solid {COLORS['border']};"
                           " border-radius: 6px; padding: 4px; }")

    def add(self, text: str, *, muted: bool = False, warning: bool = False) -> None:
        color = COLORS["warning"] if warning else COLORS["text_muted"] if muted else COLORS["text"]
        self.appendHtml(f"<span style='color:{color}'>{html.escape(text)}</span>")
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def lines(self) -> list[str]:
        return self.toPlainText().splitlines()


class ProgressText(ElidedLabel):
    """The run's progress line ("epoch 3/4 · step 120/200 · 11 h 19 min left"), right-aligned. Where it does
    not fit, its first parts go first (the time left matters most), then "…"; the whole line is its tooltip.
    It asks for ``preferred`` px (so that the bar does not jump as the line changes) but takes less before the
    bar goes under its least width: at 14 pt in a 960-px window the line was cut at both ends without "…" and
    the bar shrank to 111 px."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("", parent)
        self.preferred = 0
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        set_role(self, "muted")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        hint = super().sizeHint()
        return QSize(max(self.preferred, hint.width()), hint.height())

    def _elide(self) -> None:
        width = max(0, self.contentsRect().width())
        metrics = self.fontMetrics()
        parts = self.text().split(" · ")
        while len(parts) > 1 and metrics.horizontalAdvance(" · ".join(parts)) > width:
            parts = parts[1:]
        shown = metrics.elidedText(" · ".join(parts), Qt.TextElideMode.ElideLeft, width)
        if shown != self.shown_text():
            QLabel.setText(self, shown)
        self._update_tooltip()


class RunTitle(ElidedLabel):
    """The header's title. A run's name (``setText``) takes one line, shortened with "…" and whole in the tooltip,
    as Study shows it: wrapped at its hyphens, a long name took four lines and pushed the plots down. What the tab
    is ready for (``show_state``: "Ready to train longer") wraps at its spaces in a narrow column, as a sentence."""

    _wraps = False

    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        self._show(text, wraps=False)

    def show_state(self, words: str) -> None:
        self._show(words, wraps=True)

    def _show(self, text: str, wraps: bool) -> None:
        self._wraps = wraps
        self.setWordWrap(wraps)
        super().setText(text)

    def _elide(self) -> None:
        if not self._wraps:
            super()._elide()
        elif self.shown_text() != self.text():
            QLabel.setText(self, self.text())
            self._update_tooltip()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QLabel.sizeHint(self) if self._wraps else super().sizeHint()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QLabel.minimumSizeHint(self) if self._wraps else super().minimumSizeHint()


class RunHeader(QFrame):
    """Run title and state, the Start / Pause / Stop buttons, the progress bar, the follow-up actions."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Card")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(SPACING["page"], 12, SPACING["page"], 12)
        layout.setSpacing(SPACING["row"])
        # Title and sentence on the left, the buttons on the right; where the buttons leave the title
        # too little room (a large font in a narrow window), the buttons go under it.
        self.top = top = ActionRowLayout(spacing=SPACING["row"])
        top.align_top = True
        titles_box = QWidget()
        titles = QVBoxLayout(titles_box)
        titles.setContentsMargins(0, 0, 0, 0)
        titles.setSpacing(2)
        self.title = RunTitle()
        self.title.show_state("Ready to train")
        self.title.setObjectName("CardTitle")
        self.subtitle = muted("Choose a dataset and a model, then press Start.")
        self.subtitle.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.subtitle.setWordWrap(True)  # a long sentence wraps; it never squeezes the buttons
        titles.addWidget(self.title)
        titles.addWidget(self.subtitle)
        top.set_note(titles_box)
        self.start = QPushButton("Start training")
        self.start.setObjectName("Primary")
        self.pause = QPushButton("Pause")
        self.stop = QPushButton("Stop")
        for button in (self.start, self.pause, self.stop):
            top.addWidget(button)
        layout.addLayout(top)

        self.progress_row = QWidget()  # shown once a run starts; until then it takes no room
        progress_row = QHBoxLayout(self.progress_row)
        progress_row.setContentsMargins(0, 0, 0, 0)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.eta = ProgressText()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.eta)
        self.progress_row.setVisible(False)
        layout.addWidget(self.progress_row)

        # The result beside its buttons, or above them when they need the width (they wrap if need be).
        self.actions_row = actions = ActionRowLayout(spacing=SPACING["row"])
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.open_study = QPushButton("Open in Study")
        self.use_model = QPushButton("Use this model")
        self.continue_run = QPushButton("Continue from last checkpoint")
        actions.set_note(self.result)
        for button in (self.continue_run, self.open_study, self.use_model):
            actions.addWidget(button)
        self.actions = QWidget()
        self.actions.setLayout(actions)
        action_row_policy(self.actions)
        self.actions.setVisible(False)
        layout.addWidget(self.actions)
        self._fit_to_font()

    def _fit_to_font(self) -> None:
        """Sizes that follow the font: the buttons' width, the time-left column and the room
        the title keeps beside the buttons (about 16 characters, as at 10 pt in a 960 px window)."""
        for button in (self.start, self.pause, self.stop):
            button.setMinimumWidth(0)  # the size hint below is the text's own, not the last minimum
            button.setMinimumWidth(max(96, button.sizeHint().width()))
        self.eta.preferred = scaled_px(240, self.eta.font())
        self.eta.updateGeometry()
        self.progress.setMinimumWidth(12 * self.fontMetrics().averageCharWidth())  # the bar never shrinks to a stub
        chars = self.fontMetrics().averageCharWidth()
        self.top.note_room = TITLE_CHARS * chars
        self.actions_row.note_room = TITLE_CHARS * chars
        self.top.invalidate()
        self.actions_row.invalidate()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._fit_to_font()


class TrainingView(QWidget):
    """Configure a run, start it, watch it, and go on from its result."""

    run_state_changed = Signal(str)  # a short sentence for the status bar
    run_started = Signal()
    run_ended = Signal(str)  # outcome: completed, max_steps, stopped, failed, not_started (refused before training)
    open_in_study = Signal(str)  # run folder
    use_model = Signal(str)  # checkpoint path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs_dir = str(Path("runs").resolve())
        self.session: TrainingSession | None = None
        self.last_run_dir: str | None = None
        self.outcome: str | None = None
        self.failure: str | None = None
        self._engine_ready = False
        self._state = "idle"
        self._latest: dict[str, Any] = {}
        self._progress_clock: tuple[float, float] | None = None  # (time, progress) of the first step event
        self._started_at = time.monotonic()
        self._resumed_step: int | None = None
        self._phase = "training"  # then the AFTER_TRAINING phases
        self._phase_started = time.monotonic()
        self._phase_fraction: float | None = None  # share of an after-training phase done, once it reports
        self._training_started = False  # the current or last run got as far as its "started" event
        self._log_run_dir: str | None = None  # the run whose story the run log shows
        self._settings_from_started = False  # the form takes a continued run's settings from its "started" event
        self._before_launch: dict[str, Any] = {}  # what a run that does not start gives back (page, form)
        self._refused_form: dict[str, Any] | None = None  # the form's values when the engine refused to start
        # After a run that ended, the header tells its result until the form is set to start from other weights
        # ("Train longer…"): the form's Start from when the run ended (None: the form is being settled).
        self._holds_result = False
        self._result_start_from: str | None = None
        self._calibrates = False  # the run fits its halting head after training
        self._baseline = False  # the unshared ResNet: nothing halts, no threshold to sweep
        self._evaluation: dict[str, Any] = {}  # the "evaluated" event's summary
        self._tasks = BackgroundTasks(self)

        self.form = RunForm()
        self.header = RunHeader()
        # The live page (six plots, the run log, the hardware plots) is built when first needed: a run starts,
        # the tab is opened or a caller asks for one of its parts. The Train tab opens on the dataset preview,
        # and the plots were a third of the window's start-up.
        self._live: _LivePage | None = None
        self._shut_down = False
        self.refresher = PlotRefresher(self, groups_per_tick=3)  # tracks the live plots once they are built
        # The plots scroll rather than floor the header: in a short window under a large font a finished
        # run's result and buttons need more height than the plots' least left it (at 14 pt in 960 x 640
        # the last row of buttons was cut off); where there is room, nothing scrolls.
        self.live_page = _scrolling_page(None)
        # The preview scrolls too: the tabs take their pages' largest least height, and the preview's (160 px
        # at 14 pt) cut a stopped run's last buttons off in 960 x 640 when its name took two lines.
        self.preview_page = _scrolling_page(self.form.preview)

        self.pages = QTabWidget()
        self.pages.setDocumentMode(True)
        self.pages.addTab(self.preview_page, "Dataset preview")
        self.pages.addTab(self.live_page, "Live training")

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(SPACING["page"] - 4, SPACING["page"], SPACING["page"], SPACING["row"])
        right_layout.setSpacing(SPACING["row"])
        right_layout.addWidget(self.header)
        right_layout.addWidget(self.pages, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.form)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        self.splitter = splitter
        self._form_width_chosen = False  # the user dragged the splitter: the column keeps their width
        splitter.splitterMoved.connect(self._on_splitter_moved)
        self._fit_form_width()
        # the rest to the plots: under a large font the form takes no more than its rows need
        splitter.setSizes([max(FORM_WIDTH, self.form.minimumWidth()), 860])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

        self.refresher.on_refresh(self._refresh_labels)
        self.pages.currentChanged.connect(self._on_page_changed)

        h = self.header
        h.start.clicked.connect(self.start_run)
        h.start.installEventFilter(self)  # a click on the greyed-out Start shows the field that holds it back
        h.pause.clicked.connect(self.toggle_pause)
        h.stop.clicked.connect(self.stop_run)
        h.open_study.clicked.connect(lambda: self.last_run_dir and self.open_in_study.emit(self.last_run_dir))
        h.use_model.clicked.connect(self._use_model)
        h.continue_run.clicked.connect(lambda: self.last_run_dir and self.continue_run(self.last_run_dir))
        self.form.validity_changed.connect(lambda _valid: self._update_buttons())
        # The reason Start is greyed out can change while the form stays invalid (another bad folder).
        self.form.revalidated.connect(self._update_buttons)
        self._update_buttons()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt name)
        # A disabled button gets no clicked signal, but its filter still sees the mouse: Start greyed out by a field
        # in red brings that field into view (it may be scrolled out of sight in a small window).
        if "header" not in self.__dict__:  # Qt may deliver an event while Python tears the view down
            return False
        if (watched is self.header.start and event.type() == QEvent.Type.MouseButtonRelease
                and not self.header.start.isEnabled() and self.session is None and self._engine_ready):
            self.form.reveal_first_error()
        return super().eventFilter(watched, event)

    def _fit_form_width(self) -> None:
        """The settings column is never narrower than its widest row: its scroll area cuts off, it
        does not scroll sideways (a fixed 400 px cut the fields off under a 14-pt font)."""
        scroll = self.form.pages.widget(1)
        content = scroll.widget()
        needed = content.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() \
            + 2 * scroll.frameWidth()
        self.form.setMinimumWidth(max(FORM_MIN_WIDTH, needed))

    def _widen_form(self) -> None:
        """Widen the settings column where the window has room, until its choices show whole
        (``RunForm.preferred_width``); the run's side keeps ``RUN_SIDE_WIDTH`` first. At 14 pt the
        column kept its least width in any window: "IamNN (shared, adap" even at 1280 px."""
        sizes = self.splitter.sizes()
        if self._form_width_chosen or not self.form.isVisible() or len(sizes) != 2 or sum(sizes) <= 0:
            return
        total = sum(sizes)
        least = max(FORM_WIDTH, self.form.minimumWidth())
        width = max(least, min(self.form.preferred_width(), total - RUN_SIDE_WIDTH))
        if width != sizes[0]:
            self.splitter.setSizes([width, total - width])

    def _on_splitter_moved(self, _position: int, _index: int) -> None:
        self._form_width_chosen = True

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._widen_form()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._fit_form_width()
            QTimer.singleShot(0, self._widen_form)  # once the rows have their new sizes

    # ------------------------------------------------------------------ set-up
    def set_engine_ready(self, info: Any, initial_values: dict[str, Any] | None) -> None:
        self._engine_ready = True
        self.form.set_engine_ready(info.device_name, info.cuda_available, initial_values)
        self._fit_form_width()  # the choices are filled in now: the rows are as wide as they get
        for box in self.form.choice_boxes():  # a longer choice may widen the column (once laid out)
            box.currentTextChanged.connect(lambda _text: QTimer.singleShot(0, self._widen_form))
        QTimer.singleShot(0, self._widen_form)
        if not info.has("iamnn_studio.engine.trainer"):
            self.header.subtitle.setText(f"Training is unavailable: {info.missing['iamnn_studio.engine.trainer']}")
        if self._live is not None:  # else when it is built
            self._start_system_panel()
        self._update_buttons()

    # ------------------------------------------------------------- live page
    @property
    def monitor(self) -> LiveMonitor:
        return self._live_parts().monitor

    @property
    def log(self) -> RunLog:
        return self._live_parts().log

    @property
    def system(self) -> SystemPanel:
        return self._live_parts().system

    @property
    def bottom_row(self) -> QSplitter:
        return self._live_parts().bottom_row

    @property
    def live_page_built(self) -> bool:
        return self._live is not None

    @Slot(int)
    def _on_page_changed(self, index: int) -> None:
        if self.pages.widget(index) is self.live_page:
            self._live_parts()

    def _live_parts(self) -> _LivePage:
        """The live page's widgets, built on first use."""
        if self._live is None:
            self._live = _LivePage()
            self.live_page.setWidget(self._live.page)
            for curves in self._live.monitor.curves_by_plot():
                self.refresher.track(curves)
            if self._engine_ready and not self._shut_down:  # no polling nothing would stop
                self._start_system_panel()
        return self._live

    def _start_system_panel(self) -> None:
        self.system.start()
        self._share_bottom_row()

    def _share_bottom_row(self) -> None:
        """The log and the hardware plots split the row by what the plots need: four GPU plots take three
        fifths, CPU and RAM half (the log was a 150-250 px column wrapping every few words)."""
        log, system = (2, 3) if self.system.gpu_available else (1, 1)
        self.bottom_row.setSizes([log * 1000, system * 1000])  # proportions: the splitter scales them

    def set_runs_dir(self, path: str) -> None:
        self.runs_dir = str(path)

    @property
    def is_running(self) -> bool:
        return self.session is not None

    @property
    def state(self) -> str:
        """idle, starting, running, paused or stopping."""
        return self._state

    def holds_run(self, run_dir: str | Path) -> bool:
        """Whether the run in ``run_dir`` is the one this tab is starting, training, pausing or stopping."""
        if self.session is None or not self.last_run_dir:
            return False
        return Path(self.last_run_dir).resolve() == Path(run_dir).resolve()

    # ---------------------------------------------------------------- commands
    @Slot()
    def start_run(self) -> bool:
        """What Start does; False (and why, under the title) whenever the button would be disabled."""
        if self.session is not None or not self._engine_ready:
            return False
        blocker = self._start_blocker()  # as the button: a batch too big, a dataset still being checked…
        try:
            config = self.form.config()
        except (ValueError, TypeError) as error:
            blocker = str(error)
        if blocker:
            self.form.revalidate()
            self._set_state("idle", f"Cannot start: {blocker}")
            self.form.reveal_first_error()
            return False
        self._launch(config, run_dir=None, resume=False, title=config.name)
        return True

    def continue_run(self, run_dir: str) -> bool:
        """Resume a run from its last.pt with the settings it was started with; the (locked) form shows
        them, and gets the user's own back if the run does not start."""
        if self.session is not None or not self._engine_ready:
            return False
        form_before = self.form.values()
        # The engine trains with the settings saved in the run; the form shows them from its config.toml
        # now, or (that file unreadable) from the "started" event, which carries the settings it uses.
        self._settings_from_started = self.form.load_file(Path(run_dir) / "config.toml") is not None
        self._launch(None, run_dir=run_dir, resume=True, title=Path(run_dir).name)
        self._before_launch["form"] = form_before
        return True

    def _launch(self, config: Any, *, run_dir: str | None, resume: bool, title: str) -> None:
        # The plots and the log keep the previous run until this one has started: a run refused before
        # training (another process trains it, its checkpoint is unreadable) leaves them as they were.
        self._before_launch = {"page": self.pages.currentIndex()}
        self.outcome = self.failure = None
        self._refused_form = None
        self._holds_result = False
        self.last_run_dir = run_dir  # a new run has no folder until it starts: a failure must not point at the last one
        self._resumed_step = None
        self._training_started = False
        self._latest = {}
        self._evaluation = {}
        self._progress_clock = None
        self._enter_phase("training")
        self._started_at = time.monotonic()
        self.header.actions.setVisible(False)
        self.header.progress.setValue(0)
        self.header.progress_row.setVisible(True)
        self.header.eta.setText("")
        self.header.title.setText(title)
        self.session = TrainingSession(config, self.runs_dir, run_dir=run_dir, resume=resume, parent=self)
        self.session.event.connect(self._on_event)
        self.session.finished.connect(self._on_session_finished)
        self.pages.setCurrentIndex(1)
        self._set_state("starting", "Loading the data and building the model…")
        self.session.start()
        self.run_started.emit()

    @Slot()
    def toggle_pause(self) -> None:
        if self.session is None:
            return
        if self._state == "paused":
            self.session.resume()
        elif self._state == "running":
            self.session.pause()
            self.header.pause.setEnabled(False)  # until the trainer says it paused

    @Slot()
    def stop_run(self) -> None:
        if self.session is not None and self._state != "stopping":
            self.session.stop()
            self._set_state("stopping", "Stopping… (finishing the current step and saving last.pt)")

    # ------------------------------------------------------------------ events
    @Slot(str, object)
    def _on_event(self, kind: str, data: dict) -> None:
        handler = getattr(self, f"_event_{kind}", None)
        if handler is not None:
            handler(data)

    def _event_started(self, data: dict) -> None:
        self._training_started = True
        from iamnn_studio.engine.config import ModelConfig

        self.last_run_dir = data.get("run_dir") or self.last_run_dir
        config = data.get("config") or {}
        if self._settings_from_started and config:
            self._settings_from_started = False
            self.form.set_values(config)
        resumed = data.get("resumed_from_step")
        # Continuing the run the log tells keeps its story (its pauses, where it stopped); another run starts afresh.
        if resumed is None or self.last_run_dir != self._log_run_dir:
            self.log.clear()
        self._log_run_dir = self.last_run_dir
        caps = None
        try:
            caps = ModelConfig.from_dict(config.get("model", {})).caps
        except (ValueError, TypeError, KeyError):
            pass
        self.monitor.reset(caps)
        self._resumed_step = data.get("resumed_from_step")
        if self._resumed_step is not None and self.last_run_dir:
            self._replay_history(self.last_run_dir)
        self._latest.update(total_steps=data.get("total_steps"), total_epochs=data.get("total_epochs"),
                            device=data.get("device"), epoch=1)
        self.monitor.set_step_range(data.get("total_steps"))
        name = Path(self.last_run_dir).name if self.last_run_dir else config.get("name", "run")
        self.header.title.setText(name)
        low, high = (data.get("macs_range") or [None, None])[:2]
        facts = [f"on {data.get('device', '?')}"]
        if data.get("parameters"):
            facts.append(f"{format_count(data['parameters'])} parameters")
        if low is not None:
            facts.append(f"{format_range(low, high)} MACs per image")
        dataset = data.get("dataset") or {}
        if dataset:
            facts.append(f"{dataset.get('name')}: {dataset.get('train', 0):,} train images")
        self._add_log((f"Resumed at step {resumed:,} " if isinstance(resumed, int) else "Started ") + " · ".join(facts))
        self._calibrates = data.get("recipe") == "calibrated" and bool(config.get("calibrate_halting", True))
        self._baseline = (config.get("model") or {}).get("architecture") == "resnet"
        total = data.get("total_steps")
        if self._resumed_step is not None and total and self._resumed_step >= total:  # stopped after training
            self._enter_phase("calibrating" if self._calibrates else "evaluating")
        self._set_state("running")

    def _event_step(self, data: dict) -> None:
        self.monitor.add_step(data)
        self._latest.update(data)
        progress = float(data.get("progress") or 0.0)
        if self._progress_clock is None:
            self._progress_clock = (time.monotonic(), progress)
        if progress >= 1.0 and self._phase == "training":
            self._enter_phase("validating")

    def _event_epoch(self, data: dict) -> None:
        self.monitor.add_epoch(data)
        self._latest.update(epoch=min(int(data.get("epoch", 0)) + 1, int(data.get("total_epochs") or 10**9)))
        parts = [f"Epoch {data.get('epoch')}/{data.get('total_epochs', '?')}"]
        if data.get("train_loss") is not None:
            parts.append(f"train loss {data['train_loss']:.3f}")
        if data.get("val_accuracy") is not None:  # measured on the test split when there is no validation one
            parts.append(f"{'test' if data.get('val_split') == 'test' else 'val'} acc {data['val_accuracy']:.1%}")
        if data.get("iterations"):
            parts.append("iterations " + " · ".join(f"{v:.1f}" for v in data["iterations"]))
        if data.get("macs") is not None:
            parts.append(f"{format_count(data['macs'])} MACs")
        if data.get("images_per_s"):
            parts.append(f"{data['images_per_s']:.0f} img/s")
        self._add_log(" · ".join(parts))
        total_epochs, total_steps = data.get("total_epochs") or self._latest.get("total_epochs"), \
            self._latest.get("total_steps")
        last = (total_epochs and data.get("epoch", 0) >= total_epochs) or \
            (total_steps and data.get("step", 0) >= total_steps)
        if last and self._phase in ("training", "validating"):
            self._enter_phase("calibrating" if self._calibrates else "evaluating")

    def _event_checkpoint(self, data: dict) -> None:
        name = Path(str(data.get("path", ""))).name
        when = f"step {data['step']:,}" if isinstance(data.get("step"), int) else f"epoch {data.get('epoch')}"
        if data.get("refreshed_norm_statistics"):  # a stop's second save: the engine really saves it twice
            self._add_log(f"Saved {name} again with refreshed batchnorm statistics", muted_line=True)
            return
        if data.get("calibrated"):  # the same step's checkpoint again, now with its fitted halting head
            self._add_log(f"Saved the calibrated model to {name}", muted_line=True)
            return
        self._add_log(f"Saved {'best ' if data.get('best') else ''}checkpoint {name} at {when}", muted_line=True)

    def _event_paused(self, data: dict) -> None:
        self._set_state("paused", f"Paused at step {data.get('step')}")
        self._add_log(f"Paused at step {data.get('step')}", muted_line=True)

    def _event_resumed(self, data: dict) -> None:
        self._progress_clock = None  # the pause must not count in the ETA
        self._set_state("running")
        self._add_log(f"Resumed at step {data.get('step')}", muted_line=True)

    def _event_phase_progress(self, data: dict) -> None:
        phase = data.get("phase")
        if phase in AFTER_TRAINING and phase != self._phase:
            self._enter_phase(phase)
        if phase == self._phase:
            self._phase_fraction = float(data.get("fraction") or 0.0)

    def _event_calibrated(self, data: dict) -> None:
        text = "Halting calibrated"
        if data.get("threshold") is not None:
            text += f": threshold {data['threshold']:.3f}"
        if data.get("halting_caps"):
            text += f" · at most {'·'.join(map(str, data['halting_caps']))} iterations per block"
        if data.get("val_accuracy") is not None:
            text += f" · {'test' if data.get('val_split') == 'test' else 'val'} acc {data['val_accuracy']:.1%}"
        if data.get("val_macs") is not None:
            text += f" · {format_count(data['val_macs'])} MACs per image"
        self._add_log(text)
        self._enter_phase("evaluating")

    def _event_evaluated(self, data: dict) -> None:
        self._evaluation = dict(data)
        self._add_log(evaluated_text(data))

    def _event_log(self, data: dict) -> None:
        message = str(data.get("message", ""))
        if data.get("level") == "warning":  # e.g. a result the run folder could not take: it must stand out
            self.log.add(f"Warning: {message}", warning=True)
        else:
            self._add_log(message, muted_line=True)

    def _event_finished(self, data: dict) -> None:
        self.outcome = str(data.get("reason", "completed"))
        self.last_run_dir = data.get("run_dir") or self.last_run_dir
        words = {"completed": "Finished", "max_steps": "Finished (step limit reached)", "stopped": "Stopped"}
        outcome = words.get(self.outcome, "Finished")
        if self.outcome == "stopped" and isinstance(data.get("step"), int):
            outcome += f" at step {data['step']:,}; continue it from its last checkpoint at any time"
        text = " · ".join([outcome, *filter(None, [str(data.get("message") or "")]), *result_facts(data, self._evaluation)])
        self._add_log(text)
        self.header.result.setText(text)

    def _event_failed(self, data: dict) -> None:
        self.failure = str(data.get("reason") or "unknown error")
        self.last_run_dir = data.get("run_dir") or self.last_run_dir
        if not self._training_started:  # refused before training: nothing failed (_on_session_finished says why)
            self.outcome = "not_started"
            return
        self.outcome = "failed"
        self._add_log(f"Failed: {self.failure}")
        self.header.result.setText(f"<span style='color:{COLORS['error']}'>Failed: {self.failure}</span>")
        self.run_state_changed.emit(f"Training failed: {self.failure}")
        QMessageBox.critical(self, "Training failed", self.failure)

    @Slot()
    def _on_session_finished(self) -> None:
        session, self.session = self.session, None
        # every step trained, whatever ended the run after them (the phase's busy bar has reset the bar's value)
        steps_done = self._phase in AFTER_TRAINING
        self._enter_phase("training")
        if session is not None:
            session.deleteLater()
        outcome = self.outcome or ("stopped" if session is not None and session.stopping else "failed")
        self.outcome = outcome
        if outcome == "not_started":
            self._show_not_started()
            return
        self._holds_result, self._result_start_from = True, None
        if outcome == "stopped" and not self._training_started:  # stopped while its dataset downloaded
            self._show_not_started(stopped=True)
        else:
            self._show_ended_run(outcome, steps_done)
        self._result_start_from = self._start_from()  # the form as the user gets it back

    def _show_ended_run(self, outcome: str, steps_done: bool = False) -> None:
        """A run that trained has ended: what it did, and the buttons to go on from it. The bar is full once all
        its steps trained; a run stopped or failed during training keeps it where it ended."""
        if steps_done or outcome not in ("stopped", "failed"):
            self.header.progress.setValue(1000)
        step = self._latest.get("step")
        elapsed = time.monotonic() - self._started_at
        done = step - (self._resumed_step or 0) if isinstance(step, int) else 0  # this session's steps
        self.header.eta.setText(f"{done:,} step{'s' if done != 1 else ''} in {format_duration(elapsed)}"
                                if done > 0 else "")
        self._show_result_actions()
        sentences = {"completed": "Run finished", "max_steps": "Run finished (step limit)", "stopped": "Run stopped",
                     "failed": "Run failed"}
        status = f"Run failed: {self.failure or 'see the run log'}" if outcome == "failed" else None
        self._set_state("idle", sentences.get(outcome, "Run ended"), status=status)
        self.run_ended.emit(outcome)

    def _show_not_started(self, *, stopped: bool = False) -> None:
        """A run the engine refused before training (another process trains it, an unreadable checkpoint
        or data set): not a failed run. The previous run's plots and log stay, the page and the form the
        user had come back, and a warning says why it did not start. A run the user ``stopped`` before it
        trained (while its dataset downloaded) comes back the same way, without the warning."""
        resumed = self._before_launch.get("form") is not None
        name = self.header.title.text()
        self._settings_from_started = False
        if resumed:
            self.form.set_values(self._before_launch["form"])
            # The form's check wrote "Ready to train" over the run's name: the header tells the refusal, as for a
            # new run the engine refused (the run's name over "Could not start: …"), until the form changes.
            self.header.title.setText(name)
        self.pages.setCurrentIndex(self._before_launch.get("page", self.pages.currentIndex()))
        self._before_launch = {}
        self.header.progress_row.setVisible(False)
        self.header.actions.setVisible(False)
        self.header.eta.setText("")
        if stopped:  # the log has the engine's sentence ("Stopped · the download of ... was stopped; ...")
            self._set_state("idle", "Stopped before training")
            self.run_ended.emit("stopped")
            return
        reason = self._refusal_in_form_words(self.failure or "the engine gave no reason", mark=not resumed)
        sentence = f"Could not start: {reason}"
        self._add_log(sentence)
        self._refused_form = self.form.values()  # the reason holds until the form changes
        self._set_state("idle", sentence)
        self.run_ended.emit("not_started")
        if self.window().isVisible():  # not once the window has closed (it was closed while the run started)
            QMessageBox.warning(self, f"Could not continue {name}" if resumed else "Could not start training",
                                _sentence(reason, name))

    def _refusal_in_form_words(self, reason: str, mark: bool) -> str:
        """The engine's reason about a setting ("init_from: …") under the form's name for it ("Start from: …"),
        and with ``mark`` (the form shows the refused run's settings, not the user's own back from a continued
        run's) that field in red; the form's own check marks it again where it finds the same."""
        from .forms.validation import split_error

        field, message = split_error(ValueError(reason))
        rows = {key: row for panel in (self.form.dataset, self.form.model, self.form.training)
                for key, row in panel.rows.items()}
        row = next((rows[key] for key in (field, f"model.{field}", f"data.{field}") if field and key in rows), None)
        if row is None or not row.label.text():
            return reason
        if mark:
            row.show_error(message)
        return f"{row.label.text()}: {message}"

    # ----------------------------------------------------------------- display
    def _set_state(self, state: str, sentence: str | None = None, status: str | None = None) -> None:
        """New run state: ``sentence`` under the run's title, ``status`` (default: the same) in the status bar."""
        self._state = state
        default = {"starting": "Starting…", "running": "Training", "paused": "Paused", "stopping": "Stopping…",
                   "idle": "Idle"}
        sentence = sentence or default[state]
        self.header.subtitle.setText(sentence)
        self.header.subtitle.setToolTip("")  # the idle sentence's whole start-from path no longer applies
        self.run_state_changed.emit(status or sentence)
        self._update_buttons()

    def _update_buttons(self) -> None:
        h, state = self.header, self._state
        idle = self.session is None
        # A run keeps the settings it started with: editing them meanwhile would change nothing.
        self.form.setEnabled(idle)
        self.form.setToolTip("" if idle else "A run is in progress: the settings apply to the next run")
        h.start.setEnabled(idle and self._engine_ready and self.form.is_valid)
        h.start.setToolTip(self._start_hint() if h.start.isEnabled() else self._start_blocker())
        h.pause.setEnabled(state in ("running", "paused"))
        h.pause.setText("Resume" if state == "paused" else "Pause")
        h.stop.setEnabled(not idle and state != "stopping")
        # Before the first run, and after one the engine refused before training, the header says what Start
        # needs now: the refusal's reason only while the form is as it was refused (it told the old problem
        # after the user had fixed it, or had another one). After a run that trained, once the form is set to
        # train longer.
        refused = self.outcome == "not_started"
        if idle and self._engine_ready and (self.outcome is None or refused or self._leaves_result()):
            blocker = self._start_blocker()
            showing_refusal = refused and self._refused_form is not None
            if showing_refusal and not blocker and self.form.values() == self._refused_form:
                return  # "Could not start: …" still describes this form
            title, sentence = ("Not ready to train", blocker) if blocker else self._ready_words()
            h.title.show_state(title)
            h.subtitle.setText(sentence)
            start = "" if blocker else self._start_from()  # the sentence shortens a long name: whole here
            h.subtitle.setToolTip(str(Path(start).expanduser()) if start else "")
            if showing_refusal:  # the status bar's "Could not start: …" goes too
                self._refused_form = None
                self.run_state_changed.emit("Idle")

    def _leaves_result(self) -> bool:
        """Whether the header no longer tells the last run's result: the form now starts from other weights than
        when the run ended. QA: after "Train longer…" it still read "quick · Run finished (step limit)" with quick's
        buttons over the form filled for quick-longer. From then on it follows the form, as before any run."""
        if self._holds_result:
            start = self._start_from()
            if self._result_start_from is None or not start or start == self._result_start_from:
                return False
            self._drop_result()
        return True

    def leave_result(self) -> None:
        """The header stops telling the last run's result and says what Start will do: the form has been filled
        for another run (``MainWindow.train_from_run``)."""
        if self.session is None:  # else the header tells the run going on
            self._drop_result()
            self._update_buttons()

    def _drop_result(self) -> None:
        """The last run's result line, its buttons and its steps go, as before any run."""
        self._holds_result = False
        self.header.actions.setVisible(False)
        self.header.progress_row.setVisible(False)
        self.header.eta.setText("")

    def _start_from(self) -> str:
        return self.form.training.init_from.text().strip()

    def _ready_words(self) -> tuple[str, str]:
        """The header's title and sentence while Start can go: what Start will do. QA: after "Train longer…" it
        read "Ready to train · Choose a dataset and a model"; only a 15-second status-bar message said the run
        would start from the other run's weights. It says so as long as the form's "Start from" does."""
        start = self._start_from()
        if not start:
            return "Ready to train", "Choose a dataset and a model, then press Start."
        return ("Ready to train longer",  # short: beside the buttons the sentence gets a narrow column
                f"Starts from {weights_source(Path(start).expanduser())}: choose the epochs, then press Start.")

    def _start_blocker(self) -> str:
        if not self._engine_ready:
            return "The engine is still loading"
        if self.session is not None:
            return "A run is in progress"
        if self.form.errors:
            return "Fix the fields marked in red first"
        if self.form.dataset.checking():  # no verdict yet: the dataset's error (if any) is another folder's
            return self.form.dataset.checking_reason()
        if self.form.training.checking_start_from():
            return "Reading the checkpoint to start from…"
        return self.form.dataset_error or ""

    def _start_hint(self) -> str:
        """Start's tooltip while it is enabled: the batch's memory may still be on its way (not a reason to wait)."""
        if self.form.sizing_memory():
            return "The memory this batch needs is still being worked out; the run checks it before training"
        return ""

    def _enter_phase(self, phase: str) -> None:
        """Training, or one of the AFTER_TRAINING phases (the progress bar turns into a busy bar)."""
        if phase == self._phase:
            return
        self._phase, self._phase_started = phase, time.monotonic()
        self._phase_fraction = None
        busy = phase in AFTER_TRAINING
        self.header.progress.setRange(0, 0 if busy else 1000)
        if busy:
            self._add_log(self._phase_text(phase) + "…", muted_line=True)
            self._refresh_labels()

    def _phase_text(self, phase: str) -> str:
        return EVALUATING_BASELINE if phase == "evaluating" and self._baseline else AFTER_TRAINING[phase]

    @property
    def phase(self) -> str:
        """training, or validating / calibrating / evaluating once the training steps are done."""
        return self._phase

    def _refresh_labels(self) -> None:
        """Progress, ETA and the state line: on the refresher's tick, never per event."""
        latest = self._latest
        if self.session is None or not latest:
            return
        if self._phase in AFTER_TRAINING:
            self._show_after_training_phase()
            return
        progress = float(latest.get("progress") or 0.0)
        self.header.progress.setValue(int(progress * 1000))
        step, total = latest.get("step"), latest.get("total_steps")
        parts = []
        if latest.get("epoch") and latest.get("total_epochs"):
            parts.append(f"epoch {latest['epoch']}/{latest['total_epochs']}")
        if step is not None and total:
            parts.append(f"step {step:,}/{total:,}")
        eta = self._eta(progress)
        if eta is not None:
            parts.append(f"{format_duration(eta)} left")
        self.header.eta.setText(" · ".join(parts))
        if self._state == "running" and latest.get("accuracy") is not None:
            sentence = f"Training on {latest.get('device', '?')} · {latest.get('images_per_s', 0):.0f} img/s"
            if sentence != self.header.subtitle.text():
                self.header.subtitle.setText(sentence)
                self.run_state_changed.emit("Training · " + " · ".join(parts))

    def _show_after_training_phase(self) -> None:
        """"Calibrating halting on the validation images… 1 min 05 s" while a post-training phase runs."""
        phases = ["validating", *(["calibrating"] if self._calibrates else []), "evaluating"]
        number = phases.index(self._phase) + 1 if self._phase in phases else len(phases)
        step = self._latest.get("step")
        done = f"{step:,} steps trained" if step else "training done"
        self.header.eta.setText(f"{done} · after training, {number} of {len(phases)}")
        if self._state == "running":
            seconds = time.monotonic() - self._phase_started
            elapsed = format_duration(seconds)
            fraction = self._phase_fraction
            if fraction is not None:  # the phase reports progress: a real bar, and a time left once it means something
                self.header.progress.setRange(0, 1000)
                self.header.progress.setValue(int(fraction * 1000))
                elapsed = f"{fraction:.0%} · {elapsed}"
                if 0.05 <= fraction < 1.0 and seconds >= 5:
                    elapsed += f" · {format_duration(seconds / fraction * (1 - fraction))} left"
            sentence = f"{self._phase_text(self._phase)}… {elapsed}"
            if sentence != self.header.subtitle.text():
                self.header.subtitle.setText(sentence)
                self.run_state_changed.emit(f"{self._phase_text(self._phase).split(':')[0]}… {elapsed}")

    def _eta(self, progress: float) -> float | None:
        if self._progress_clock is None or self._state != "running":
            return None
        start_time, start_progress = self._progress_clock
        done = progress - start_progress
        elapsed = time.monotonic() - start_time
        if done <= 0 or elapsed < 1.0:
            return None
        return elapsed / done * (1.0 - progress)

    def _show_result_actions(self) -> None:
        h = self.header
        has_run = bool(self.last_run_dir)
        checkpoint = self.checkpoint_path()
        h.actions.setVisible(has_run or bool(self.failure))
        h.open_study.setVisible(has_run and self.outcome != "failed")
        h.use_model.setVisible(checkpoint is not None and self.outcome != "failed")
        last = Path(self.last_run_dir, "checkpoints", "last.pt") if has_run else None
        # A run that failed before training started (a resume that cannot load its checkpoint, data
        # that cannot be read) would fail the same way again: no "Continue" then.
        trained = self.outcome == "stopped" or (self.outcome == "failed" and self._training_started)
        h.continue_run.setVisible(bool(last and last.exists()) and trained)

    def checkpoint_path(self) -> str | None:
        """The best checkpoint of the last run (its last one if no best was kept)."""
        if not self.last_run_dir:
            return None
        for name in ("best.pt", "last.pt"):
            path = Path(self.last_run_dir, "checkpoints", name)
            if path.exists():
                return str(path)
        return None

    def _use_model(self) -> None:
        path = self.checkpoint_path()
        if path:
            self.use_model.emit(path)

    def _add_log(self, text: str, muted_line: bool = False) -> None:
        self.log.add(text, muted=muted_line)

    def _replay_history(self, run_dir: str) -> None:
        """A resumed run's earlier points, read and thinned from metrics.jsonl in the background."""
        from iamnn_studio.engine.runs import iter_history

        upto = self._resumed_step  # without what earlier resumes abandoned (drawn twice otherwise)
        self._tasks.submit("history", lambda: history_records(iter_history(run_dir, events=("step", "epoch")), upto),
                           self._on_history, lambda _message: None)

    def _on_history(self, records: list[dict]) -> None:
        self.monitor.prepend_history(records, self._resumed_step)

    def shutdown(self) -> None:
        """Stop polling and end the form's sizing child (window closing)."""
        self._shut_down = True
        if self._live is not None:
            self._live.system.stop()
        self.form.shutdown()

    def stop_at_exit(self, timeout_ms: int = 120_000) -> None:
        """The event loop has ended with a run still going (the app was told to quit): stop it and wait,
        so the thread never outlives the application and last.pt is written."""
        if self.session is not None:
            self.session.stop()
            self.session.wait(timeout_ms)


def _scrolling_page(content: QWidget | None) -> QScrollArea:
    """A page that scrolls down to the rest of ``content`` where the window leaves it too little height
    (None: content is set later)."""
    page = QScrollArea()
    page.setWidgetResizable(True)
    page.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    page.setFrameShape(QFrame.Shape.NoFrame)
    if content is not None:
        page.setWidget(content)
    return page


class _LivePage:
    """The Live training page's widgets: the six run plots over the run log and the hardware plots."""

    def __init__(self) -> None:
        self.monitor = LiveMonitor()
        self.log = RunLog()
        self.system = SystemPanel()
        self.page = live = QWidget()
        live_layout = QVBoxLayout(live)
        live_layout.setContentsMargins(0, SPACING["row"], 0, 0)
        live_layout.setSpacing(SPACING["row"])
        live_layout.addWidget(self.monitor, 5)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        log_box = QWidget()
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(0, 0, 0, 0)
        log_layout.setSpacing(4)
        log_title = QLabel("Run log")
        log_title.setObjectName("CardTitle")
        log_layout.addWidget(log_title)
        log_layout.addWidget(self.log, 1)
        bottom.addWidget(log_box)
        bottom.addWidget(self.system)
        bottom.setStretchFactor(0, 1)
        bottom.setStretchFactor(1, 1)
        bottom.setChildrenCollapsible(False)
        live_layout.addWidget(bottom, 3)
        self.bottom_row = bottom


def history_records(records: Iterable[dict[str, Any]], upto_step: int | None,
                    max_points: int | None = None) -> list[dict[str, Any]]:
    """The step and epoch events up to ``upto_step`` (the resume point), at most ``max_points``
    (``HISTORY_POINTS``) of each: step events as means of consecutive ones, ending at the last
    one; epoch events evenly picked, the last kept; all in the file's order. Holds numbers only, not the
    events (any thread)."""
    limit = HISTORY_POINTS if max_points is None else max_points
    width = 1 + len(_STEP_FIGURES) + 4
    rows = array("d")  # per step event: its step, _STEP_FIGURES, 4 blocks' iterations; NaN where missing
    epochs: list[tuple[float, dict[str, Any]]] = []  # (place among the step rows, figures)
    for record in records:
        step = record.get("step", 0)
        if not isinstance(step, (int, float)) or (upto_step is not None and step > upto_step):
            continue  # a later attempt, abandoned when the run resumed from an earlier checkpoint
        if record.get("event") == "step":
            iterations = record.get("iterations") if isinstance(record.get("iterations"), list) else []
            rows.extend((step, *(_finite(record.get(name)) for name in _STEP_FIGURES),
                         *(_finite(value) for value in (iterations + [None] * 4)[:4])))
        elif record.get("event") == "epoch":
            epochs.append((len(rows) // width - 0.5, {key: record.get(key) for key in ("event", "step", "val_split", "val_loss",
                                                                               "val_accuracy", "macs")}))
    if len(epochs) > limit:
        epochs = [epochs[i] for i in np.linspace(0, len(epochs) - 1, limit).round().astype(int)]
    steps: list[tuple[float, dict[str, Any]]] = []
    if rows:
        table = np.frombuffer(rows).reshape(-1, width)
        means, last = consecutive_means(table, limit)
        means[:, 0] = table[last, 0]  # each point at its run's last step
        for end, row in zip((last + 1).tolist(), means.tolist()):
            step = {"event": "step", "step": row[0], **dict(zip(_STEP_FIGURES, map(_none_if_nan, row[1:6])))}
            iterations = [_none_if_nan(v) for v in row[6:]]
            step["iterations"] = iterations[:max((i + 1 for i, v in enumerate(iterations) if v is not None), default=0)]
            steps.append((end - 1, step))
    return [record for _, record in sorted(steps + epochs, key=lambda placed: placed[0])]


def weights_source(path: Path) -> str:
    """Whose weights a run starts from, in words: "tiny's weights" (a run folder: its best.pt, else its last.pt),
    "tiny's best.pt" (a checkpoint of a run), "the weights in model.pt" (any other file). Long names are
    shortened in the middle: the header's sentence wrapped a long hyphenated run name over many lines."""
    if path.is_dir():
        return f"{short_name(path.name)}'s weights"
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return f"{short_name(path.parent.parent.name)}'s {short_name(path.name)}"
    return f"the weights in {short_name(path.name)}"


def short_name(name: str, limit: int = 24) -> str:
    """``name`` if at most ``limit`` characters, else its start and end around "…" (both ends tell runs apart:
    the dataset at the start, the variant at the end)."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return f"{name[:head]}…{name[-(limit - 1 - head):]}"


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else value


def result_facts(finished: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """What a finished run achieved, for its result line: test accuracy and compute, else validation."""
    facts = []
    top1, macs = evaluation.get("top1"), evaluation.get("macs")
    if top1 is not None:
        fact = f"{evaluation_word(evaluation)} accuracy {top1:.1%}"
        if isinstance(macs, dict) and macs.get("mean") is not None:
            fact += f" at {format_count(macs['mean'])} MACs per image"
        facts.append(fact)
    best = finished.get("best_accuracy")
    if best is not None:
        facts.append(f"best validation accuracy {best:.1%}")
    return facts


def _sentence(text: str, name: str = "") -> str:
    """An engine reason ("cannot resume x: …") as a sentence for a dialog: a capital and a full stop; a
    reason that starts with the run's ``name`` keeps the name as it is spelled."""
    text = text.strip()
    if not text:
        return text
    first = text[0] if name and text.startswith((name + " ", name + ":")) else text[0].upper()
    return first + text[1:] + ("" if text.endswith((".", "!", "?", ")")) else ".")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _swatch(color: str, text: str) -> str:
    """A coloured legend word for a plot title (legends inside small plots hide the curves)."""
    return f"<span style='color:{color};font-weight:400;font-size:{scaled_pt(8):g}pt'>&#9632;&nbsp;{text}</span>"


def _legend_titles(title: str, entries: list[tuple[str, str]]) -> list[str]:
    """A plot title with its legend, widest first (for ``fit_title``): coloured squares and words,
    then the words (or digits) alone in their colours, then the title alone."""
    squares = " ".join(_swatch(color, text) for color, text in entries)
    light = f";font-weight:400;font-size:{scaled_pt(8):g}pt"  # words as light as the squares' labels; digits bold to be seen
    words = " ".join(f"<span style='color:{color}{'' if text.isdigit() else light}'>{text}</span>"
                     for color, text in entries)
    return [f"{title} &nbsp;{squares}", f"{title} {words}", title]


def _percent(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


def _millions(value: Any) -> float | None:
    return None if value is None else float(value) / 1e6


def evaluated_text(data: dict) -> str:
    """The log line of an ``evaluated`` event, naming its images: "held-out" for the split "val"."""
    word = evaluation_word(data)
    text = f"Evaluated on the {word} images" + (" (no test split)" if data.get("split") == "val" else "")
    if data.get("top1") is not None:
        text += f": top-1 {data['top1']:.1%}"
    macs = data.get("macs")
    if isinstance(macs, dict) and macs.get("mean") is not None:
        text += f" · mean {format_count(macs['mean'])} MACs"
    return text
