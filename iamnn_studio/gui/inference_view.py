"""The "Use" tab: classify images with a trained checkpoint and see how much compute each one took.

Open a checkpoint, then drop, open or paste images. Each image becomes a card with its top-5
classes, the iterations each block ran against its cap, its MACs against the evaluation's average and
a halting chart per block. The threshold slider and the mode re-run every image live, so the
user sees the compute (and sometimes the answer) change. Torch work runs in a background runner.
"""
from __future__ import annotations

import itertools
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QEvent, QIODevice, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QImageReader
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from ..engine.pixels import SIXTEEN_BIT_MODES, peak_value, to_8_bit  # torch-free: a thumbnail needs no model
from ..split_words import split_word

from .file_kinds import CHECKPOINT_FILTER, IMAGE_FILTER, MAX_FOLDER_IMAGES, sort_dropped
from .style import scaled_px
from .widgets import formatting, theme
from .widgets.charts import swatch
from .widgets.elided_label import ElidedLabel
from .widgets.empty_state import EmptyState
from .widgets.message_banner import MessageBanner
from .widgets.prediction_card import ErrorCard, PredictionCard
from .widgets.tasks import BackgroundRunner, import_engine

UNCALIBRATED_NOTE = ("This model's halting head was never calibrated (its run stopped before calibration): its "
                     "adaptive iteration counts mean little. Resume the run from the Runs tab to calibrate it, or "
                     "use the mode “Every iteration” or “Fixed”.")
THRESHOLD_TIP = ("A block stops once its cumulative halting score reaches this threshold: "
                 "lower means less compute per image")
ONE_ITERATION_NOTE = ("The calibration limited the halting to one iteration per block: there is no halting decision "
                      "to make, so the threshold changes nothing.")
#: Thumbnails are decoded at most this large (a 40-megapixel photo must not sit in memory).
PREVIEW_SIZE = 256
DEBOUNCE_MS = 180
#: The threshold slider's resolution: 0.001.
SLIDER_STEPS = 1000
MODES = (("adaptive", "Adaptive (halting decides)"), ("fixed", "Fixed iterations per block"), ("max", "Every iteration (cap)"))
MODE_NAMES = dict(MODES)


@dataclass
class _Entry:
    """One image the user added: where it comes from and the card that shows it."""

    key: int
    name: str
    path: str | None = None  # a file, or
    pil: Any = None  # an in-memory PIL image (pasted or given to add_image)
    qimage: QImage | None = None  # a pasted image until the background task has read it into ``pil``
    preview: QImage | None = None
    card: QWidget | None = None
    failed: bool = False  # unreadable: not re-run when the settings change
    prediction: Any = None


@dataclass
class _Settings:
    mode: str
    threshold: float | None

    def apply(self, predictor: Any) -> None:
        predictor.mode = self.mode
        if self.threshold is not None:
            predictor.threshold = self.threshold


@dataclass
class _Outcome:
    """What a prediction task hands back to the UI thread."""

    keys: list[int] = field(default_factory=list)  # the entries this task was about, in order
    results: dict[int, Any] = field(default_factory=dict)  # entry key -> Prediction | error message
    previews: dict[int, QImage] = field(default_factory=dict)
    images: dict[int, Any] = field(default_factory=dict)  # entry key -> PIL image read from its pasted QImage
    mean_test_macs: float | None = None
    settings: _Settings | None = None


