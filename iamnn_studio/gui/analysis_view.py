"""The "Study" tab: accuracy, compute and adaptivity of one run, and runs side by side.

It reads what the engine wrote into the run folder (``eval.json``, ``metrics.jsonl``,
``status.json``, ``config.toml``) and draws it: summary figures, per-block iteration histograms
(paper Fig. 2), the accuracy-vs-MACs curves of the threshold sweep and of fixed settings, the
easiest and hardest test images (paper Fig. 3), the confusion matrix, per-class accuracy, the
training curves, and a comparison table laid out like paper Table 1. A run without
``eval.json`` shows what it has and offers "Evaluate now" (background, with progress).
"""
from __future__ import annotations

import math
import os
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PySide6.QtCore import QCoreApplication, QEvent, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..engine import io
from ..split_words import evaluation_word, split_word
from ..engine.runs import epochs_text
from ..engine.tradeoff import halting_tradeoff, one_iteration_halting
from .plots import consecutive_means
from .style import scaled_px
from .widgets import formatting, theme
from .widgets.charts import ClassAccuracyBars, IterationHistograms, SweepCurve, TrainingCurves, swatch
from .widgets.confusion_matrix import ConfusionMatrix
from .widgets.elided_label import ElidedLabel
from .widgets.empty_state import EmptyState
from .widgets.image_strip import ImageStrip
from .widgets.message_banner import MessageBanner
from .widgets.section import FigureTile, Section
from .widgets.tasks import BackgroundRunner, import_engine, one_line

#: Images of each end of the easy-to-hard spectrum (two rows of eight).
SPECTRUM_SIZE = 16
#: The most points a training curve is drawn with (each a mean of consecutive steps): a plot is a few hundred
#: pixels wide, and a long run logs hundreds of thousands of steps (handing them all to the plots held the
#: UI thread for a second and hundreds of megabytes).
MAX_CURVE_POINTS = 2000
#: The metrics.jsonl events the training curves are drawn from; the others are not parsed.
CURVE_EVENTS = ("started", "step", "epoch")
COMPARE_COLUMNS = ("Network", "Params", "MACs avg (min – max)", "Top-1 / Top-5")
NOT_EVALUATED = "Not evaluated yet. Evaluate now writes eval.json: accuracy, per-image compute, " \
                "iteration histograms and the threshold sweep."


#: What Evaluate now does, ``images`` naming the split it measures ("test", "held-out": ``split_word``).
EVALUATE_PROMPT = ("Evaluating measures the best checkpoint on the {images} images and writes eval.json: accuracy, "
                   "the confusion matrix, per-image compute, iteration histograms, the easiest and hardest images and "
                   "the threshold sweep. It runs in the background.")
EVALUATE_TOOLTIP = "Measure the best checkpoint on the {images} images and write eval.json"
NOT_EVALUATED_TITLE = "Not evaluated on the {images} images yet"

#: Effective states (engine ``runs.effective_state``) of a run whose process is alive and still writing its
#: checkpoints: evaluating one would measure a model that is replaced under you.
LIVE_STATES = ("running", "paused")
STILL_TRAINING = "This run is still training: evaluate it when it ends or after you stop it."
#: ``RunReport.config_error`` of a run folder without its config.toml (e.g. a copy of only its log).
NO_CONFIG = "no config.toml"
#: While the shown run is training, its status is read again this often, so Evaluate comes back once it ends.
LIVE_REFRESH_MS = 5000


# ==================================================================== what a run folder holds
@dataclass
class RunReport:
    """Everything the view shows about one run, read in the background."""

    path: Path
    name: str
    model: str = "?"
    dataset: str = "?"
    architecture: str = "iamnn"
    config: Any = None  # RunConfig, or None when config.toml is unreadable
    config_error: str = ""
    status: dict = field(default_factory=dict)
    state: str = "unknown"  # as the Runs tab says it: a "running" run whose process is gone is "interrupted"
    state_reason: str = ""
    steps_per_epoch: int | None = None
    evaluation: dict | None = None
    eval_error: str = ""
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    parameters: int | None = None
    checkpoint: Path | None = None
    # the split Evaluate now would measure, from a glance at the dataset ("val": an image folder without test/);
    # None where only loading can tell
    evaluation_split: str | None = None


def read_run(path: str | Path, *, curves: bool = True) -> RunReport:
    """Read a run folder; nothing here raises for a damaged or partial run (any thread), only ``ValueError`` for a
    folder that is not there (renamed or deleted since it was listed). Without ``curves`` metrics.jsonl is read for
    its ``started`` event only (a comparison needs the parameter count, not a long run's hundreds of thousands of
    steps)."""
    runs = import_engine("runs")
    folder = Path(path)
    if not folder.is_dir():  # read as a run without its files, it said "No config.toml in this run folder"
        raise ValueError(f"its folder {folder} no longer exists (renamed, moved or deleted since it was listed)")
    run = runs.RunDirectory(folder)
    report = RunReport(path=folder, name=folder.name)
    try:
        report.config = run.read_config().validate()
        report.model = runs.describe_model(report.config.model)
        report.dataset = report.config.data.name
        report.architecture = report.config.model.architecture
        report.evaluation_split = import_engine("data").evaluation_split_of(report.config.data)
    except ValueError as error:
        report.config_error = _config_reason(error, run.config_path)
    report.status = run.read_status() or {}
    report.state, report.state_reason = runs.effective_state(report.status or None, folder)
    if report.state == runs.INTERRUPTED:  # as the Runs tab says it: last.pt may not be resumable after all
        report.state_reason = runs.interrupted_reason(report.state_reason,
                                                      runs.resume_problem(folder, report.config))
    report.steps_per_epoch = runs.steps_per_epoch(folder)
    started = runs.started_event(folder)
    if run.eval_path.is_file():
        try:  # the engine's one check of eval.json's shape: a damaged file is refused whole, saying what is wrong
            evaluation = import_engine("evaluation_file").read_evaluation(run.eval_path)
            mismatch = runs.evaluation_mismatch(evaluation, report.config, started)
            if mismatch is not None:  # a copied file: its figures are another model's
                raise ValueError(mismatch)
            report.evaluation = evaluation
        except (OSError, ValueError) as error:
            report.eval_error = f"eval.json cannot be read ({error}); evaluate again to replace it"
    if curves:
        report.series, report.parameters = cached_training_series(folder)
    else:
        parameters = (started or {}).get("parameters")
        report.parameters = parameters if isinstance(parameters, int) else None
    for name in ("best.pt", "last.pt"):
        if (run.checkpoints_dir / name).is_file():
            report.checkpoint = run.checkpoints_dir / name
            break
    return report


#: Curves of the last few runs read, per metrics file, with the file's (size, mtime, inode) when read: opening a
#: long run again (200,000 steps: seconds of parsing) is instant, and a file that was written since is read
#: afresh. Each entry is small (every curve is at most MAX_CURVE_POINTS long).
SERIES_CACHE_SIZE = 8
_series_cache: "OrderedDict[str, tuple[tuple[int, ...], tuple[dict, int | None]]]" = OrderedDict()
_series_cache_lock = threading.Lock()


