"""The training card: run name, epochs, batch, optimiser, schedule, regularisation, seed, device."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QFileDialog, QLabel, QLineEdit, QPushButton, QWidget

from ..style import set_role
from ..worker import BackgroundTasks
from .fields import ChoiceBox, FloatEdit, FormCard, IntEdit, LoadedValueSpinBox, hbox_widget

OPTIMIZERS = (("SGD with momentum", "sgd"), ("AdamW", "adamw"))
SCHEDULES = (("One-cycle", "one-cycle"), ("Cosine", "cosine"), ("Step", "step"), ("Constant", "constant"))
#: Every ``data.augment`` mode, the usual ones first ("random erasing": Zhong et al., see data/augment.py).
AUGMENTS = (("Crop and flip", "crop-flip"), ("Crop, flip and random erasing", "crop-flip-erase"),
            ("Random crop", "crop"), ("Crop and random erasing", "crop-erase"), ("Horizontal flip", "flip"),
            ("Flip and random erasing", "flip-erase"), ("Random erasing", "erase"), ("None", "none"))


#: Verdicts on "Start from" kept (one per checkpoint file and model): the oldest go past this many.
KEPT_START_VERDICTS = 32


def start_weights_problem(init_from: str, model_values: dict[str, Any] | None) -> str | None:
    """Why a run cannot start from the weights ``init_from`` names: not a checkpoint, or (given the run's
    ``model_values``) another network than the run builds, by the trainer's own test; None where it can.
    Reads the checkpoint: call it off the UI thread."""
    import torch

    from iamnn_studio.engine.checkpoint import CheckpointError, load_checkpoint, run_checkpoint
    from iamnn_studio.engine.config import ModelConfig
    from iamnn_studio.engine.model import build_model
    from iamnn_studio.engine.trainer import weights_fit, weights_mismatch

    try:
        path = run_checkpoint(init_from)
        source = load_checkpoint(path)
    except (CheckpointError, ValueError, OSError) as error:
        return str(error)
    if model_values is None:
        return None
    try:
        config = ModelConfig.from_dict(model_values).validate()
        with torch.device("meta"):  # the shapes, without the memory of real weights
            model = build_model(config)
    except (ValueError, TypeError):
        return None  # the model's own rows say what is wrong with it
    return None if weights_fit(model, config, source) else weights_mismatch(path, source, config)


class TrainingPanel(FormCard):
    """Edits the run-level fields of ``RunConfig`` (plus ``data.augment``)."""

    changed = Signal()
    start_from_checked = Signal()  # a verdict on "Start from" arrived: the form checks itself again

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Training", parent=parent)
        self.name = QLineEdit()
        self.name.setMaximumWidth(220)
        self.add_row("name", "Run name", self.name, tooltip="The run's folder name in the runs folder")

        self.epochs = LoadedValueSpinBox()
        self.epochs.setRange(0, 100_000)
        self.epochs.setMaximumWidth(90)
        self.add_row("epochs", "Epochs", self.epochs)
        self.limit_steps = QCheckBox("at most")
        self.max_steps = LoadedValueSpinBox()
        self.max_steps.setRange(1, 10_000_000)  # no limit is the unticked box
        self.max_steps.setSuffix(" steps")
        self.max_steps.setMaximumWidth(120)
        self.add_row(
            "max_steps", "Step limit", hbox_widget(self.limit_steps, self.max_steps), inputs=[self.max_steps],
            tooltip="Stop after this many optimiser steps (quick tries)",
        )
        self.estimate = QLabel()
        self.estimate.setWordWrap(True)
        self.add_row("estimate", "Time", self.estimate,
                     tooltip="A rough estimate from the model's MACs and this CPU's measured speed")
        self.show_estimate("")
        self.batch_size = LoadedValueSpinBox()
        self.batch_size.setRange(0, 65_536)
        self.batch_size.setMaximumWidth(90)
        self.add_row("batch_size", "Batch size", self.batch_size)

        self.optimizer = ChoiceBox(OPTIMIZERS)
        self.add_row("optimizer", "Optimiser", self.optimizer)
        self.lr = FloatEdit()
        self.add_row("lr", "Learning rate", self.lr)
        self.schedule = ChoiceBox(SCHEDULES)
        self.add_row("schedule", "Schedule", self.schedule)
        self.weight_decay = FloatEdit()
        self.add_row("weight_decay", "Weight decay", self.weight_decay)
        self.label_smoothing = FloatEdit()
        self.add_row("label_smoothing", "Label smoothing", self.label_smoothing)
        self.augment = ChoiceBox(AUGMENTS)
        self.add_row("data.augment", "Augmentation", self.augment)
        self.seed = IntEdit()  # the CLI's whole range, to 2**53 - 1: more than a QSpinBox holds
        self.add_row("seed", "Seed", self.seed)
        self.device = ChoiceBox([("Automatic", "auto"), ("CPU", "cpu"), ("CUDA GPU", "cuda")])
        self.add_row("device", "Device", self.device)
        self.init_from = QLineEdit()
        self.init_from.setPlaceholderText("New weights")
        self.init_from.setClearButtonEnabled(True)
        self.init_browse = QPushButton("Browse…")
        self.init_browse.clicked.connect(self._choose_init_checkpoint)
        self.add_row(
            "init_from", "Start from", hbox_widget(self.init_from, self.init_browse, first_fills=True),
            inputs=[self.init_from],
            tooltip="Start from a trained model's weights (a checkpoint, or a run folder for its best.pt): a new "
                    "run with its own schedule, e.g. to train a finished model longer. The model settings above "
                    "must build the same network.",
        )

        self._extra: dict[str, Any] = {}
        # "Start from" read off the UI thread (a checkpoint can take seconds to load): verdicts by
        # (checkpoint, its size and time, model), and the one awaited for the form as it is
        self._start_verdicts: dict[tuple, str | None] = {}
        self._start_awaited: tuple | None = None
        self._start_reading: tuple | None = None  # the newest key sent to be read (older answers are dropped)
        self._start_checks = BackgroundTasks(self)
        for spin in (self.epochs, self.max_steps, self.batch_size):
            spin.valueChanged.connect(self.changed)
        for edit in (self.name, self.lr, self.weight_decay, self.label_smoothing, self.seed, self.init_from):
            edit.textEdited.connect(self.changed)
        for combo in (self.optimizer, self.schedule, self.augment, self.device):
            combo.choice_changed.connect(self.changed)
        self.limit_steps.toggled.connect(self._on_limit_toggled)
        self._on_limit_toggled(False)

    _cuda_available = False

    def set_device_names(self, device_name: str, cuda_available: bool) -> None:
        """Name the detected hardware in the device choices."""
        self._cuda_available = cuda_available
        self.device.set_choices([
            (f"Automatic ({device_name})", "auto"),
            ("CPU", "cpu"),
            (f"CUDA GPU ({device_name})" if cuda_available else "CUDA GPU (none found)", "cuda"),
        ])

    def _show_device(self, value: Any) -> None:
        """Select the run's device; one GPU by its number ("cuda:1", which the engine takes as ``is_device``
        does) becomes a GPU choice of its own, not "cuda:1 · not a choice"."""
        if isinstance(value, str) and re.fullmatch(r"cuda:[0-9]+", value, re.ASCII) and self.device.findData(value) < 0:
            number = int(value.partition(":")[2])
            self.device.addItem(f"CUDA GPU {number}" + ("" if self._cuda_available else " (none found)"), value)
        self.device.show_value(value)

    def show_estimate(self, text: str, warn: bool = False) -> None:
        """The training-time estimate ("" hides the row's text)."""
        self.estimate.setText(text)
        set_role(self.estimate, "warning" if warn else "muted")

    def start_from_problem(self, values: dict[str, Any], model_known: bool) -> str | None:
        """What is wrong with "Start from" for the run ``values`` describe: a missing path at once; a file that is
        no checkpoint, or (once the model's input is ``model_known``) of another network, once it has been read
        in the background. None until then (``checking_start_from``)."""
        from iamnn_studio.engine.checkpoint import CheckpointError, run_checkpoint

        start = values.get("init_from")
        self._start_awaited = None
        if not start or not isinstance(start, str):
            return None  # nothing to read (the config names a value of the wrong type)
        if not Path(start).expanduser().exists():
            return f"no such checkpoint or run folder: {start}"
        try:
            stat = run_checkpoint(start).stat()
        except (CheckpointError, OSError) as error:
            return str(error)
        model = values.get("model") if model_known else None
        key = (start, stat.st_size, stat.st_mtime_ns, json.dumps(model, sort_keys=True, default=str))
        if key in self._start_verdicts:
            return self._start_verdicts[key]
        self._start_awaited = key
        if key != self._start_reading:  # each check of the form asks again: one read per key
            self._start_reading = key
            self._start_checks.submit("start_from", lambda: start_weights_problem(start, model),
                                      lambda problem: self._on_start_checked(key, problem),
                                      lambda message: self._on_start_checked(key, message))
        return None

    def checking_start_from(self) -> bool:
        """The checkpoint "Start from" names is being read: Start waits for the verdict."""
        return self._start_awaited is not None

    def _on_start_checked(self, key: tuple, problem: str | None) -> None:
        if len(self._start_verdicts) >= KEPT_START_VERDICTS:
            del self._start_verdicts[next(iter(self._start_verdicts))]
        self._start_verdicts[key] = problem
        self._start_reading = None
        if key == self._start_awaited:
            self._start_awaited = None
            self.start_from_checked.emit()

    def _choose_init_checkpoint(self) -> None:
        current = self.init_from.text().strip()
        start = str(Path(current).expanduser().parent) if current else ""
        path, _ = QFileDialog.getOpenFileName(self, "Start from the weights of", start,
                                              "Checkpoints (*.pt *.ckpt);;All files (*)")
        if path:
            self.init_from.setText(path)
            self.changed.emit()

    def _on_limit_toggled(self, checked: bool) -> None:
        self.max_steps.setEnabled(checked)
        self.changed.emit()

    # --------------------------------------------------------------------- values
    edited = ("name", "epochs", "max_steps", "batch_size", "optimizer", "lr", "schedule", "weight_decay", "init_from",
              "label_smoothing", "seed", "device")

    def load_values(self, run: dict[str, Any]) -> None:
        widgets = (self.name, self.epochs, self.limit_steps, self.max_steps, self.batch_size, self.optimizer,
                   self.lr, self.schedule, self.weight_decay, self.label_smoothing, self.augment, self.seed,
                   self.device, self.init_from)
        for widget in widgets:
            widget.blockSignals(True)
        self.name.setText(str(run.get("name", "")))
        self.epochs.show_value(run.get("epochs"))
        steps = run.get("max_steps")
        if steps == 0 and not isinstance(steps, bool):
            steps = None  # a file's "max_steps = 0" is no limit, as for the CLI (not "at most 0 steps")
        self.limit_steps.setChecked(steps is not None)
        self.max_steps.show_value(steps if steps is not None else 1000)
        self.batch_size.show_value(run.get("batch_size"))
        self.optimizer.show_value(run.get("optimizer"))
        self.lr.set_value(run.get("lr"))
        self.schedule.show_value(run.get("schedule"))
        self.weight_decay.set_value(run.get("weight_decay"))
        self.label_smoothing.set_value(run.get("label_smoothing"))
        self.augment.show_value(run.get("data", {}).get("augment"))
        self.seed.set_value(run.get("seed", 0))  # shown as it is: validate() explains one out of range
        self._show_device(run.get("device"))
        self.init_from.setText(str(run.get("init_from") or ""))
        self._extra = {k: v for k, v in run.items() if k not in self.edited and k not in ("data", "model")}
        for widget in widgets:
            widget.blockSignals(False)
        self.max_steps.setEnabled(self.limit_steps.isChecked())

    def values_into(self, run: dict[str, Any]) -> None:
        run.update(self._extra)
        run["name"] = self.name.text().strip()
        run["epochs"] = self.epochs.value_or_loaded()
        run["max_steps"] = self.max_steps.value_or_loaded() if self.limit_steps.isChecked() else None
        run["batch_size"] = self.batch_size.value_or_loaded()
        run["optimizer"] = self.optimizer.value()
        run["lr"] = self.lr.value()
        run["schedule"] = self.schedule.value()
        run["weight_decay"] = self.weight_decay.value()
        run["label_smoothing"] = self.label_smoothing.value()
        run["seed"] = self.seed.value()
        run["device"] = self.device.value()
        run["init_from"] = self.init_from.text().strip() or None
        run.setdefault("data", {})["augment"] = self.augment.value()