class InferenceView(QWidget):
    """Drop images, see predictions, iterations per block and halting scores.

    ``load_checkpoint(path)`` returns False at once for a path that is not a file; a file that is
    not a usable checkpoint is reported in the view after it was tried (``checkpoint_failed``).
    """

    checkpoint_loaded = Signal(str)
    checkpoint_failed = Signal(str)  # one-line message
    predictions_updated = Signal()  # every time cards were (re)filled

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self._runner = BackgroundRunner(self)
        self._runner.busy_changed.connect(self._on_busy)
        self._predictor: Any = None
        self._checkpoint_path: str | None = None
        self._entries: list[_Entry] = []
        self._keys = itertools.count(1)
        self._mean_test_macs: float | None = None
        self._average_word = "test"  # the split that average comes from: "held-out" where the run had no test split
        self._model_halts = False  # an IamNN (the threshold matters), not the ResNet baseline
        self._halting_caps: list[int] = []  # the most iterations per block the halting may use (its calibration's)
        self._threshold_value = 0.99
        self._advice: tuple[dict, int, list[int]] | None = None  # (tradeoff, N, caps): "Fixed, N = 2 is cheaper…"
        self._rerun_in_flight = False
        self._rerun_wanted = False
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self._rerun)
        # results waiting for their cards: built a few per turn of the event loop (a card costs ~5 ms to build
        # and ~10 ms to lay out; a dropped folder of 200 images would hold the window for seconds at once)
        self._unshown: list[tuple[int, Any]] = []
        self._first_new_card: QWidget | None = None
        self._show_more = QTimer(self, singleShot=True, interval=0)
        self._show_more.timeout.connect(self._show_some_results)
        self._build()
        self._update_controls()

    # ================================================================ public API
    def load_checkpoint(self, path: str) -> bool:
        """Start loading ``path`` in the background; False (with a message) if it is not a file."""
        file = Path(path)
        if not file.is_file():
            self._fail_checkpoint(f"Cannot open {file.name or path}: no such file.")
            return False
        self.banner.hide()
        self.checkpoint_label.setText(f"Loading {file.name}…")

        def load(report):
            inference = import_engine("inference")
            predictor = inference.Predictor.from_checkpoint(str(file), device="cpu")
            return predictor, _describe_model(predictor), predictor.mean_test_macs

        self._runner.submit(load, lambda result: self._on_checkpoint(str(file), *result),
                            lambda message: self._fail_checkpoint(f"Cannot open {file.name}: {message}"))
        return True

    def add_image_files(self, paths: list[str]) -> None:
        """Add image files and the images in folders (unreadable ones become error cards); a
        checkpoint among them is opened."""
        dropped = sort_dropped([str(p) for p in paths])
        for path in dropped.checkpoints[-1:]:  # several: the last one dropped wins, as it would opened one by one
            self.load_checkpoint(path)
        for path in dropped.configs:
            self._show_error_card(self._new_entry(Path(path).name),
                                  "a run config: open it in the Train tab (File › Open run config)")
        for folder in dropped.empty_folders:
            self._show_error_card(self._new_entry(Path(folder).name or folder), "no images in this folder")
        for folder, reason in dropped.unreadable_folders:  # its images, if any, are left out: say so, not skip it
            self._show_error_card(self._new_entry(Path(folder).name or folder),
                                  f"cannot read the folder {folder}: {reason}")
        entries = [self._new_entry(Path(p).name, path=p) for p in dropped.images]
        if entries:
            self._classify(entries, load_previews=True)
        if dropped.folders_cut_short:
            names = ", ".join(Path(folder).name or folder for folder in dropped.folders_cut_short)
            self.banner.show_message(f"Added the first {MAX_FOLDER_IMAGES} images of {names}; the rest were left out: "
                                     "drop a smaller folder, or the images themselves.", "info")

    def add_image(self, image: Any, name: str) -> None:
        """Add an in-memory image (``QImage`` or PIL ``Image``), e.g. pasted from the clipboard."""
        if isinstance(image, QImage):
            if image.isNull():
                self._show_error_card(self._new_entry(name), "the pasted data is not an image")
                return
            # read (PNG-encoded) in the background: a large paste held the window for seconds
            entry = self._new_entry(name)
            entry.qimage = image  # implicitly shared: no copy
        else:
            entry = self._new_entry(name, pil=image)
        self._classify([entry], load_previews=True)

    def clear(self) -> None:
        # Every card out of the layout and hidden before any is deleted: each card deleted while the others
        # stayed laid out made the list lay itself out again (QA: 61 s to clear 200 cards). A hidden card
        # (painted charts, no graphics scene) is then deleted in ~0.1 ms.
        self.card_list.setUpdatesEnabled(False)
        for entry in self._entries:
            if entry.card is not None:
                self.card_layout.removeWidget(entry.card)
                entry.card.hide()
                entry.card.deleteLater()
        self.card_list.setUpdatesEnabled(True)
        self._entries.clear()
        self._unshown.clear()
        self._first_new_card = None
        self._update_controls()

    # read-only views for the shell and tests
    @property
    def cards(self) -> list[QWidget]:
        return [e.card for e in self._entries if e.card is not None]

    @property
    def predictor(self) -> Any:
        return self._predictor

    def is_busy(self) -> bool:
        return self._runner.is_busy() or self._debounce.isActive() or bool(self._unshown)

    # ================================================================ layout
    def _build(self) -> None:
        self.open_button = QPushButton("Open checkpoint…")
        self.open_button.setObjectName("Primary")
        self.open_button.clicked.connect(self._choose_checkpoint)
        self.checkpoint_label = ElidedLabel("No checkpoint open")  # a narrow window shows "…", not a cut word
        self.checkpoint_label.setProperty("role", "muted")
        self.add_button = QPushButton("Add images…")
        self.add_button.clicked.connect(self._choose_images)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove every image from the list")
        self.clear_button.clicked.connect(self.clear)
        top = QHBoxLayout()
        top.setSpacing(theme.SPACING)
        top.addWidget(self.open_button)
        top.addWidget(self.checkpoint_label, 1)
        top.addWidget(self.add_button)
        top.addWidget(self.clear_button)

        self.mode_combo = QComboBox()
        for value, text in MODES:
            self.mode_combo.addItem(text, value)
        self.mode_combo.currentIndexChanged.connect(self._on_settings_changed)
        self.fixed_spin = QSpinBox()
        self.fixed_spin.setRange(1, 1)
        self.fixed_spin.setPrefix("N = ")
        self.fixed_spin.setToolTip("Iterations every block runs (capped at the block's maximum)")
        self.fixed_spin.valueChanged.connect(self._on_settings_changed)
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(1, SLIDER_STEPS)
        self.threshold_slider.setValue(round(0.99 * SLIDER_STEPS))
        self.threshold_slider.setSingleStep(5)
        self.threshold_slider.setPageStep(50)
        self.threshold_slider.setToolTip(THRESHOLD_TIP)
        self.threshold_slider.valueChanged.connect(self._on_slider_moved)
        self.threshold_value = QLabel("0.990")
        self.threshold_caption = QLabel("Halting threshold")
        for label in (self.threshold_caption, self.threshold_value):  # grey with the slider (fixed modes)
            label.setProperty("dimsWhenDisabled", True)
        self.totals_label = QLabel()
        self.totals_label.setProperty("role", "muted")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setVisible(False)
        controls = QHBoxLayout()
        controls.setSpacing(theme.SPACING)
        self.mode_caption = QLabel("Mode")
        self.mode_caption.setProperty("dimsWhenDisabled", True)  # greys with the box until a checkpoint is open
        controls.addWidget(self.mode_caption)
        controls.addWidget(self.mode_combo)
        controls.addWidget(self.fixed_spin)
        controls.addSpacing(theme.SPACING)
        controls.addWidget(self.threshold_caption)
        controls.addWidget(self.threshold_slider, 1)
        controls.addWidget(self.threshold_value)
        self.no_halting_note = QLabel("This model has no halting: every image runs every unit of every block.")
        self.no_halting_note.setProperty("role", "muted")
        controls.addWidget(self.no_halting_note, 1)
        controls.addSpacing(theme.SPACING)
        controls.addWidget(self.busy)

        muted = theme.TEXT_MUTED
        blocks = "".join(f"<span style='color:{theme.block_color(b)}'>&#9632;</span>" for b in range(4))
        # Each entry holds together (no-break spaces, word joiners after dashes, which break otherwise),
        # so a narrow row wraps between entries: under a 14-pt font "cumulative" / "score" were split.
        entries = [f"{blocks}<span style='color:{muted}'>&nbsp;{_unbroken('halting score of each iteration')}</span>",
                   swatch(theme.TEXT, _unbroken("cumulative score"), "&#9679;&#8288;&#8212;", muted),
                   swatch(theme.ERROR, "threshold", "-&#8288;&nbsp;-&#8288;&nbsp;-&#8288;", muted),
                   swatch(theme.PLOT_AXIS, _unbroken("iterations run"), "&#9646;", muted),
                   swatch(theme.TEXT_MUTED, "stopped", "&#9475;", muted)]
        self.legend = QLabel("&nbsp;&nbsp;&nbsp; ".join(entries))
        self.legend.setToolTip("A block stops once its cumulative halting score reaches the threshold, "
                               "or at its cap (the last iteration has no score); its number is bold under "
                               "the chart. Hover over a chart for its scores.")
        self.legend.setWordWrap(True)  # legend and totals share the row: both wrap rather than overlap
        self.totals_label.setWordWrap(True)
        self.totals_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        legend_row = QHBoxLayout()
        legend_row.addWidget(self.legend, 3)
        legend_row.addWidget(self.totals_label, 2)

        self.banner = MessageBanner()

        self.empty = EmptyState()
        self.empty.add_action("Open checkpoint…", self._choose_checkpoint)
        self.empty.add_action("Add images…", self._choose_images)
        self.card_list = QWidget()
        self.card_layout = QVBoxLayout(self.card_list)
        # The list is at least as tall as its cards at once: a card added to a list still at its old height
        # squeezed every card above it (all laid out again) until the scroll area grew the list (all laid out
        # once more), for every card added (QA: 150 dropped images held the window 0.6 s at a time).
        self.card_layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        self.card_layout.setContentsMargins(0, 0, 4, 0)
        self.card_layout.setSpacing(theme.SPACING)
        self.card_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(self.card_list)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.scroll)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.MARGIN, theme.MARGIN, theme.MARGIN, theme.MARGIN)
        layout.setSpacing(theme.SPACING)
        layout.addLayout(top)
        layout.addLayout(controls)
        layout.addLayout(legend_row)
        layout.addWidget(self.banner)
        layout.addWidget(self.stack, 1)
        self._fit_to_font()

    def _fit_to_font(self) -> None:
        """Widths drawn for the 10-pt font, grown with the one in use (fixed pixels did not grow with the text)."""
        self.threshold_slider.setMinimumWidth(scaled_px(200, self.font()))
        self.threshold_value.setMinimumWidth(self.threshold_value.fontMetrics().horizontalAdvance("0.000") + 2)
        self.busy.setFixedWidth(scaled_px(90, self.font()))

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._fit_to_font()

    def _update_controls(self) -> None:
        loaded = self._predictor is not None
        mode = self.mode_combo.currentData()
        for widget in (self.mode_caption, self.mode_combo, self.fixed_spin):
            widget.setEnabled(loaded)
        # a model without halting (the ResNet baseline) has no modes, threshold or halting charts to explain
        halting_model = not loaded or self._model_halts
        for widget in (self.mode_caption, self.mode_combo, self.threshold_caption, self.threshold_slider,
                       self.threshold_value):
            widget.setVisible(halting_model)
        self.no_halting_note.setVisible(not halting_model)
        self.fixed_spin.setVisible(halting_model and mode == "fixed")
        # QA: a calibration that limits the halting to 1 iteration per block leaves no decision to make: the
        # slider was enabled, and moving it changed nothing
        one_iteration = self._has_halting and bool(self._halting_caps) and max(self._halting_caps) <= 1
        adaptive = loaded and mode == "adaptive" and self._has_halting and not one_iteration
        for widget in (self.threshold_slider, self.threshold_value, self.threshold_caption):
            widget.setEnabled(adaptive)
            widget.setToolTip(ONE_ITERATION_NOTE if one_iteration else THRESHOLD_TIP)
        self.threshold_value.setText(f"{self._threshold():.3f}")
        self._update_advice()
        self.clear_button.setEnabled(bool(self._entries))
        self.stack.setCurrentWidget(self.scroll if self._entries else self.empty)
        # no legend for charts that are not drawn: a one-iteration halting and the fixed modes have only a note per card
        self.legend.setVisible(bool(self._entries) and self._has_halting and mode == "adaptive" and not one_iteration)
        if loaded:
            self.empty.set_text("Drop images here",
                                "…or paste one (Ctrl+V), or click Add images. Each image shows its top-5 classes, "
                                "the iterations every block ran and the compute it cost.")
        else:
            self.empty.set_text("Open a checkpoint, then drop images here",
                                "Use a best.pt from a run (or any IamNN Studio checkpoint). "
                                "Images dropped before a checkpoint is open wait for one.")
        self._update_totals()

    @property
    def _has_halting(self) -> bool:
        return self._predictor is not None and self._model_halts

    def _update_totals(self) -> None:
        predictions = [e.prediction for e in self._entries if e.prediction is not None and not e.failed]
        if not predictions:
            self.totals_label.setText("")
            return
        total = sum(int(p.macs) for p in predictions)
        mean = total / len(predictions)
        text = f"{len(predictions)} image{'s' if len(predictions) != 1 else ''} · mean {formatting.macs(mean)}"
        if self._mean_test_macs:
            text += f" ({formatting.ratio(mean / self._mean_test_macs)} the {self._average_word} average)"
        text += f" · total {formatting.macs(total)}"
        self.totals_label.setText(text)

    # ================================================================ user actions
    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", self._checkpoint_path or "", CHECKPOINT_FILTER)
        if path:
            self.load_checkpoint(path)

    def _choose_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add images", "", IMAGE_FILTER)
        if paths:
            self.add_image_files(paths)

    @Slot()
    def paste(self) -> None:
        """Add the clipboard's image (or image files); the main window binds Ctrl+V to its own paste."""
        mime = QGuiApplication.clipboard().mimeData()
        if mime is not None:
            self._accept_mime(mime, "pasted image")

    def _accept_mime(self, mime, fallback_name: str) -> bool:
        files = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()] if mime.hasUrls() else []
        if files:
            self.add_image_files(files)
            return True
        if mime.hasImage():
            image = mime.imageData()
            self.add_image(image if isinstance(image, QImage) else QImage(image), fallback_name)
            return True
        return False

    # drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt name)
        mime = event.mimeData()
        if (mime.hasUrls() and any(u.isLocalFile() for u in mime.urls())) or mime.hasImage():
            event.acceptProposedAction()
            self.empty.set_highlighted(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self.empty.set_highlighted(False)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.empty.set_highlighted(False)
        if self._accept_mime(event.mimeData(), "dropped image"):
            event.acceptProposedAction()
        else:
            event.ignore()

    # settings
    def _threshold(self) -> float:
        return self._threshold_value

    @Slot(int)
    def _on_slider_moved(self, value: int) -> None:
        self._threshold_value = value / SLIDER_STEPS
        self._on_settings_changed()

    def halting_setting(self) -> tuple[str, float | None] | None:
        """The halting set here for the checkpoint open, as its predictions apply it: (mode, threshold), the
        mode "adaptive", "fixed:N" or "max" and the threshold for "adaptive" only (else None); None with no
        checkpoint open or for a model without halting (the ResNet baseline)."""
        if not self._has_halting:
            return None
        settings = self._settings()
        return str(settings.mode), settings.threshold if settings.mode == "adaptive" else None

    def apply_halting_setting(self, mode: str, threshold: float | None) -> None:
        """Choose the halting (as ``halting_setting`` gives it) for the checkpoint open: a restart brings back
        what the user had set. Anything this model cannot take is left as the checkpoint's own."""
        kind = "fixed" if mode.startswith("fixed:") else mode
        index = self.mode_combo.findData(kind)
        if self._predictor is None or not self._has_halting or index < 0:
            return
        for widget in (self.mode_combo, self.fixed_spin, self.threshold_slider):
            widget.blockSignals(True)
        self.mode_combo.setCurrentIndex(index)
        if kind == "fixed" and mode.split(":", 1)[1].isdigit():
            self.fixed_spin.setValue(int(mode.split(":", 1)[1]))
        if isinstance(threshold, (int, float)) and 0.0 < threshold <= 1.0:
            self._threshold_value = float(threshold)
            self.threshold_slider.setValue(max(1, min(SLIDER_STEPS, round(self._threshold_value * SLIDER_STEPS))))
        for widget in (self.mode_combo, self.fixed_spin, self.threshold_slider):
            widget.blockSignals(False)
        self._on_settings_changed()

    def _settings(self) -> _Settings:
        mode = self.mode_combo.currentData()
        if mode == "fixed":
            mode = f"fixed:{self.fixed_spin.value()}"
        threshold = self._threshold() if self._has_halting else None
        return _Settings(mode, threshold)

    @Slot()
    def _on_settings_changed(self, *_: object) -> None:
        self._update_controls()
        if self._predictor is not None:
            self._debounce.start()

    # ================================================================ background work
    def _new_entry(self, name: str, path: str | None = None, pil: Any = None) -> _Entry:
        entry = _Entry(next(self._keys), name, path=path, pil=pil)
        self._entries.append(entry)
        return entry

    def _classify(self, entries: list[_Entry], load_previews: bool) -> None:
        predictor, settings = self._predictor, self._settings()
        self._update_controls()
        jobs = [(e.key, e.path, _in_memory(e)) for e in entries]

        def work(report):
            outcome = _Outcome(keys=[key for key, _, _ in jobs])
            if load_previews:
                for key, path, image in jobs:
                    preview = _read_preview(path) if path else _memory_preview(image)
                    if preview is not None:
                        outcome.previews[key] = preview
            for index, (key, path, image) in enumerate(jobs):
                if isinstance(image, QImage):  # read once, kept as the entry's image
                    outcome.images[key] = _qimage_to_pil(image)
                    jobs[index] = (key, path, outcome.images[key])
            if predictor is None:  # no checkpoint yet: only previews, and a check that files are images
                for key, path, _ in jobs:
                    if path and key not in outcome.previews:
                        outcome.results[key] = _unreadable(path, f"cannot read {Path(path).name}: not an image file")
                return outcome
            settings.apply(predictor)
            outcome.results.update(_predict(predictor, jobs))
            outcome.mean_test_macs, outcome.settings = predictor.mean_test_macs, settings
            return outcome

        self._runner.submit(work, self._on_classified, self._on_task_error)

    @Slot()
    def _rerun(self) -> None:
        """Re-classify every readable image with the current settings (one run at a time)."""
        if self._predictor is None:
            return
        if self._rerun_in_flight:
            self._rerun_wanted = True
            return
        entries = [e for e in self._entries if not e.failed]
        self._rerun_in_flight = True
        predictor, settings = self._predictor, self._settings()
        jobs = [(e.key, e.path, _in_memory(e)) for e in entries]

        def work(report):
            settings.apply(predictor)
            return _Outcome(keys=[key for key, _, _ in jobs], results=_predict(predictor, jobs),
                            mean_test_macs=predictor.mean_test_macs, settings=settings)

        def done(outcome: _Outcome) -> None:
            self._rerun_in_flight = False
            self._on_classified(outcome)
            if self._rerun_wanted:
                self._rerun_wanted = False
                self._rerun()

        def failed(message: str) -> None:
            self._rerun_in_flight = self._rerun_wanted = False
            self._on_task_error(message)

        self._runner.submit(work, done, failed)

    def checkpoint_path(self) -> str | None:
        """The checkpoint open in this view, or None."""
        return self._checkpoint_path if self._predictor is not None else None

    def _on_checkpoint(self, path: str, predictor: Any, description: dict, mean_test_macs: float | None) -> None:
        self._predictor = predictor
        self._checkpoint_path = path
        self._mean_test_macs = mean_test_macs
        self._average_word = description["average_word"]
        self._unshown.clear()  # the previous model's results: every image is classified again below
        self._model_halts = bool(description["halts"])
        self._halting_caps = [int(n) for n in description.get("halting_caps") or description["caps"]]
        self.checkpoint_label.setText(description["text"])
        self.checkpoint_label.setToolTip(path)
        for widget in (self.mode_combo, self.fixed_spin, self.threshold_slider):
            widget.blockSignals(True)
        self.fixed_spin.setRange(1, max(description["caps"]))
        mode = description["mode"]
        self.mode_combo.setCurrentIndex(self.mode_combo.findData("fixed" if mode.startswith("fixed:") else mode))
        if mode.startswith("fixed:"):
            self.fixed_spin.setValue(int(mode.split(":", 1)[1]))
        if description["threshold"] is not None:
            # the slider shows the nearest step; the checkpoint's exact threshold stays until it is moved
            self._threshold_value = float(description["threshold"])
            self.threshold_slider.setValue(max(1, min(SLIDER_STEPS, round(self._threshold_value * SLIDER_STEPS))))
        for widget in (self.mode_combo, self.fixed_spin, self.threshold_slider):
            widget.blockSignals(False)
        tradeoff = description.get("tradeoff")
        self._advice = None
        if description.get("uncalibrated"):
            self.banner.show_message(UNCALIBRATED_NOTE, "info")
        elif mode == "adaptive" and tradeoff is not None and tradeoff["outcome"] == "does not pay" \
                and tradeoff["suggested_mode"].startswith("fixed:"):
            n = int(tradeoff["suggested_mode"].split(":", 1)[1])
            self._advice = (tradeoff, n, [int(cap) for cap in description["caps"]])
            self.banner.show_message(self._advice_text(chosen=False), "info")
        else:
            self.banner.hide()
        self._update_controls()
        self.checkpoint_loaded.emit(path)
        if self._entries:  # images dropped before (or classified by another model) run with this one
            self._classify(list(self._entries), load_previews=False)

    def _advice_text(self, *, chosen: bool) -> str:
        """Why the evaluation advises a fixed setting, on the images it names ("held-out" for eval.json's split
        "val"), in the mode control's words and with both figures; then how to choose it, or (chosen) what it does."""
        tradeoff, n, caps = self._advice or ({}, 0, [])
        fixed_mode = f"Mode “{MODE_NAMES['fixed']}”, N = {n}"
        where = f"On its {split_word(getattr(self._predictor, 'evaluated_split', None))} images the halting does " \
                f"not pay on this model. {fixed_mode} {_fixed_against_adaptive(tradeoff)}."
        if not chosen:
            return f"{where} Select it above to use it."
        iterations = f"{n} iteration{'s' if n != 1 else ''}" + (" (or its cap, where lower)" if n > min(caps) else "")
        return f"{where} It is selected: every block runs {iterations} on every image."

    def _update_advice(self) -> None:
        """Keep the "Fixed, N = 2 … Select it above" advice true as the mode changes: no advice to choose what
        is chosen. Only while the banner shows that advice (not once dismissed, nor over another message)."""
        if self._advice is None or self.banner.isHidden():
            return
        texts = {self._advice_text(chosen=False), self._advice_text(chosen=True)}
        if self.banner.text() not in texts:
            return
        chosen = self.mode_combo.currentData() == "fixed" and self.fixed_spin.value() == self._advice[1]
        text = self._advice_text(chosen=chosen)
        if text != self.banner.text():
            self.banner.show_message(text, "info")

    def _fail_checkpoint(self, message: str) -> None:
        self.checkpoint_label.setText(  # the run's folder too: every run's checkpoint is called best.pt
            f"{_checkpoint_label(Path(self._checkpoint_path))} (still open)" if self._predictor is not None
            else "No checkpoint open"
        )
        self.banner.show_error(message)
        self.checkpoint_failed.emit(message)

    def _on_classified(self, outcome: _Outcome) -> None:
        if outcome.settings is not None:  # a prediction ran: its setting's evaluated average applies
            self._mean_test_macs = outcome.mean_test_macs
        by_key = {e.key: e for e in self._entries}
        for key, preview in outcome.previews.items():
            if key in by_key:
                by_key[key].preview = preview
        for key, image in outcome.images.items():
            if key in by_key:
                by_key[key].pil, by_key[key].qimage = image, None
        # a newer result for an image replaces one still waiting for its card (a slider moved again, a model reopened)
        newer = set(outcome.keys)
        self._unshown = [item for item in self._unshown if item[0] not in newer]
        self._unshown += [(key, outcome.results.get(key)) for key in outcome.keys]
        self._show_some_results()

    #: Time the UI thread may spend building cards before it handles other events again.
    CARD_BUILD_BUDGET_S = 0.04

    @Slot()
    def _show_some_results(self) -> None:
        """Fill the cards of waiting results until the time budget is spent (at least one), then come back."""
        started = time.monotonic()
        by_key = {e.key: e for e in self._entries}
        built = 0
        while self._unshown and (not built or time.monotonic() - started < self.CARD_BUILD_BUDGET_S):
            built += 1
            key, result = self._unshown.pop(0)
            entry = by_key.get(key)
            if entry is None:  # removed (or cleared) while the task ran
                continue
            had_card = entry.card is not None
            if isinstance(result, str):
                self._show_error_card(entry, result)
            elif result is not None:
                self._show_prediction(entry, result)
            elif entry.card is None:
                self._show_pending(entry)
            if not had_card and self._first_new_card is None:
                self._first_new_card = entry.card
        self._update_controls()
        if self._unshown:
            self._show_more.start()
            return
        first_new, self._first_new_card = self._first_new_card, None
        if first_new is not None and isValid(first_new):
            # the card as context: the call is dropped if the card is gone by then
            QTimer.singleShot(0, first_new, lambda card=first_new: self._scroll_to(card))
        self.predictions_updated.emit()

    def _on_task_error(self, message: str) -> None:
        self.banner.show_error(f"Could not classify the images: {message}")

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)

    # ================================================================ cards
    def _place(self, entry: _Entry, card: QWidget) -> None:
        if entry.card is not None and entry.card is self._first_new_card:  # the card to scroll to is this one now
            self._first_new_card = card
        if entry.card is not None:
            index = self.card_layout.indexOf(entry.card)
            self.card_layout.removeWidget(entry.card)
            entry.card.deleteLater()
        else:
            index = self.card_layout.count() - 1  # before the stretch
        self.card_layout.insertWidget(index, card)
        card.removed.connect(self._remove_card)
        entry.card = card

    def _show_prediction(self, entry: _Entry, prediction: Any) -> None:
        entry.prediction, entry.failed = prediction, False
        if not isinstance(entry.card, PredictionCard):
            self._place(entry, PredictionCard(entry.name, entry.preview))
        elif entry.preview is not None and entry.card.thumbnail.pixmap().isNull():
            entry.card.set_image(entry.preview)
        entry.card.set_prediction(prediction, self._mean_test_macs, halts=self._model_halts,
                                  average_word=self._average_word)

    def _show_pending(self, entry: _Entry) -> None:
        card = PredictionCard(entry.name, entry.preview)
        card.set_pending("Open a checkpoint to classify this image.")
        self._place(entry, card)

    def _show_error_card(self, entry: _Entry, message: str) -> None:
        entry.failed, entry.prediction = True, None
        self._place(entry, ErrorCard(entry.name, _sentence(message)))
        self._update_controls()

    @Slot(object)
    def _remove_card(self, card: QWidget) -> None:
        for entry in list(self._entries):
            if entry.card is card:
                self._entries.remove(entry)
                card.deleteLater()
        if card is self._first_new_card:
            self._first_new_card = None
        self._update_controls()

    def _scroll_to(self, card: QWidget) -> None:
        self.scroll.ensureWidgetVisible(card, 0, theme.SPACING)

    def sizeHint(self) -> QSize:
        return QSize(1100, 700)