def cached_training_series(folder: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int | None]:
    """``training_series`` of the run's history (``runs.iter_history``), reused while metrics.jsonl is unchanged
    (any thread)."""
    runs = import_engine("runs")
    metrics = Path(folder) / runs.METRICS_FILE
    try:
        info = os.stat(metrics)
        where = os.path.realpath(metrics)
    except (OSError, ValueError):  # no metrics (yet), or unreadable: nothing worth keeping
        return training_series(runs.iter_history(folder, events=CURVE_EVENTS))
    key = (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)
    with _series_cache_lock:
        kept = _series_cache.get(where)
        if kept is not None and kept[0] == key:
            _series_cache.move_to_end(where)
            return _copied(kept[1])
    # Stat first, then read: a file that grows meanwhile is read with more than the key says, and the
    # next look sees another size and reads it again (never a result older than its key).
    series, parameters = training_series(runs.iter_history(folder, events=CURVE_EVENTS))
    with _series_cache_lock:
        _series_cache[where] = (key, (series, parameters))
        _series_cache.move_to_end(where)
        while len(_series_cache) > SERIES_CACHE_SIZE:
            _series_cache.popitem(last=False)
    return _copied((series, parameters))


def _copied(kept: tuple[dict, int | None]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int | None]:
    """The caller's own arrays (at most MAX_CURVE_POINTS each): what it does to them never reaches the cache."""
    series, parameters = kept
    return {name: (x.copy(), y.copy()) for name, (x, y) in series.items()}, parameters


def training_series(events: Iterable[dict], max_points: int | None = None
                    ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int | None]:
    """Curves (x in epochs) from metrics.jsonl events, each at most ``max_points`` (``MAX_CURVE_POINTS``)
    long, and the parameter count the trainer reported. ``events`` may be a stream: only the numbers are
    kept, 8 bytes each."""
    steps_per_epoch, parameters = None, None
    columns: dict[str, tuple[array, array]] = {}

    def add(name: str, x: float | None, value: Any) -> None:
        value = _finite(value)
        if x is not None and value is not None:
            xs, ys = columns.setdefault(name, (array("d"), array("d")))
            xs.append(x)
            ys.append(value)

    for event in events:
        kind = event.get("event")
        if kind == "started":
            steps_per_epoch = _finite(event.get("steps_per_epoch")) or steps_per_epoch
            parameters = event.get("parameters") if isinstance(event.get("parameters"), int) else parameters
        elif kind == "step" and isinstance(event.get("step"), (int, float)):
            per_epoch = steps_per_epoch or _steps_per_epoch(event)
            step = _finite(event["step"])
            x = (step / per_epoch if step is not None else None) if per_epoch else _finite(event.get("epoch", 0))
            add("train_loss", x, event.get("loss"))
            add("train_accuracy", x, _percent(event.get("accuracy")))
            for b, value in enumerate(event.get("iterations") or []):
                add(f"iterations_{b + 1}", x, value)
        elif kind == "epoch" and isinstance(event.get("epoch"), (int, float)):
            # At the step it was measured: an epoch cut short by max_steps ends before x = 1.
            per_epoch = steps_per_epoch or _steps_per_epoch(event)
            step = _finite(event.get("step"))
            x = step / per_epoch if per_epoch and step is not None else _finite(event["epoch"])
            add("val_loss", x, event.get("val_loss"))
            add("val_accuracy", x, _percent(event.get("val_accuracy")))
            # per-epoch training figures: used when the run logged no step events
            add("epoch_train_loss", x, event.get("train_loss"))
            add("epoch_train_accuracy", x, _percent(event.get("train_accuracy")))
            for b, value in enumerate(event.get("train_iterations") or []):
                add(f"epoch_iterations_{b + 1}", x, value)
    for name in ["train_loss", "train_accuracy"] + [f"iterations_{b}" for b in range(1, 5)]:
        fallback = columns.pop(f"epoch_{name}", None)
        if name not in columns and fallback:
            columns[name] = fallback
    limit = MAX_CURVE_POINTS if max_points is None else max_points
    series = {name: bucket_means(np.frombuffer(xs), np.frombuffer(ys), limit)
              for name, (xs, ys) in columns.items()}
    return series, parameters


