"""The whole run form: dataset, model and training cards editing one ``RunConfig``.

Values travel one way: widgets -> a plain dict shaped like ``RunConfig.to_dict()`` -> the
config's own ``validate()`` (every error shown under its field) -> ``RunConfig`` for the trainer.
Until the engine has loaded (its registries fill the choices), the form says it is loading.
Two background jobs keep the side panels honest: the dataset preview (which also tells the model
its input shape) and the model's parameter count and MAC range; both wait for a short pause in
editing and drop stale results. The activations a training image keeps (what decides the largest
batch that fits in memory) are sized once per model shape by the form's sizing child process
(``memory_sizing``): the sizing runs a forward with autograd, which froze the window in the UI thread and
crashed the process in a worker thread. Start does not wait for it (the trainer checks the memory itself
before training): a batch that does not fit is marked in red when the size comes, as any other error.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QScrollArea, QStackedWidget, QVBoxLayout, QWidget

from ..style import SPACING, set_role
from ..worker import BackgroundTasks
from .dataset_panel import DatasetPanel, DatasetPreview, PreviewData, load_preview, provider_entries
from .fields import ChoiceBox, FieldRow, FormCard
from . import memory_sizing
from .memory_sizing import MemorySizer, built_in_model, load_cached_sizes, save_cached_sizes
from .model_panel import ModelFigures, ModelPanel, model_figures
from .training_panel import TrainingPanel
from ..widgets.formatting import rough_duration
from .validation import collect_errors

PREVIEW_DEBOUNCE_MS = 300
FIGURES_DEBOUNCE_MS = 400
#: A CPU run estimated longer than this gets the estimate in the warning colour, with what shortens it.
LONG_CPU_RUN_S = 30 * 60


class RunForm(QWidget):
    """Edits a run; ``is_valid`` says whether Start may be pressed."""

    validity_changed = Signal(bool)
    revalidated = Signal()  # after every check: the messages may have changed even if validity did not
    values_changed = Signal()
    preview_loaded = Signal()
    figures_updated = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dataset = DatasetPanel()
        self.model = ModelPanel()
        self.training = TrainingPanel()
        self.preview = DatasetPreview()  # shown by the training view, next to the form

        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(SPACING["page"], SPACING["page"], SPACING["page"] - 4, SPACING["page"])
        column.setSpacing(SPACING["section"])
        for card in (self.dataset, self.model, self.training):
            column.addWidget(card)
        column.addStretch(1)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        self.loading = QLabel("Loading the engine…")
        self.loading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        set_role(self.loading, "muted")
        self.pages = QStackedWidget()
        self.pages.addWidget(self.loading)
        self.pages.addWidget(scroll)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pages)

        self.engine_ready = False
        self._cuda_available = False
        self.errors: dict[str, str] = {}
        self.dataset_error: str | None = None
        self.preview_data: PreviewData | None = None
        self.input_shape_known = False  # the model's input size and classes are the dataset's
        self._requested_preview: tuple | None = None  # what the newest preview job decodes, and the one shown
        self._shown_preview: tuple | None = None
        self.figures: ModelFigures | None = None
        # estimate.training_memory by training_memory_key, sized by the form's child process (0.5-1 s a shape
        # once it has imported torch), once per model shape; those of the engine's own blocks are kept on disk
        self.training_memories: dict[str, Any] = {}
        # the child could not size them (or timed out): asked once more when shown again later (a busy machine
        # may have been all that was wrong), then no more
        self.unsized_shapes: set[str] = set()
        self._retried_shapes: set[str] = set()
        self._shape_shown: str | None = None  # the shape last sized or looked up: "shown again" means after another
        self._sizer = MemorySizer(self)
        self._sizer.sized.connect(self._on_memory_sized)
        self._stored_memories: dict[str, Any] = {}  # those of training_memories on disk, oldest first
        self._valid = False
        self._tasks = BackgroundTasks(self, threads=2)
        self._preview_timer = _single_shot(self, PREVIEW_DEBOUNCE_MS, self._load_preview)
        self._figures_timer = _single_shot(self, FIGURES_DEBOUNCE_MS, self._compute_figures)

        self.dataset.changed.connect(self._on_dataset_changed)
        self.dataset.availability_checked.connect(self._on_availability_checked)
        self.dataset.provider.choice_changed.connect(self._on_provider_changed)
        self.model.changed.connect(self._on_model_changed)
        self.training.changed.connect(self._on_training_changed)
        self.training.start_from_checked.connect(self.revalidate)

    # ------------------------------------------------------------------- engine
    def set_engine_ready(self, device_name: str, cuda_available: bool, initial: dict[str, Any] | None) -> None:
        """Fill the choices from the engine's registries, then show ``initial`` over the defaults."""
        from iamnn_studio.engine.config import DEPTH_ITERATIONS

        self.engine_ready = True
        self._cuda_available = cuda_available
        self.dataset.set_providers(provider_entries())
        self.model.set_depth_caps(DEPTH_ITERATIONS)
        self.training.set_device_names(device_name, cuda_available)
        self._stored_memories = load_cached_sizes()
        self.training_memories.update(self._stored_memories)  # before the first revalidate: known at once
        if memory_sizing.START_WITH_ENGINE:
            self._sizer.start()  # its torch import overlaps the app's start-up: the first new shape is quick
        self.set_values(merge_onto_defaults(initial or {}))
        self.pages.setCurrentIndex(1)
        self._figures_timer.stop()
        self._compute_figures()  # at once: the dataset's declared shape is enough, no need to wait for its preview

    # ------------------------------------------------------------------- width
    def preferred_width(self) -> int:
        """The form's width at which every choice that widens with it (one in a card's own column, not
        beside other inputs) shows whole, judged from the form's width and layout now; at least its
        minimum width. Its choice boxes say when it changes (``choice_boxes``, ``currentTextChanged``)."""
        shortfall = max((box.whole_text_width() - box.width() for box in self.choice_boxes()
                         if box.isVisible() and isinstance(box.parentWidget(), FormCard)), default=0)
        return max(self.minimumWidth(), self.width() + shortfall)

    def choice_boxes(self) -> list[ChoiceBox]:
        return self.findChildren(ChoiceBox)

    # ------------------------------------------------------------------- values
    def values(self) -> dict[str, Any]:
        """The form as a ``RunConfig.to_dict()``-shaped dict (possibly invalid)."""
        run: dict[str, Any] = copy.deepcopy(self._loaded)
        run["data"] = dict(run.get("data", {}))
        run["model"] = dict(run.get("model", {}))
        self.dataset.values_into(run["data"])
        self.model.values_into(run["model"])
        self.training.values_into(run)
        return run

    def set_values(self, values: dict[str, Any]) -> None:
        """Show ``values`` (a RunConfig dict, possibly invalid: its errors are shown)."""
        self._loaded = copy.deepcopy(values)
        self.dataset.load_values(values.get("data", {}))
        self.model.load_values(values.get("model", {}))
        self.training.load_values(values)
        if self.engine_ready:
            self._update_input_shape()
            self.revalidate()
            self._preview_timer.start()
            self._figures_timer.start()

    _loaded: dict[str, Any] = {}

    def config(self) -> Any:
        """The ``RunConfig`` to train; ``ValueError("field: ...")`` if the form is not valid."""
        from iamnn_studio.engine.config import RunConfig

        return RunConfig.from_dict(self.values()).validate()

    def set_config(self, config: Any) -> None:
        self.set_values(config.to_dict())

    def load_file(self, path: str | Path) -> str | None:
        """Load a run config TOML (the CLI's format); returns an error sentence, or None."""
        from iamnn_studio.engine.config import RunConfig

        try:
            config = RunConfig.load(path)
        except (ValueError, TypeError) as error:
            return f"{Path(path).name}: {error}"
        self.set_config(config)
        return None

    def save_file(self, path: str | Path) -> str | None:
        """Save the form as a run config TOML; returns an error sentence, or None."""
        try:
            config = self.config()
        except (ValueError, TypeError) as error:
            return f"The form is not valid yet: {error}"
        try:  # absolute folders, as the CLI's --save-config and a run's config.toml: the same from anywhere
            config.make_paths_absolute().save(path)
        except OSError as error:
            return f"Cannot write {path}: {error.strerror or error}"
        return None

    # --------------------------------------------------------------- validation
    @property
    def is_valid(self) -> bool:
        return self._valid

    def revalidate(self) -> None:
        if not self.engine_ready:
            return
        values = self.values()
        self.errors = collect_errors(values)
        self._figures_problem = None
        memory = self._memory_problem(values)
        if memory and not any(key.startswith("model.") for key in self.errors) and memory[0] not in self.errors:
            self.errors[memory[0]] = memory[1]  # valid, but too big for this computer's memory
            self._figures_problem = memory[1] if memory[0] == "model.width" else None
        start_problem = self.training.start_from_problem(values, self.input_shape_known)  # read in the background
        if start_problem and "init_from" not in self.errors:
            self.errors["init_from"] = start_problem
        unknown = self.dataset.unknown_dataset()
        if unknown and "data.name" not in self.errors:
            self.errors["data.name"] = unknown  # no loaded provider has that name: nothing to preview or train
        calibration_problem = self._calibration_problem(values)
        self._calibration_error = None
        if calibration_problem and "data.val_fraction" not in self.errors:
            self.errors["data.val_fraction"] = calibration_problem  # the run would fail after its last epoch
            self._calibration_error = calibration_problem
        rows: dict[int, tuple[FieldRow, list[str]]] = {}
        for panel in (self.dataset, self.model, self.training):
            for key, row in panel.rows.items():
                entry = rows.setdefault(id(row), (row, []))
                if key in self.errors:
                    entry[1].append(self.errors[key])
        for row, messages in rows.values():
            row.show_error(messages[0] if messages else None)
        known = {key for panel in (self.dataset, self.model, self.training) for key in panel.rows}
        stray = [f"{key}: {message}" for key, message in self.errors.items() if key not in known]
        if stray:  # a field the form does not show (edited in a TOML file): say it under the dataset card
            self.dataset.show_status("error", "; ".join(stray))
        # Start waits for the verdict on the dataset and folder shown (typed, loaded from a config, or back with
        # their dataset): the dataset_error until then may be another folder's, or none at all. Not for the
        # model's training memory: the trainer checks it before training, and says so when the batch does not fit.
        self._set_valid(not self.errors and self.dataset_error is None and not self.dataset.checking()
                        and not self.training.checking_start_from())
        self.revalidated.emit()

    def reveal_first_error(self) -> bool:
        """Scroll the topmost field marked in red into view, its message too, and give it the keyboard focus;
        False where no shown field is marked. QA: in a 960 x 640 window "Fix the fields marked in red first"
        pointed at a field scrolled out of sight."""
        row = next((row for panel in (self.dataset, self.model, self.training) for row in panel.rows.values()
                    if row.error and row.widget.isVisibleTo(self)), None)
        if row is None:
            return False
        target = next((widget for widget in row.inputs if widget.isVisibleTo(self) and widget.isEnabled()),
                      row.widget)
        self.scroll.ensureWidgetVisible(row.error_label)  # first the message under it, then the input above it
        self.scroll.ensureWidgetVisible(target)
        target.setFocus(Qt.FocusReason.OtherFocusReason)
        return True

    def sizing_memory(self) -> bool:
        """Whether the training memory of the model shown is still being sized (its batch not yet checked
        against it). Not while its input shape is unknown: the shape to size comes with the dataset's preview."""
        key = _training_memory_key(self.values().get("model", {}))
        return (self.engine_ready and self.input_shape_known and key is not None
                and key not in self.training_memories and key not in self.unsized_shapes)

    def _memory_problem(self, values: dict[str, Any]) -> tuple[str, str] | None:
        """(field, message) when training the sized model with the form's batch would not fit in memory:
        the trainer's check, with this shape's sized activations (the parameters alone until sized)."""
        from iamnn_studio.engine.estimate import memory_problem

        if self.figures is None:
            return None
        try:
            batch = max(int(values.get("batch_size") or 1), 1)
        except (TypeError, ValueError):
            batch = 1
        key = _training_memory_key(values.get("model", {}))
        memory = self.training_memories.get(key) or self.figures.memory
        shown = self.preview_data is not None and self._shown_preview == _shape_key(values.get("data", {}))
        images = self._split_sizes(values)[0] if shown else None  # as the trainer: no batch beyond the set
        problem = memory_problem(memory, self.figures.available, batch_size=batch, training_images=images)
        if not problem:
            return None
        field, _, message = problem.partition(": ")
        return ("model.width" if field == "width" else field), message

    def _calibration_problem(self, values: dict[str, Any]) -> str | None:
        """Too few held-out images in the shown dataset to calibrate the halting (the trainer's check)."""
        from iamnn_studio.engine.calibration import calibration_images_problem

        model = values.get("model", {})
        if (self.preview_data is None or self._shown_preview != _shape_key(values.get("data", {}))
                or model.get("architecture") != "iamnn" or model.get("halting") != "calibrated"
                or not values.get("calibrate_halting", True)):
            return None
        shown = self.preview_data
        return calibration_images_problem(*self._split_sizes(values), val_carved=shown.carved,
                                          class_sizes=shown.pool_sizes(), val_split=shown.val_split)

    def _split_sizes(self, values: dict[str, Any]) -> tuple[int, int]:
        """(train, validation) images of the shown dataset at the form's validation split: the split may
        have changed since the preview was read (it is read again, but the form must not wait for it)."""
        assert self.preview_data is not None
        fraction = values.get("data", {}).get("val_fraction")
        if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            fraction = self.preview_data.val_fraction
        return self.preview_data.split_sizes(float(fraction))

    def _set_valid(self, valid: bool) -> None:
        if valid != self._valid:
            self._valid = valid
            self.validity_changed.emit(valid)

    # ----------------------------------------------------------------- changes
    def _on_provider_changed(self) -> None:
        """A new dataset brings its own default augmentation (digits must not be mirrored)."""
        if not self.engine_ready:
            return
        from iamnn_studio.engine.data import default_augment

        try:
            self.training.augment.set_value(default_augment(self.dataset.provider.value()))
        except ValueError:
            pass

    def _on_dataset_changed(self) -> None:
        if self.engine_ready and self._update_input_shape():
            self._figures_timer.start()
        self._changed()
        self._preview_timer.start()

    def _update_input_shape(self) -> bool:
        """Give the model the chosen dataset's declared input shape (no decoding); True if it changed.

        Image folders declare none: their model is sized once the preview has read the images.
        """
        from iamnn_studio.engine.config import DataConfig
        from iamnn_studio.engine.data import declared_input_shape

        data = self.values()["data"]
        try:
            shape = declared_input_shape(DataConfig.from_dict(data))
        except Exception:  # a half-typed form or a broken plugin: the preview says what is wrong
            shape = None
        known = shape is not None or (self.preview_data is not None and self._shown_preview == _shape_key(data))
        changed = known != self.input_shape_known or (shape is not None and tuple(shape) != self.model.input_shape())
        self.input_shape_known = known
        if shape is not None:
            self.model.set_input_shape(shape.channels, shape.size, shape.classes)
        return changed

    def _on_model_changed(self) -> None:
        self._changed()
        self._figures_timer.start()

    def _on_training_changed(self) -> None:
        self._changed()
        self._update_estimate()

    def _update_estimate(self) -> None:
        """"About 15 min of training on this CPU" from the figures, the images and the epochs."""
        from iamnn_studio.engine.estimate import estimate_training_seconds

        figures, preview, values = self.figures, self.preview_data, self.values()
        device = str(values.get("device"))
        on_gpu = device == "cuda" or device.startswith("cuda:") or (device == "auto" and self._cuda_available)
        invalid_inputs = any(key in self.errors for key in ("epochs", "batch_size", "max_steps", "data.val_fraction"))
        if figures is None or preview is None or not figures.cpu_flops or on_gpu or invalid_inputs:
            self.training.show_estimate("")
            return
        images = self._split_sizes(values)[0] * max(int(values.get("epochs") or 0), 0)
        if values.get("max_steps") is not None:
            images = min(images, int(values["max_steps"]) * max(int(values.get("batch_size") or 1), 1))
        seconds = estimate_training_seconds(figures.train_macs, images, figures.cpu_flops)
        text = f"{rough_duration(seconds)} of training on this CPU"
        long = seconds > LONG_CPU_RUN_S
        if long:
            text += " (estimate): fewer epochs, a step limit, a smaller width or a GPU would shorten it"
        self.training.show_estimate(text, warn=long)

    def _changed(self) -> None:
        if self.engine_ready:
            self.revalidate()
            self.values_changed.emit()

    # --------------------------------------------------------------- background
    @Slot()
    def _load_preview(self) -> None:
        data = self.values()["data"]
        unknown = self.dataset.unknown_dataset()
        if unknown:  # the previous dataset's samples must not stay as if they were this one's
            self._tasks.cancel("preview")  # nor come in late: a preview still decoding is the previous dataset's
            self.preview_data = None
            self.preview.show_message(f"Nothing to preview: {unknown.partition(' (')[0]}.", clear=True)
            return
        if any(key.startswith("data.") and message != self._calibration_error for key, message in self.errors.items()):
            return  # the form already says what is wrong (too few held-out images: the new split's preview tells)
        if self.dataset.checking():  # its folder's verdict comes first (_on_availability_checked)
            if self._shown_preview != _shape_key(data) or self._requested_preview != _shape_key(data):
                # another dataset's or folder's samples, shown or still decoding, must not stand for this one's
                self._tasks.cancel("preview")
                self._requested_preview = None
                self.preview_data = None
                self.preview.show_message(f"Checking {self.dataset.provider_label()}…", clear=True)
            return
        if not self.dataset.is_available():
            self._tasks.cancel("preview")  # a preview still decoding is another dataset's: it must not clear this
            self.dataset_error = self.dataset.status.text() or "the dataset is not on this computer"
            self.preview_data = None
            label = self.dataset.provider_label()
            typed_folder = bool(data.get("root"))  # then only that folder was looked in: say what is wrong there
            self.preview.show_message(
                f"{label} is not on this computer: tick “Allow download” or choose its folder."
                if self.dataset.downloadable() and not typed_folder else f"{label}: {self.dataset_error}", clear=True)
            self.revalidate()
            return
        # The verdict is good: an earlier folder's reason ("folder not found: …") no longer holds (the header
        # and Start's tooltip kept it until the preview had been read); the preview's own error may follow.
        stale, self.dataset_error = self.dataset_error is not None, None
        self.preview.show_message(f"Loading {self.dataset.provider_label()}…")
        self._requested_preview = _shape_key(data)
        seed = self.training.seed.value()
        seed = seed if isinstance(seed, int) and 0 <= seed < 2**53 else 0  # a typo's error is under the seed row
        self._tasks.submit("preview", lambda: load_preview(data, seed), self._on_preview, self._on_preview_error)
        if stale:
            self.revalidate()

    def _on_availability_checked(self, changed: bool) -> None:
        """The dataset's folder has its verdict: read it (or say why not) unless that is what is shown."""
        if not changed:
            return
        shown = (self.preview_data is not None and self.dataset_error is None
                 and self._shown_preview == _shape_key(self.values()["data"]))
        if shown and self.dataset.is_available():  # e.g. the check after a download: the preview is this one
            self.revalidate()
            return
        self._preview_timer.stop()
        self._load_preview()
        self.revalidate()

    def _on_preview(self, data: PreviewData) -> None:
        self.preview_data = data
        self.dataset_error = None
        self.preview.set_data(data)
        self.model.set_input_shape(data.in_channels, data.image_size, data.num_classes)
        self.input_shape_known = True
        self._shown_preview = self._requested_preview
        self.dataset.show_read_result(None)
        self.dataset._refresh_availability()
        self.revalidate()
        self._compute_figures()
        self._update_estimate()
        self.preview_loaded.emit()

    def _on_preview_error(self, message: str) -> None:
        self.preview_data = None
        self._update_estimate()
        self.dataset_error = message
        self.dataset.show_read_result(message)
        self.preview.show_message(message, error=True)
        self.revalidate()
        self.preview_loaded.emit()

    @Slot()
    def _compute_figures(self) -> None:
        if not self.engine_ready:
            return
        model = self.values()["model"]
        if any(key.startswith("model.") and message != self._figures_problem for key, message in self.errors.items()):
            self.figures = None  # the previous model's: no estimate may be drawn from them
            self.model.show_figures(None, "Fix the model settings to see its size.")
            self._update_estimate()
            return
        if not self.input_shape_known:
            self.model.show_figures(None, "Parameters and MACs appear once the images have been read.")
            return
        self._tasks.submit("figures", lambda: model_figures(model), self._on_figures, self._on_figures_error)
        self._size_training_memory(model)  # here, after the pause in editing that the figures wait for

    def _size_training_memory(self, model: dict[str, Any]) -> None:
        """Size the activations of this model shape's training in a child process (see the module's note); the
        answer comes to ``_on_memory_sized``. Batch edits then only rescale the per-image bytes."""
        key = _training_memory_key(model)
        shown_again, self._shape_shown = key != self._shape_shown, key
        if key is None or key in self.training_memories:
            return
        if key in self.unsized_shapes:
            if not shown_again or key in self._retried_shapes:
                return  # still on show since it failed (no loop), or failed twice
            self.unsized_shapes.discard(key)
            self._retried_shapes.add(key)
        self._sizer.size(key, model)

    def _on_memory_sized(self, key: str, model: dict[str, Any], memory: Any) -> None:
        """A shape's size (None: its child failed, e.g. a plugin's block that does not build, whose figures say
        why; the trainer's own check remains), then the check it was waited for."""
        if memory is None:
            self.unsized_shapes.add(key)
        else:
            self.training_memories[key] = memory
            if built_in_model(model):
                self._stored_memories.pop(key, None)  # the newest last: the file keeps the newest shapes
                self._stored_memories[key] = memory
                save_cached_sizes(self._stored_memories)
        self.revalidate()

    _figures_problem: str | None = None
    _calibration_error: str | None = None  # the error under the split that comes from the preview's counts

    def _on_figures(self, figures: ModelFigures) -> None:
        self.figures = figures
        self.model.show_figures(figures)
        self.revalidate()  # the batch may not fit this model
        self._update_estimate()
        self.figures_updated.emit()

    def _on_figures_error(self, message: str) -> None:
        self.figures = None
        self.revalidate()
        self.model.show_figures(None, f"Cannot build this model: {message}")
        self._update_estimate()
        self.figures_updated.emit()

    def wait_for_background(self, timeout_ms: int = 30_000) -> bool:
        return all(wait(timeout_ms) for wait in (self.dataset.wait_for_checks, self._tasks.wait, self._sizer.wait))

    def shutdown(self) -> None:
        """The window closes: the sizing child ends now (a deleted form ends it too, at the latest at exit)."""
        self._sizer.close()


def merge_onto_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Stored form values over today's defaults; settings this version does not know are dropped."""
    from iamnn_studio.engine.config import RunConfig

    merged = RunConfig().to_dict()
    for key, value in values.items():
        if key in ("data", "model") and isinstance(value, dict):
            merged[key].update({k: v for k, v in value.items() if k in merged[key]})
        elif key in merged and key not in ("data", "model"):
            merged[key] = value
    return merged


def _shape_key(data: dict[str, Any]) -> tuple:
    """The data settings that decide a dataset's input shape."""
    return data.get("name"), data.get("root"), data.get("image_size"), repr(sorted((data.get("options") or {}).items()))


def _training_memory_key(model: dict[str, Any]) -> str | None:
    """The model shape's key in ``RunForm.training_memories``; None while the model settings are invalid."""
    from iamnn_studio.engine.config import ModelConfig
    from iamnn_studio.engine.estimate import training_memory_key

    try:
        return training_memory_key(ModelConfig.from_dict(model).validate())
    except (ValueError, TypeError):
        return None


def _single_shot(parent: QWidget, interval_ms: int, slot) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(interval_ms)
    timer.timeout.connect(slot)
    return timer