# ==================================================================== helpers (any thread)
def _predict(predictor: Any, jobs: list[tuple[int, str | None, Any]]) -> dict[int, Any]:
    """Key -> Prediction, or a one-line message for an image that failed."""
    results: dict[int, Any] = {}
    files = [(key, path) for key, path, _ in jobs if path]
    if files:
        for (key, path), result in zip(files, predictor.predict_files([p for _, p in files])):
            if not hasattr(result, "top") and result.message.endswith("not an image file"):
                result = _predict_with_qt(predictor, path) or _unreadable(path, result.message)  # SVG, ...
            results[key] = result if hasattr(result, "top") else getattr(result, "message", result)
    for key, path, image in jobs:
        if path is None:
            try:
                pil = _qimage_to_pil(image) if isinstance(image, QImage) else image  # pasted, not yet read
                results[key] = predictor.predict([pil], sources=["pasted image"])[0]
            except ValueError as error:  # ImageError: the image does not suit the model
                results[key] = str(error)
    return results


def _predict_with_qt(predictor: Any, path: str) -> Any:
    """Classify a file that PIL cannot read but Qt can (the preview shows it, so should the answer);
    None if Qt cannot read it either."""
    reader = _qt_reader(path)
    if reader is None:
        return None
    image = reader.read()
    if image.isNull():
        return None
    try:
        return predictor.predict([_qimage_to_pil(image)], sources=[Path(path).name])[0]
    except ValueError as error:  # ImageError: the image does not suit the model
        return str(error)