def bucket_means(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points, each the mean of a run of consecutive ones (``consecutive_means``):
    the curve keeps its level and still spans the whole run."""
    means, _last = consecutive_means(np.column_stack((x, y)), max_points)
    return means[:, 0], means[:, 1]


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, else None: a damaged metrics.jsonl may hold NaN, text, or an integer too big for a
    float (``np.isfinite`` raised on one past 2**64 and the whole run could not be read). ``math``, not numpy: a
    long run's million values took numpy's per-scalar call seconds."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _percent(value: Any) -> float | None:
    return 100 * value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _steps_per_epoch(event: dict) -> float | None:
    total, epochs = _finite(event.get("total_steps")), _finite(event.get("total_epochs"))
    return _finite(total / epochs) if total is not None and epochs else None


def _tensor_to_qimage(image: Any) -> QImage:
    """A uint8 [C, H, W] tensor (1 or 3 channels) as a QImage that owns its pixels."""
    array = np.ascontiguousarray(image.cpu().numpy())
    if array.shape[0] == 1:
        gray = np.ascontiguousarray(array[0])
        return QImage(gray.data, gray.shape[1], gray.shape[0], gray.shape[1], QImage.Format.Format_Grayscale8).copy()
    rgb = np.ascontiguousarray(array[:3].transpose(1, 2, 0))
    return QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1], QImage.Format.Format_RGB888).copy()


# ==================================================================== the view
class AnalysisView(QWidget):
    """One run's report, ``show_run(run_dir)``; ``evaluated(run_dir)`` after Evaluate now finished."""

    evaluated = Signal(str)
    report_shown = Signal()  # the run's data are on screen (tests, screenshots)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._runner = BackgroundRunner(self)  # reading runs, images, comparisons
        self._evaluator = BackgroundRunner(self)  # one long evaluation, separate so reading stays quick
        self._evaluator.progressed.connect(self._on_eval_progress)
        self._report: RunReport | None = None
        self._cancel_evaluation: threading.Event | None = None
        self._compare_checked: set[str] = set()
        self._compare_folder: Path | None = None
        self._spectrum_count_note = ""  # "Only 22 held-out images: …" under the easy-to-hard strips
        self._live = QTimer(self, interval=LIVE_REFRESH_MS)
        self._live.timeout.connect(self._check_training_ended)
        self._build()
        self._show_empty()
        app = QCoreApplication.instance()
        if app is not None:  # quitting must not wait for a long evaluation: ask it to stop
            app.aboutToQuit.connect(self.shutdown)

    # ================================================================ public API
    def show_run(self, run_dir: str) -> None:
        """Show the run in ``run_dir`` (read in the background)."""
        path = Path(run_dir)
        self.title.setText(path.name)
        self.subtitle.setText("Reading the run…")
        self.stack.setCurrentWidget(self.page)
        self._runner.discard_pending()
        self._runner.submit(lambda report: read_run(path), self._on_report,
                            lambda message: self._on_read_failed(path, message))

    @property
    def report(self) -> RunReport | None:
        return self._report

    def is_busy(self) -> bool:
        return self._runner.is_busy() or self._evaluator.is_busy()

    def is_evaluating(self) -> bool:
        """An Evaluate now is running (its results are written only once it ends)."""
        return self._evaluator.is_busy()

    def stop_evaluation(self) -> None:
        """Stop a running evaluation between two batches: nothing is written."""
        if self._cancel_evaluation is not None:
            self._cancel_evaluation.set()

    # ================================================================ layout
    def _build(self) -> None:
        self.title = ElidedLabel()  # a long run name is shortened ("…", whole in the tooltip), not widening the page
        self.title.setStyleSheet(f"font-size: {theme.pt(16)}; font-weight: 600; color: {theme.TEXT};")
        self.subtitle = QLabel()
        self.subtitle.setStyleSheet(f"color: {theme.TEXT_MUTED};")
        self.subtitle.setWordWrap(True)
        heading = QVBoxLayout()
        heading.setSpacing(2)
        heading.addWidget(self.title)
        heading.addWidget(self.subtitle)
        self.evaluate_button = QPushButton("Evaluate now")
        self.evaluate_button.setObjectName("Primary")
        self.evaluate_button.setToolTip(EVALUATE_TOOLTIP.format(images="test"))
        self.evaluate_button.clicked.connect(self.evaluate_now)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setProperty("role", "muted")
        self.evaluate_note = QLabel()  # why Evaluate again is off (without eval.json the prompt below says it)
        self.evaluate_note.setProperty("role", "muted")
        self.evaluate_note.setWordWrap(True)
        self.evaluate_note.hide()
        for widget in (self.cancel_button, self.progress, self.progress_label):
            widget.hide()
        header = QHBoxLayout()
        header.setSpacing(theme.SPACING)
        header.addLayout(heading, 1)
        header.addWidget(self.progress_label)
        header.addWidget(self.progress)
        header.addWidget(self.cancel_button)
        header.addWidget(self.evaluate_note)
        header.addWidget(self.evaluate_button)
        self.banner = MessageBanner()

        # summary figures
        self.accuracy_tile = FigureTile("Test accuracy")
        self.params_tile = FigureTile("Parameters")
        self.macs_tile = FigureTile("MACs per image")
        self.adaptivity_tile = FigureTile("Adaptivity")
        tiles = QHBoxLayout()
        tiles.setSpacing(theme.SPACING)
        for tile in (self.accuracy_tile, self.params_tile, self.macs_tile, self.adaptivity_tile):
            tiles.addWidget(tile)

        # figures, each in a section with a placeholder for runs that lack the data
        self.histograms = IterationHistograms()
        self.histogram_section, self.histogram_stack = self._section(
            "Iterations per block", HISTOGRAM_CAPTION.format(images="test images"), self.histograms)
        self.sweep = SweepCurve()
        self._sweep_key = (
            f"{swatch(theme.ACCENT, 'moving the halting threshold', '&#9679;', theme.TEXT_MUTED)}, "
            f"{swatch(theme.SECONDARY, 'a fixed number of iterations per block (1×, 2×, …)', '&#9632;', theme.TEXT_MUTED)}, "
            f"{swatch(theme.TEXT, 'this model as saved', '&#9733;', theme.TEXT_MUTED)}.")
        self.sweep_verdict = QLabel()  # does the halting pay against fixed counts? (engine.tradeoff)
        self.sweep_verdict.setWordWrap(True)
        sweep_box = QWidget()
        sweep_layout = QVBoxLayout(sweep_box)
        sweep_layout.setContentsMargins(0, 0, 0, 0)
        sweep_layout.addWidget(self.sweep, 1)
        sweep_layout.addWidget(self.sweep_verdict)
        self.sweep_section, self.sweep_stack = self._section(
            "Accuracy vs compute", SWEEP_CAPTION.format(images="test images", key=self._sweep_key), sweep_box)
        self.easiest = ImageStrip()
        self.hardest = ImageStrip()
        spectrum = QWidget()
        spectrum_layout = QVBoxLayout(spectrum)
        spectrum_layout.setContentsMargins(0, 0, 0, 0)
        spectrum_layout.setSpacing(6)
        self.easiest_caption = QLabel("Cheapest")
        self.hardest_caption = QLabel("Most expensive")
        for caption, strip in ((self.easiest_caption, self.easiest), (self.hardest_caption, self.hardest)):
            caption.setStyleSheet(f"font-weight: 600; color: {theme.TEXT_MUTED};")
            spectrum_layout.addWidget(caption)
            spectrum_layout.addWidget(strip)
        self.spectrum_note = QLabel()
        self.spectrum_note.setProperty("role", "muted")
        self.spectrum_note.setWordWrap(True)
        spectrum_layout.addWidget(self.spectrum_note)
        spectrum_layout.addStretch(1)
        self.spectrum_section, self.spectrum_stack = self._section(
            "Easy to hard", SPECTRUM_CAPTION.format(images="Test images"), spectrum)
        self.confusion = ConfusionMatrix()
        self.confusion_section, self.confusion_stack = self._section(
            "Confusion matrix", "Rows: true class; columns: predicted class. Colour: share of the row; "
            "numbers: images.", self.confusion)
        self.class_bars = ClassAccuracyBars()
        self.class_section, self.class_stack = self._section(
            "Accuracy per class", CLASS_CAPTION.format(images="test images"), self.class_bars)
        self.training = TrainingCurves()
        self.training_section, self.training_stack = self._section(
            "Training", "From metrics.jsonl: loss and accuracy, and the mean iterations per block during "
            "training (a running mean: anytime training samples them batch by batch).", self.training)
        self.compare_section = self._build_compare()

        # shown instead of the five evaluation figures while the run has no eval.json
        self.evaluate_prompt = EmptyState(NOT_EVALUATED_TITLE.format(images="test"),
                                          EVALUATE_PROMPT.format(images="test"))
        self.prompt_button = self.evaluate_prompt.add_action("Evaluate now", self.evaluate_now)
        self.prompt_button.setObjectName("Primary")
        self.evaluate_prompt.hide()
        self._evaluation_sections = (self.histogram_section, self.sweep_section, self.spectrum_section,
                                     self.confusion_section, self.class_section)

        grid = QGridLayout()
        grid.setSpacing(theme.SPACING)
        grid.addWidget(self.evaluate_prompt, 0, 0, 1, 2)  # same cell as the histograms: one of them shows
        grid.addWidget(self.histogram_section, 0, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        self._grid, self._columns = grid, 0
        self._arrange(2)

        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(theme.MARGIN, theme.MARGIN, theme.MARGIN, theme.MARGIN)
        column.setSpacing(theme.SPACING)
        column.addLayout(header)
        column.addWidget(self.banner)
        column.addLayout(tiles)
        column.addLayout(grid)
        column.addStretch(1)
        self.page = QScrollArea()
        self.page.setWidgetResizable(True)
        self.page.setFrameShape(QFrame.Shape.NoFrame)
        self.page.setWidget(content)

        self.empty = EmptyState(
            "No run open",
            "Open a run from the Runs tab (double click it), or finish a training run: its accuracy, compute "
            "per image and adaptivity appear here.",
        )
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self._fit_to_font()

    def _fit_to_font(self) -> None:
        """Widths and heights drawn for the 10-pt font, grown with the one in use: under a 14-pt font
        fixed pixels left the histograms' axes cramped, the compare list's names cut off, and the
        note beside Evaluate a column of one word per line."""
        font = self.font()
        self.progress.setFixedWidth(scaled_px(180, font))
        self.evaluate_note.setMaximumWidth(scaled_px(320, font))
        self.histograms.setFixedHeight(scaled_px(200, font))
        self.training.setFixedHeight(scaled_px(220, font))
        self.sweep.setMinimumHeight(scaled_px(340, font))
        self.confusion.setMinimumHeight(scaled_px(360, font))
        self.class_bars.setMinimumHeight(scaled_px(360, font))
        self.evaluate_prompt.setMinimumHeight(scaled_px(220, font))
        # as wide as the box under it, and no wider: the table beside it needs the room for its run names (QA)
        self.compare_list.setFixedWidth(max(scaled_px(200, font), self.one_iteration.sizeHint().width()))
        self.compare_list.setMinimumHeight(scaled_px(140, font))
        self.compare_table.setMinimumHeight(scaled_px(140, font))
        for stack in (self.histogram_stack, self.sweep_stack, self.spectrum_stack, self.confusion_stack,
                      self.class_stack, self.training_stack):
            stack.widget(0).setMinimumHeight(scaled_px(120, font))  # the "not evaluated" placeholder
        self._columns = 0  # the pairs' room may have changed: decide again
        self._fit_columns()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._fit_to_font()

    def _arrange(self, columns: int) -> None:
        """The figures in pairs side by side, or one under the other when a pair does not fit the width."""
        if columns == self._columns:
            return
        self._columns = columns
        pairs = ((self.sweep_section, self.spectrum_section), (self.confusion_section, self.class_section))
        row = 1
        for pair in pairs:
            for column, section in enumerate(pair):
                self._grid.removeWidget(section)
                if columns == 2:
                    self._grid.addWidget(section, row, column)
                else:
                    self._grid.addWidget(section, row + column, 0, 1, 2)
            row += 1 if columns == 2 else 2
        for section in (self.training_section, self.compare_section):
            self._grid.removeWidget(section)
            self._grid.addWidget(section, row, 0, 1, 2)
            row += 1

    def _fit_columns(self) -> None:
        # The easy-to-hard strip is the widest figure: two columns need room for two of it.
        # The room is counted as if the scroll bar showed, so that it appearing cannot make the layout flip.
        pair_width = 2 * (self.easiest.full_width() + 2 * theme.MARGIN + 2) + theme.SPACING
        room = self.width() - self.page.verticalScrollBar().sizeHint().width() - 2 * theme.MARGIN
        self._arrange(2 if room >= pair_width else 1)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._fit_columns()

    def _section(self, title: str, caption: str, content: QWidget) -> tuple[Section, QStackedWidget]:
        section = Section(title, caption)
        placeholder = QLabel(NOT_EVALUATED)
        placeholder.setWordWrap(True)
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        placeholder.setStyleSheet(f"color: {theme.TEXT_FAINT}; padding: 24px;")
        stack = QStackedWidget()
        stack.addWidget(placeholder)
        stack.addWidget(content)
        section.body.addWidget(stack)
        return section, stack

    @staticmethod
    def _show_placeholder(stack: QStackedWidget, text: str | None = None) -> None:
        placeholder = stack.widget(0)
        placeholder.setText(text or NOT_EVALUATED)
        stack.setCurrentIndex(0)

    def _build_compare(self) -> Section:
        section = Section("Compare runs", "Tick runs of this folder to set them side by side, as in the paper's "
                          "Table 1 (e.g. IamNN, its unshared ResNet and the 1-iteration setting).")
        self.compare_list = QListWidget()
        # a long name is elided in its middle (names of one sweep differ at the end), whole in the tooltip
        self.compare_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.compare_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.compare_list.itemChanged.connect(self._on_compare_changed)
        self.one_iteration = QCheckBox("Add 1-iteration rows")  # short: the list beside it is as wide
        self.one_iteration.setToolTip("Add each IamNN's 1-iteration setting: the same network forced to one iteration "
                                      "per block (from the fixed-setting sweep)")
        self.one_iteration.setChecked(True)
        self.one_iteration.toggled.connect(self._refresh_comparison)
        left = QVBoxLayout()
        left.setSpacing(6)
        left.addWidget(self.compare_list, 1)
        left.addWidget(self.one_iteration)
        self.compare_table = QTableWidget(0, len(COMPARE_COLUMNS))
        self.compare_table.setHorizontalHeaderLabels(COMPARE_COLUMNS)
        self.compare_table.verticalHeader().setVisible(False)
        self.compare_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.compare_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.compare_table.setShowGrid(False)
        self.compare_table.setAlternatingRowColors(True)
        self.compare_table.verticalHeader().setDefaultSectionSize(28)
        header = self.compare_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COMPARE_COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.compare_table.setStyleSheet(
            f"QTableWidget {{ background: {theme.SURFACE}; border: 1px solid {theme.BORDER}; border-radius: 6px;"
            f" alternate-background-color: {theme.WINDOW}; }}"
            f"QTableWidget::item {{ padding: 0 8px; }}"
            f"QHeaderView::section {{ background: {theme.SURFACE}; border: none; border-bottom: 1px solid {theme.BORDER};"
            f" padding: 6px 8px; font-weight: 600; color: {theme.TEXT_MUTED}; }}"
        )
        row = QHBoxLayout()
        row.setSpacing(theme.SPACING)
        row.addLayout(left)
        row.addWidget(self.compare_table, 1)
        section.body.addLayout(row)
        return section

    # ================================================================ showing a report
    def _show_empty(self) -> None:
        self.stack.setCurrentWidget(self.empty)

    def _on_read_failed(self, path: Path, message: str) -> None:
        # Not on the page: it still held the previous run's figures (and its Evaluate) under this run's name.
        self._report = None
        self._live.stop()
        self.empty.set_text(f"Cannot open the run {path.name}", message)
        self._show_empty()

    def _on_report(self, report: RunReport) -> None:
        self._report = report
        status = report.status
        state = report.state
        epochs = status.get("epochs_done")
        total = status.get("total_epochs")
        known = ([report.model, report.dataset] if report.config is not None
                 else [NO_CONFIG if report.config_error == NO_CONFIG else "config.toml unreadable"])
        limits = (report.evaluation or {}).get("halting_caps")
        if limits and list(limits) != list((report.evaluation or {}).get("caps") or []):
            known.insert(1, f"halting at most {'·'.join(map(str, limits))}")  # calibration's reference depth
        parts = [*known, import_engine("runs").status_text(state, report.state_reason)]  # "completed (step limit)"
        if isinstance(epochs, int):  # "0 / 1 epochs (+40 of 844 steps)": the steps of an epoch cut short
            parts.append(epochs_text(epochs, total, status.get("step"), report.steps_per_epoch,
                                     separator=" / ", unit=" epochs"))
        self.subtitle.setText("  ·  ".join(str(p) for p in parts))
        self.subtitle.setToolTip(str(report.path) + (f"\n{state}: {report.state_reason}" if report.state_reason else ""))
        problems = [m for m in (_config_problem(report), report.eval_error) if m]
        if state == "failed":  # why it failed, in words: not only in the subtitle's tooltip
            self.banner.show_message("; ".join([f"Training failed: {report.state_reason or 'no reason recorded'}",
                                                *problems]), "error")
        elif problems:
            self.banner.show_message("; ".join(problems), "warning")
        else:
            self.banner.hide()
        self._update_evaluate_button()
        if state in LIVE_STATES:
            self._live.start()
        else:
            self._live.stop()
        self._fill_tiles(report)
        evaluation = report.evaluation
        for section in self._evaluation_sections:
            section.setVisible(evaluation is not None)
        self.evaluate_prompt.setVisible(evaluation is None)
        if evaluation is None:
            for stack in (self.histogram_stack, self.sweep_stack, self.spectrum_stack, self.confusion_stack,
                          self.class_stack):
                self._show_placeholder(stack)
        else:
            self._fill_evaluation(report, evaluation)
        if report.series:
            self.training.set_series(report.series)
            self.training_stack.setCurrentIndex(1)
        else:
            self._show_placeholder(self.training_stack, "No training metrics in this run folder (metrics.jsonl).")
        self._load_compare_candidates(report.path.parent, report.path)
        self._fit_columns()  # the figures' widths are known only now
        self.report_shown.emit()

    def _update_evaluate_button(self) -> None:
        report = self._report
        running = self._evaluator.is_busy()
        blocker = _evaluation_blocker(report)
        can = report is not None and not blocker
        self.evaluate_button.setVisible(not running)
        self.evaluate_button.setEnabled(can and not running)
        self.prompt_button.setEnabled(can and not running)
        self.evaluate_button.setText("Evaluate again" if report is not None and report.evaluation else "Evaluate now")
        images = _split_to_evaluate(report)
        self.evaluate_button.setToolTip(blocker or EVALUATE_TOOLTIP.format(images=images))
        # a greyed-out button alone does not say why: the prompt says it, or the note beside the button
        self.evaluate_note.setText(blocker)
        self.evaluate_note.setVisible(bool(blocker) and report is not None and report.evaluation is not None)
        if blocker:
            still_training = report is not None and report.state in LIVE_STATES
            title = "Still training" if still_training else "This run cannot be evaluated"
            self.evaluate_prompt.set_text(title, blocker)
        elif report is not None and report.eval_error:  # evaluated, but eval.json is damaged: not "not evaluated"
            self.evaluate_prompt.set_text(UNREADABLE_EVALUATION, EVALUATE_PROMPT.format(images=images))
        else:
            self.evaluate_prompt.set_text(NOT_EVALUATED_TITLE.format(images=images),
                                          EVALUATE_PROMPT.format(images=images))

    def _name_split(self, evaluation: dict) -> None:
        """The sections' captions name the evaluated images: "held-out images" for eval.json's split "val"."""
        images = f"{evaluation_word(evaluation)} images"
        self.histogram_section.caption.setText(HISTOGRAM_CAPTION.format(images=images))
        self.sweep_section.caption.setText(SWEEP_CAPTION.format(images=images, key=self._sweep_key))
        self.spectrum_section.caption.setText(SPECTRUM_CAPTION.format(images=images[:1].upper() + images[1:]))
        self.class_section.caption.setText(CLASS_CAPTION.format(images=images))

    def _fill_tiles(self, report: RunReport) -> None:
        evaluation = report.evaluation or {}
        self._name_split(evaluation)
        if "top1" in evaluation:
            held_out = evaluation.get("split") == "val"  # no test images: the ones that also chose the model
            where = evaluation_word(evaluation)
            details = [f"top-5 {formatting.percent(top5)}"] if (top5 := _top5(evaluation)) is not None else []
            if evaluation.get("images"):
                details.append(f"{evaluation['images']:,} {where} images")
            if held_out:
                details.append(HELD_OUT_DETAIL)
            self.accuracy_tile.caption.setText(f"{where} accuracy".upper())
            self.accuracy_tile.set(formatting.percent(evaluation["top1"]), " · ".join(details))
            self.accuracy_tile.setToolTip(evaluation.get("split_note") or "")
        else:
            best = report.status.get("best_accuracy")
            images = _split_to_evaluate(report)
            self.accuracy_tile.setToolTip("")
            caption = "validation accuracy" if best is not None else f"{images} accuracy"
            self.accuracy_tile.caption.setText(caption.upper())
            self.accuracy_tile.set(formatting.percent(best) if best is not None else "–",
                                   f"the best epoch's; not evaluated on the {images} images yet"
                                   if best is not None else "not evaluated yet")
        self.params_tile.set(formatting.params(report.parameters) if report.parameters else "–",
                             report.model if report.config is not None else "")
        macs = evaluation.get("macs") or {}
        if macs:
            detail = f"min {formatting.si(macs.get('min'))} – max {formatting.si(macs.get('max'))}"
            full = (evaluation.get("full_depth") or {}).get("mean_macs")
            if full and report.architecture == "iamnn":
                detail += f" · {formatting.ratio(macs['mean'] / full)} of full depth"
            self.macs_tile.set(formatting.si(macs.get("mean")), detail)
        else:
            self.macs_tile.set("–", "measured by the evaluation")
        self.adaptivity_tile.set(*_adaptivity_verdict(evaluation, report.architecture))

    def _fill_evaluation(self, report: RunReport, evaluation: dict) -> None:
        classes = list(evaluation.get("classes") or [])
        iterations = evaluation.get("iterations")
        if iterations and iterations.get("histogram"):
            self.histograms.set_histograms(iterations["histogram"], iterations.get("caps") or evaluation.get("caps", []),
                                           iterations.get("mean"))
            self.histogram_stack.setCurrentIndex(1)
        else:
            self._show_placeholder(self.histogram_stack, "The ResNet baseline runs every unit: no iterations to count.")

        sweep = evaluation.get("sweep") or {}
        threshold_points, fixed_points = sweep.get("threshold") or [], sweep.get("fixed") or []
        if threshold_points or fixed_points:
            evaluated = next(((p["mean_macs"], p["top1"]) for p in threshold_points if p.get("evaluated")), None)
            if evaluated is None and evaluation.get("macs"):
                evaluated = (evaluation["macs"]["mean"], evaluation["top1"])
            self.sweep.set_sweep(threshold_points, fixed_points, evaluated)
            tradeoff = halting_tradeoff(evaluation)
            self.sweep_verdict.setVisible(tradeoff is not None)
            if evaluation.get("halting_calibrated") is False:  # a verdict on an unfitted head would mislead
                self.sweep_verdict.setText(UNCALIBRATED_VERDICT)
                self.sweep_verdict.setStyleSheet(f"color: {theme.WARNING};")
            elif tradeoff is not None:
                colour = {"pays": theme.GOOD, "does not pay": theme.WARNING}.get(tradeoff["outcome"], theme.TEXT_MUTED)
                self.sweep_verdict.setText(tradeoff["verdict"])
                self.sweep_verdict.setStyleSheet(f"color: {colour};")
            self.sweep_stack.setCurrentIndex(1)
        else:
            self._show_placeholder(self.sweep_stack, "This evaluation has no sweep (a ResNet baseline, or evaluated "
                                   "without it).")

        easiest, hardest = spectrum_ends(evaluation)
        count = _ranked_images(evaluation)
        word = evaluation_word(evaluation)
        if easiest or hardest:
            self._spectrum_count_note = (f"Only {count:,} {word} images: {len(easiest)} in each row, so no image "
                                         "shows twice." if count < 2 * SPECTRUM_SIZE else "")
            self._fill_spectrum(easiest, hardest, {}, loading=True)
            self._set_spectrum_note(f"Loading the {word} images…")
            self.spectrum_stack.setCurrentIndex(1)
            self._load_spectrum_images(report, easiest + hardest)
        elif count == 1 or evaluation.get("easiest") or evaluation.get("hardest"):  # one image: nothing to rank
            # (today's engine lists none for one image; older eval.json files list it as both)
            self._show_placeholder(self.spectrum_stack, f"Only {count:,} {word} image: too few to rank by compute.")
        else:
            self._show_placeholder(self.spectrum_stack, "This evaluation lists no easiest and hardest images.")

        if evaluation.get("confusion") and classes:
            self.confusion.set_matrix(evaluation["confusion"], classes)
            self.confusion_stack.setCurrentIndex(1)
        else:
            self._show_placeholder(self.confusion_stack, "This evaluation has no confusion matrix.")
        if evaluation.get("per_class"):
            self.class_bars.set_accuracies(evaluation["per_class"])
            self.class_stack.setCurrentIndex(1)
        else:
            self._show_placeholder(self.class_stack, "This evaluation has no per-class accuracy.")

    # ================================================================ easy-to-hard images
    def _fill_spectrum(self, easiest: list[dict], hardest: list[dict], images: dict[int, QImage],
                       loading: bool = False) -> None:
        """The two strips; a tile without its image shows "…" while ``loading``, else stays empty (no image to
        come: an unreadable config.toml, a failed load)."""
        split = ((self._report.evaluation if self._report is not None else None) or {}).get("split")
        for strip, entries in ((self.easiest, easiest), (self.hardest, hardest)):
            strip.set_items(
                [images.get(int(e["index"])) for e in entries],
                [formatting.si(e.get("macs")) for e in entries],
                [_describe_image(e, split) for e in entries],
                [not e.get("correct", True) for e in entries],
                placeholder="…" if loading else "",
            )
        if easiest and hardest:
            low, high = easiest[0].get("macs"), hardest[0].get("macs")
            same = low is not None and low == high  # a ResNet, a fixed mode or a collapsed halting
            self.easiest_caption.setText(f"Cheapest  (from {formatting.macs(low)})" if not same
                                         else f"Every image costs the same ({formatting.macs(low)}): first images")
            self.hardest_caption.setText(f"Most expensive  (up to {formatting.macs(high)})" if not same
                                         else "…and others: compute does not vary with the image here")

    def _set_spectrum_note(self, message: str = "") -> None:
        """The note under the strips: how few images there are (if few), then ``message``."""
        self.spectrum_note.setText(" ".join(text for text in (self._spectrum_count_note, message) if text))

    def _spectrum_without_images(self, message: str) -> None:
        """No image will come: empty tiles (their MACs and tooltips stay), and why."""
        evaluation = (self._report.evaluation if self._report is not None else None) or {}
        self._fill_spectrum(*spectrum_ends(evaluation), {})
        self._set_spectrum_note(message)

    def _load_spectrum_images(self, report: RunReport, entries: list[dict]) -> None:
        config, split = report.config, (report.evaluation or {}).get("split", "test")
        if config is None:
            self._spectrum_without_images("The images cannot be shown: the run's config.toml is unreadable.")
            return
        indices = sorted({int(e["index"]) for e in entries})
        path = report.path

        def work(progress):
            data = import_engine("data")
            bundle = data.load_dataset(config.data, seed=config.seed)
            images = getattr(bundle, split if split in ("test", "val") else "test").images
            return {i: _tensor_to_qimage(images[i]) for i in indices if 0 <= i < len(images)}

        def done(images: dict[int, QImage]) -> None:
            if self._report is None or self._report.path != path:
                return
            self._fill_spectrum(*spectrum_ends(self._report.evaluation or {}), images)
            self._set_spectrum_note()

        def failed(message: str) -> None:
            if self._report is not None and self._report.path == path:
                self._spectrum_without_images(f"The {split_word(split)} images cannot be shown: {message}")

        self._runner.submit(work, done, failed)

    # ================================================================ evaluate now
    @Slot()
    def evaluate_now(self) -> None:
        report = self._report
        if _evaluation_blocker(report) or self._evaluator.is_busy():
            return
        runs = import_engine("runs")
        if runs.effective_state(runs.RunDirectory(report.path).read_status())[0] in LIVE_STATES:
            self.show_run(str(report.path))  # training went on since the run was read: show that instead
            return
        cancel = threading.Event()
        self._cancel_evaluation = cancel
        path, checkpoint_path, config = report.path, report.checkpoint, report.config

        def work(progress):
            progress(0.0, "Loading the checkpoint…")
            checkpoint_module = import_engine("checkpoint")
            evaluate_module = import_engine("evaluate")
            runs = import_engine("runs")
            data = import_engine("data")
            import torch

            device = "cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu"
            checkpoint = checkpoint_module.load_checkpoint(checkpoint_path, map_location=device)
            progress(0.0, "Loading the dataset…")
            bundle = data.load_dataset(config.data, seed=config.seed)
            split, images, described = evaluate_module.evaluation_split(bundle)
            where = split_word(split)
            progress(0.0, f"Evaluating on {len(images):,} {where} images…")
            result = evaluate_module.evaluate(
                checkpoint.model, images, mean=checkpoint.mean, std=checkpoint.std, classes=checkpoint.classes,
                device=device, should_stop=cancel.is_set,
                progress=lambda fraction: progress(fraction, f"Evaluating on {len(images):,} {where} images…"),
                calibrate_halting=config.calibrate_halting,
            )
            if result.get("stopped") or cancel.is_set():  # a stop after its last batch: still nothing written
                return None
            result.update(described)
            result.setdefault("checkpoint", checkpoint_path.name)
            try:  # evaluated is not saved: a read-only or full disk must not cost the results
                runs.RunDirectory(path).write_eval(result)
            except OSError as error:
                return str(path), result, unsaved_reason(error)
            return str(path), result, ""

        self.progress.setValue(0)
        for widget in (self.progress, self.progress_label, self.cancel_button):
            widget.show()
        self.progress_label.setText("Starting…")
        self._evaluator.submit(work, self._on_evaluated, self._on_evaluation_failed)
        self._update_evaluate_button()

    @Slot()
    def _check_training_ended(self) -> None:
        """Read the shown run's state again (it is training); a new state means it ended: show it anew."""
        report = self._report
        if report is None:
            self._live.stop()
            return
        if self._runner.is_busy():  # reading the run (or comparisons) already: ask on the next tick
            return
        path, state = report.path, report.state

        def work(progress):
            runs = import_engine("runs")
            return runs.effective_state(runs.RunDirectory(path).read_status())[0]

        def done(now: str) -> None:
            if now != state and self._report is report:
                self.show_run(str(path))

        self._runner.submit(work, done)

    @Slot()
    def shutdown(self) -> None:
        """Stop an evaluation between two batches and drop queued work (the app is closing)."""
        self.stop_evaluation()
        self._runner.discard_pending()

    def _cancel(self) -> None:
        if self._cancel_evaluation is not None:
            self._cancel_evaluation.set()
            self.progress_label.setText("Stopping…")

    @Slot(int, float, str)
    def _on_eval_progress(self, token: int, fraction: float, message: str) -> None:
        self.progress.setValue(int(1000 * max(0.0, min(1.0, fraction))))
        if message:
            self.progress_label.setText(f"{message} {100 * fraction:.0f} %" if fraction > 0 else message)

    def _end_evaluation(self) -> None:
        for widget in (self.progress, self.progress_label, self.cancel_button):
            widget.hide()
        self._cancel_evaluation = None
        self._update_evaluate_button()

    def _on_evaluated(self, outcome: tuple[str, dict, str] | None) -> None:
        self._end_evaluation()
        if outcome is None:
            self.banner.show_message("Evaluation cancelled; nothing was written.", "info")
            return
        run_dir, result, unsaved = outcome
        if not unsaved:
            self.evaluated.emit(run_dir)
            if self._report is not None and str(self._report.path) == run_dir:
                self.show_run(run_dir)
            return
        # Evaluated but not saved: show the new figures (this view only) and say why they are not in eval.json.
        report = self._report
        if report is not None and str(report.path) == run_dir:
            report.evaluation, report.eval_error = result, ""
            self._on_report(report)
        self.banner.show_message(
            f"Evaluated, but the results could not be saved to eval.json: {unsaved}. They are shown here until "
            "you open another run; the run keeps its previous eval.json, if it had one.", "warning")
        self.evaluated.emit(run_dir)

    def _on_evaluation_failed(self, message: str) -> None:
        self._end_evaluation()
        self.banner.show_error(f"Evaluation failed: {message}")

    # ================================================================ comparison
    def _load_compare_candidates(self, folder: Path, current: Path) -> None:
        if folder != self._compare_folder:
            self._compare_folder = folder
            self._compare_checked = set()
        self._compare_checked.add(str(current))

        def work(progress):
            runs = import_engine("runs")
            return [(str(r.path), r.name, r.model, r.status, (Path(r.path) / runs.EVAL_FILE).is_file())
                    for r in runs.list_runs(folder)]

        self._runner.submit(work, self._fill_compare_list)

    def _fill_compare_list(self, candidates: list[tuple[str, str, str, str, bool]]) -> None:
        self.compare_list.blockSignals(True)
        self.compare_list.clear()
        for path, name, model, status, evaluated in candidates:
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(f"{name}\n{model} · {status}" + ("" if evaluated else " · not evaluated"))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if path in self._compare_checked else Qt.CheckState.Unchecked)
            if not evaluated:
                item.setText(f"{name}  (not evaluated)")
                item.setForeground(Qt.GlobalColor.gray)
            self.compare_list.addItem(item)
        self.compare_list.blockSignals(False)
        self._refresh_comparison()

    def set_compared(self, run_dirs: list[str]) -> None:
        """Tick exactly these runs in the comparison (tests, screenshots)."""
        self._compare_checked = {str(Path(p)) for p in run_dirs}
        self.compare_list.blockSignals(True)
        for row in range(self.compare_list.count()):
            item = self.compare_list.item(row)
            checked = item.data(Qt.ItemDataRole.UserRole) in self._compare_checked
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.compare_list.blockSignals(False)
        self._refresh_comparison()

    @Slot(QListWidgetItem)
    def _on_compare_changed(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if item.checkState() == Qt.CheckState.Checked:
            self._compare_checked.add(path)
        else:
            self._compare_checked.discard(path)
        self._refresh_comparison()

    @Slot()
    def _refresh_comparison(self) -> None:
        order = [self.compare_list.item(r).data(Qt.ItemDataRole.UserRole) for r in range(self.compare_list.count())]
        chosen = [p for p in order if p in self._compare_checked]
        with_one_iteration = self.one_iteration.isChecked()

        def work(progress):
            rows = []
            for path in chosen:  # one run that cannot be read costs its own row, not the table
                try:
                    rows.extend(comparison_rows(read_run(path, curves=False), with_one_iteration))
                except Exception as error:
                    rows.append([Path(path).name, "–", f"cannot compare: {one_line(error)}", "–", str(path)])
            return rows

        self._runner.submit(work, self._fill_compare_table, self._on_compare_failed)

    def _on_compare_failed(self, message: str) -> None:
        self._fill_compare_table([["The runs cannot be compared", "–", message, "–", message]])

    def _fill_compare_table(self, rows: list[list[str]]) -> None:
        self.compare_table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row[: len(COMPARE_COLUMNS)]):
                item = QTableWidgetItem(text)
                if c == 0 and len(row) > len(COMPARE_COLUMNS):
                    item.setToolTip(row[len(COMPARE_COLUMNS)])
                self.compare_table.setItem(r, c, item)

    def sizeHint(self) -> QSize:
        return QSize(1200, 800)


def comparison_rows(report: RunReport, with_one_iteration: bool = True) -> list[list[str]]:
    """Table 1 rows for one run: Network, Params, MACs avg (min – max), Top-1 / Top-5, then a tooltip.

    The parameter count comes from the trainer's ``started`` event; runs without one load their
    checkpoint to count them (the same count the trainer reports).
    """
    evaluation = report.evaluation or {}
    parameters = report.parameters
    if parameters is None and report.checkpoint is not None:
        try:
            checkpoint = import_engine("checkpoint").load_checkpoint(report.checkpoint)
            parameters = sum(p.numel() for p in checkpoint.model.parameters())
        except Exception:  # a damaged checkpoint only costs this one cell
            parameters = None
    macs = evaluation.get("macs") or {}
    if report.eval_error:  # damaged: said in the tooltip, the row stays
        cost = "eval.json unreadable"
    elif macs:
        adaptive = (macs.get("max") or 0) > (macs.get("min") or 0)
        cost = formatting.si(macs.get("mean"))
        cost += f" ({formatting.macs_range(macs.get('min'), macs.get('max'))})" if adaptive else ""
    else:
        cost = "not evaluated"
    top5 = _top5(evaluation)
    accuracy = (f"{100 * evaluation['top1']:.1f} / " + ("–" if top5 is None else f"{100 * top5:.1f}")
                if "top1" in evaluation else "–")
    name = f"{report.name}  ·  {report.model}"  # the run first: a narrow column elides the model, not the run
    tooltip = f"{name}\n{report.path}" + (f"\n{report.eval_error}" if report.eval_error else "")
    rows = [[name, formatting.params(parameters) if parameters else "–", cost, accuracy, tooltip]]
    if with_one_iteration and report.architecture == "iamnn":
        for point in (evaluation.get("sweep") or {}).get("fixed") or []:
            if point.get("iterations") and all(n == 1 for n in point["iterations"]):
                rows.append([f"{report.name}, 1 iteration per block  ·  {report.model}",
                             formatting.params(parameters) if parameters else "–",
                             formatting.si(point.get("mean_macs")), f"{100 * point['top1']:.1f} / –",
                             "the same network forced to one iteration per block (no refinement)"])
    return rows


#: The accuracy tile's word on an evaluation of the validation images (eval.json's split "val").
HELD_OUT_DETAIL = "no test images: these also chose the model"
#: The evaluation sections' captions, ``images`` naming the evaluated split ("test images", "held-out images").
HISTOGRAM_CAPTION = ("Percentage of {images} that ran n iterations in each block (paper Fig. 2). "
                     "The dashed line is the cap: the unit count of the matching ResNet.")
SWEEP_CAPTION = "On the {images}: {key}"
SPECTRUM_CAPTION = "{images} that cost the least and the most compute (paper Fig. 3), with their MACs. Red: classified wrongly."
CLASS_CAPTION = "Top-1 accuracy of each class on the {images}."
#: The evaluate prompt's title for a run whose eval.json exists but cannot be read (the banner says why).
UNREADABLE_EVALUATION = "Its evaluation cannot be read: evaluate again"
#: Top-5 says something only with more than 5 classes (with 5 or fewer the true class is always among them).
TOP_K = 5


def spectrum_ends(evaluation: dict) -> tuple[list[dict], list[dict]]:
    """The cheapest and the most expensive images the strips show, none in both: ``SPECTRUM_SIZE`` each, or half
    of the ranked images where there are fewer (QA: of 22 images, "Cheapest" held the dearest one)."""
    easiest, hardest = evaluation.get("easiest") or [], evaluation.get("hardest") or []
    each = min(SPECTRUM_SIZE, _ranked_images(evaluation) // 2)
    shown = easiest[:each]
    taken = {int(e["index"]) for e in shown}
    return shown, [e for e in hardest if int(e["index"]) not in taken][:each]


def _ranked_images(evaluation: dict) -> int:
    """How many images the easiest and hardest lists were ranked from: eval.json's count, else (an older or
    damaged file) the distinct images the two lists name."""
    images = evaluation.get("images")
    if isinstance(images, int) and not isinstance(images, bool) and images > 0:
        return images
    named = {int(e["index"]) for e in (evaluation.get("easiest") or []) + (evaluation.get("hardest") or [])}
    return len(named)


def _top5(evaluation: dict) -> float | None:
    """The evaluation's top-5 accuracy where it means something: recorded, and more than ``TOP_K`` classes (older
    eval.json files hold a top-5 of 100 % for two classes)."""
    top5, classes = evaluation.get("top5"), evaluation.get("classes")
    if not isinstance(top5, (int, float)) or (isinstance(classes, list) and len(classes) <= TOP_K):
        return None
    return float(top5)


def unsaved_reason(error: OSError) -> str:
    """Why eval.json could not be written, in words, with the file the error names."""
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    return io.unsaved_reason(error) + where


def _config_reason(error: ValueError, path: Path) -> str:
    """Why config.toml gives no settings, without the loader's "config: " (the view names the file already)."""
    try:
        missing = not path.exists()
    except OSError:
        missing = False
    return NO_CONFIG if missing else str(error).removeprefix("config: ")


def _config_problem(report: RunReport) -> str:
    """The banner's words for a config.toml that gives no settings ("" when it does): one phrase, not the
    loader's "config.toml: config: no such file: ..." (QA)."""
    if report.config_error == NO_CONFIG:
        return "No config.toml in this run folder: its model and dataset are unknown"
    return f"config.toml cannot be read ({report.config_error})" if report.config_error else ""


def _evaluation_blocker(report: RunReport | None) -> str:
    """Why ``report``'s run cannot be evaluated, or "" if it can."""
    if report is None:
        return "Open a run first."
    if report.state in LIVE_STATES:
        return STILL_TRAINING
    if report.checkpoint is None:
        if report.state == "failed":
            return (f"It failed before saving a checkpoint (checkpoints/best.pt or last.pt) to evaluate: "
                    f"{report.state_reason or 'no reason recorded'}")
        return "The run has no checkpoint (checkpoints/best.pt or last.pt) to evaluate."
    if report.config_error == NO_CONFIG:
        return ("It has no config.toml, so the dataset to evaluate on is unknown. Restore config.toml, then open the "
                "run again.")
    if report.config is None:
        return (f"Its config.toml cannot be read ({report.config_error or 'missing'}), so the dataset to evaluate "
                "on is unknown. Fix or restore config.toml, then open the run again.")
    return ""


def _split_to_evaluate(report: RunReport | None) -> str:
    """The word for the images an evaluation of ``report``'s run measures ("test", "held-out"): its eval.json's
    split, else the split its dataset would give (``RunReport.evaluation_split``)."""
    if report is None:
        return split_word(None)
    return evaluation_word(report.evaluation) if report.evaluation else split_word(report.evaluation_split)


def _describe_image(entry: dict, split: Any = "test") -> str:
    verdict = "correct" if entry.get("correct", True) else f"predicted {entry.get('prediction')}"
    iterations = entry.get("iterations")
    its = f"\niterations per block: {', '.join(str(n) for n in iterations)}" if iterations else ""
    return f"{split_word(split)} image {entry.get('index')}: {entry.get('label')} ({verdict})\n{formatting.macs(entry.get('macs'))}{its}"


UNCALIBRATED_VERDICT = ("The halting head was never calibrated (the run stopped before calibration): its "
                        "iterations say nothing yet. Continue the run from the Runs tab to calibrate it.")


def _adaptivity_verdict(evaluation: dict, architecture: str) -> tuple[str, str, str | None]:
    """(value, detail, colour) of the adaptivity figure."""
    if not evaluation:
        return "–", "measured by the evaluation", None
    if architecture != "iamnn":
        return "Fixed", "the ResNet baseline runs every unit for every image", theme.TEXT_MUTED
    adaptivity = evaluation.get("adaptivity")
    macs = evaluation.get("macs") or {}
    spread = f"p90/p10 {formatting.ratio(macs.get('p90_over_p10'))} · max/min {formatting.ratio(macs.get('max_over_min'))}"
    if evaluation.get("full_depth_note"):  # an adaptive run trained with --no-calibrate: not a fixed-mode choice
        note = evaluation["full_depth_note"]
        return "Full depth", note[:1].upper() + note[1:], theme.TEXT_MUTED
    if not adaptivity:
        return "Fixed", f"mode {evaluation.get('mode', '?')}: the same iterations for every image", theme.TEXT_MUTED
    if evaluation.get("halting_calibrated") is False:
        return "Not calibrated", UNCALIBRATED_VERDICT, theme.WARNING
    if one_iteration_halting(evaluation):  # every image alike by design, not a collapse (as the verdict says)
        return ("Fixed", "the halting is limited to one iteration per block: it runs what fixed:1 runs",
                theme.TEXT_MUTED)
    collapse = adaptivity.get("collapse") or {}
    tradeoff = halting_tradeoff(evaluation)
    if collapse.get("alarm"):
        detail = "; ".join(collapse.get("reasons") or []) or spread
        if tradeoff is not None and tradeoff["outcome"] == "pays" and tradeoff["beats_random"] is True:
            detail += " · yet it beats fixed counts and random allocation"  # as the verdict under the sweep says
        return "Collapsed", detail, theme.WARNING
    if tradeoff is not None and tradeoff["outcome"] == "does not pay":
        alternative = tradeoff["alternative"]
        if tradeoff["beats_random"] is False and (alternative is None or alternative["mean_macs"] > tradeoff["mean_macs"]):
            return ("Doesn't pay", f"no better than dealing its iterations at random "
                    f"({100 * tradeoff['versus_random']:+.2f} pt)", theme.WARNING)
        if alternative is None:
            gap = 100 * (tradeoff["fixed_at_equal_macs"] - tradeoff["top1"])
            return "Doesn't pay", f"fixed counts at the same MACs: {gap:+.2f} pt", theme.WARNING
        return ("Doesn't pay", f"{tradeoff['suggested_mode']}: {formatting.percent(alternative['top1'])} at "
                f"{formatting.si(alternative['mean_macs'])} MACs · fixed counts beat the halting", theme.WARNING)
    rho = adaptivity.get("spearman_macs_vs_loss")
    extra = f" · MACs vs loss ρ {rho:.2f}" if isinstance(rho, (int, float)) else ""
    if tradeoff is not None and tradeoff["fixed_at_equal_macs"] is not None:
        extra += f" · {100 * (tradeoff['top1'] - tradeoff['fixed_at_equal_macs']):+.2f}"
        if tradeoff["standard_error"] is not None:  # two paired standard errors: the verdict's "within noise" band
            extra += f" ± {200 * tradeoff['standard_error']:.2f}"
        extra += " pt vs fixed counts"
    if tradeoff is not None and tradeoff["outcome"] == "level":  # compute tracks difficulty, accuracy is a tie
        why = ("within noise" if tradeoff["within_noise"] else "random allocation not measured"
               if tradeoff["random_top1"] is None else "level with random allocation")
        return "Adapts", spread + extra + f" ({why})", theme.TEXT
    return "Adapts", spread + extra, theme.GOOD