def _describe_model(predictor: Any) -> dict:
    config = predictor.model_config
    caps = list(predictor.model.caps)
    label = _checkpoint_label(Path(str(predictor.checkpoint.path)))
    kind = "ResNet baseline" if config.architecture == "resnet" else "IamNN"
    parts = [
        label,  # plain text: an elided label cannot shorten markup
        f"{kind} · {'units' if config.architecture == 'resnet' else 'caps'} {'·'.join(str(c) for c in caps)}"
        + (f" (halting at most {'·'.join(str(c) for c in config.halting_caps)})" if config.halting_caps else "")
        + f" · width {config.width}",
        f"{len(predictor.classes)} classes · {config.image_size}×{config.image_size} "
        f"{'grey' if config.in_channels == 1 else 'RGB'}",
    ]
    return {
        "text": " — ".join(parts),
        "caps": caps,
        "mode": config.mode,
        "threshold": config.halting_threshold if config.architecture == "iamnn" else None,
        "halts": config.architecture == "iamnn",
        "halting_caps": list(config.adaptive_caps) if config.architecture == "iamnn" else caps,
        "tradeoff": predictor.halting_tradeoff,
        "uncalibrated": predictor.uncalibrated,
        "average_word": split_word(predictor.evaluated_split),  # mean_test_macs's images: "test" or "held-out"
    }


def _fixed_against_adaptive(tradeoff: dict) -> str:
    """How the advised fixed setting (the tradeoff's ``alternative``) compares with the adaptive halting, in
    plain words and figures: "is both cheaper and more accurate: 93.00 % top-1 at 2.82 M MACs per image, against
    88.40 % at 4.08 M MACs with adaptive halting". Figures that read the same are the same cost / as accurate."""
    alternative = tradeoff["alternative"]
    fixed = (formatting.macs(alternative["mean_macs"]), f"{100 * alternative['top1']:.2f} %")
    adaptive = (formatting.macs(tradeoff["mean_macs"]), f"{100 * tradeoff['top1']:.2f} %")
    if fixed[1] == adaptive[1]:
        accuracy = "as accurate"
    else:  # the alternative is at least as accurate as adaptive, less one image in 2,000 (tradeoff.TIE)
        accuracy = "more accurate" if alternative["top1"] > tradeoff["top1"] else "about as accurate"
    if fixed[0] == adaptive[0]:
        relation = ("costs the same and is more accurate" if accuracy == "more accurate"
                    else f"is {accuracy} at the same cost")
    elif alternative["mean_macs"] < tradeoff["mean_macs"]:
        relation = "is both cheaper and more accurate" if accuracy == "more accurate" else f"is {accuracy} and cheaper"
    else:  # the evaluation found no fixed setting as accurate for less: the one that is costs more
        relation = f"is {accuracy} but costs {alternative['mean_macs'] / tradeoff['mean_macs'] - 1:.0%} more"
    # the standard error is of this setting against adaptive only where it costs no more (else: at equal MACs)
    noise = tradeoff.get("standard_error") if alternative["mean_macs"] <= tradeoff["mean_macs"] else None
    beyond = ("" if noise is None or accuracy != "more accurate" else
              f" ({'within' if tradeoff.get('within_noise') else 'beyond'} two paired standard errors, "
              f"±{200 * noise:.2f} pt)")  # the rule ``within_noise`` applies, as the Study verdict says it
    return (f"{relation}: {fixed[1]} top-1 at {fixed[0]} per image, against {adaptive[1]} at {adaptive[0]} "
            f"with adaptive halting{beyond}")


def _unbroken(text: str) -> str:
    """``text`` with no-break spaces: a wrapping label keeps it on one line."""
    return text.replace(" ", "&nbsp;")


def _checkpoint_label(path: Path) -> str:
    """"<run>/best.pt" for <run>/checkpoints/best.pt, "<folder>/name.pt" elsewhere."""
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return f"{folder.name}/{path.name}" if folder.name else path.name


def _sentence(message: str) -> str:
    message = message.strip()
    if not message:
        return "Could not classify this image."
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def _pil_format_of(path: str) -> str | None:
    """The format of ``path``'s content as Qt recognises it ("png"), where PIL reads that format too;
    None for content Qt does not recognise or that only Qt reads (SVG). Looks at the first bytes only."""
    from PIL import Image

    reader = QImageReader(path)
    reader.setDecideFormatFromContent(True)
    name = bytes(reader.format().data()).decode("ascii", "replace").lower()
    return name if name and f".{name}" in Image.registered_extensions() else None


def _qt_reader(path: str) -> QImageReader | None:
    """A reader for a file PIL could not identify, or None where its content is a format PIL reads: PIL
    refused it, so it is damaged (a PNG cut after its header), and Qt's decoder would fail too, printing
    on the terminal first ("libpng error: Read Error" goes to stderr past any Qt message handler)."""
    if _pil_format_of(path) is not None:
        return None
    reader = QImageReader(path)
    reader.setDecideFormatFromContent(True)
    reader.setAutoTransform(True)
    return reader


def _unreadable(path: str, message: str) -> str:
    """``message`` for a file no reader could read, or what it is where its content says so:
    "cannot read x.png: a damaged or incomplete PNG file" rather than "not an image file"."""
    kind = _pil_format_of(path)
    return f"cannot read {Path(path).name}: a damaged or incomplete {kind.upper()} file" if kind else message


def _read_preview(path: str) -> QImage | None:
    """A display-sized QImage of ``path`` (QImage is safe off the UI thread), or None if unreadable.

    PIL reads first: it is what classifies the image, and a damaged file is then one exception
    instead of Qt's decoders printing on the terminal ("libpng error: Read Error"). Qt reads only
    the formats PIL does not know (``_qt_reader``).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not os.path.isfile(path):  # a named pipe would block this thread for ever; a missing file has no preview
        return None
    try:
        # a big photo (PIL warns past 89 Mpx, refuses past twice that) is shrunk anyway: no warning on stderr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as pil:
                pil.draft("RGB", (PREVIEW_SIZE, PREVIEW_SIZE))  # JPEG: decode at a reduced scale
                ImageOps.exif_transpose(pil, in_place=True)  # in place: no full-size copy of an upright image
                return _pil_to_qimage(_thumbnail(pil))
    except UnidentifiedImageError:
        pass
    except Exception:  # PIL knows the format and the file is damaged, too large or unreadable
        return None
    reader = _qt_reader(path)
    if reader is None:
        return None
    size = reader.size()
    if size.isValid() and (size.width() > PREVIEW_SIZE or size.height() > PREVIEW_SIZE):
        reader.setScaledSize(size.scaled(PREVIEW_SIZE, PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return None if image.isNull() else image


def _in_memory(entry: _Entry) -> Any:
    """The entry's in-memory image: its PIL image, or the pasted QImage not yet read into one."""
    return entry.pil if entry.pil is not None else entry.qimage


def _memory_preview(image: Any) -> QImage | None:
    """A display-sized QImage of a pasted QImage or a PIL image: a card keeps this, never the whole image."""
    if isinstance(image, QImage):
        if image.width() <= PREVIEW_SIZE and image.height() <= PREVIEW_SIZE:
            return image.copy()
        return image.scaled(PREVIEW_SIZE, PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
                            Qt.TransformationMode.SmoothTransformation)
    try:
        return _pil_to_qimage(_thumbnail(image.copy()))  # a copy: the caller's image stays whole
    except Exception:  # a PIL image of a damaged file: no preview, and its card says why
        return None


def _thumbnail(pil: Any) -> Any:
    """``pil`` shrunk to the preview's size, 16-bit and float greyscale then scaled to 8 bits as the model reads
    the whole image (its peak sets the scale). Shrunk first: the 8-bit conversion of a ~200 MP scan, in float64,
    took GBs."""
    from PIL import Image

    peak = peak_value(pil)
    # PIL's reduce, the quick first step of a thumbnail, takes no 16-bit image: resampled in one step
    pil.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.BICUBIC,
                  reducing_gap=None if pil.mode in SIXTEEN_BIT_MODES else 2.0)
    return to_8_bit(pil, peak=peak)


def _pil_to_qimage(pil: Any) -> QImage | None:
    """``pil`` for display; 16-bit and float greyscale scaled to 8 bits as the model reads them (PIL's
    convert clips them: a 16-bit scan showed white)."""
    try:
        rgba = to_8_bit(pil).convert("RGBA")
        data = rgba.tobytes("raw", "RGBA")
        return QImage(data, rgba.width, rgba.height, 4 * rgba.width, QImage.Format.Format_RGBA8888).copy()
    except Exception:
        return None


def _qimage_to_pil(image: QImage) -> Any:
    from PIL import Image
    import io

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    pil = Image.open(io.BytesIO(bytes(buffer.data())))
    pil.load()
    return pil
