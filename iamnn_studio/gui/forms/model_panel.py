"""The model card: architecture, depth (and the iteration caps it implies), width, halting.

Parameter count and MACs are the engine's numbers: the run form builds the model on the CPU in a
background job (``model_figures``) after a short pause in typing, and this card shows the result.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QLineEdit, QWidget

from ..style import set_role
from ..widgets import formatting
from .fields import ChoiceBox, FloatEdit, FormCard, LoadedValueSpinBox, hbox_widget, muted

DEPTHS = (18, 34, 50, 101, 152)
CUSTOM = "custom"
ARCHITECTURES = (("IamNN (shared, adaptive)", "iamnn"), ("ResNet baseline (unshared)", "resnet"))
MODES = (("Adaptive", "adaptive"), ("Fixed N per block", "fixed"), ("Max (every iteration)", "max"))
HALTING = (("Calibrated (recommended)", "calibrated"), ("Paper ACT", "act"))


@dataclass
class ModelFigures:
    """Size and compute of one model configuration, from the engine."""

    parameters: int
    macs_min: int
    macs_max: int
    input_text: str  # e.g. "1×28×28, 10 classes"
    train_macs: float = 0.0  # expected MACs of one training image under the run's recipe
    cpu_flops: float = 0.0  # this CPU's measured fp32 matmul FLOP/s (for the time estimate)
    memory: Any = None  # estimate.TrainingMemory of the parameters alone (the form sizes the activations)
    available: int = 0  # bytes free on this computer when it was sized

    @property
    def text(self) -> str:
        return f"{format_count(self.parameters)} parameters · {format_range(self.macs_min, self.macs_max)} MACs per image"


def model_figures(model_values: dict[str, Any]) -> ModelFigures:
    """Ask the model its size and MAC range (runs off the UI thread). It is built on PyTorch's "meta"
    device: shapes without memory, so sizing a model too big for this computer cannot exhaust it."""
    import torch

    from iamnn_studio.engine import ModelConfig, build_model
    from iamnn_studio.engine.estimate import (
        available_memory_bytes, cpu_matmul_flops_per_second, expected_training_macs, trainable_macs_range,
        TrainingMemory,
    )
    from iamnn_studio.engine.trainer import training_recipe

    config = ModelConfig.from_dict(model_values).validate()
    with torch.device("meta"):
        model = build_model(config)
    low, high = trainable_macs_range(model, calibrates=training_recipe(config) == "calibrated")
    parameters = sum(p.numel() for p in model.parameters())
    return ModelFigures(
        parameters=parameters,
        # parameters only: sizing the activations runs a forward with autograd, and building an autograd
        # graph in a background thread while the UI thread's garbage collector walks tensors crashed the
        # process (twice in the test suite). The form sizes them in a child process (RunForm.training_memories).
        memory=TrainingMemory(parameters, bytes_per_image=0, bytes_per_batch=0),
        available=available_memory_bytes("cpu"),
        macs_min=int(low),
        macs_max=int(high),
        input_text=f"{config.in_channels}×{config.image_size}×{config.image_size}, {config.num_classes} classes",
        train_macs=expected_training_macs(model, training_recipe(config)),
        cpu_flops=cpu_matmul_flops_per_second(),
    )


def format_count(n: float) -> str:
    from iamnn_studio.numbers import si

    return si(n) or str(n)


def format_range(low: float, high: float) -> str:
    """14.3e6, 58e6 -> "14.3–58 M"; one unit when both ends share it."""
    if low == high:
        return format_count(high)
    low_text, high_text = format_count(low), format_count(high)
    low_unit, high_unit = low_text.rpartition(" ")[2], high_text.rpartition(" ")[2]
    if " " in low_text and low_unit == high_unit:
        return f"{low_text.rpartition(' ')[0]}–{high_text}"
    return f"{low_text}–{high_text}"


def caps_text(caps: tuple[int, ...] | None) -> str:
    return formatting.caps(caps) if caps else ""


def parse_caps(text: str) -> list[int | str]:
    """'1, 2, 2, 1' -> [1, 2, 2, 1]; tokens that are not integers stay text for validate() to name."""
    tokens = [t for t in re.split(r"[\s,;·]+", text.strip()) if t]
    return [int(t) if re.fullmatch(r"[+-]?\d+", t) else t for t in tokens]


def caps_problem(caps: Any) -> str | None:
    """What is wrong with custom caps, in the words of the field they are typed in ("0, 1, x", not a Python
    tuple); None where they are four whole numbers of at least 1 (the config checks their upper bound)."""
    items = list(caps) if isinstance(caps, (list, tuple)) else [] if caps is None else [caps]
    if len(items) == 4 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in items):
        return None
    typed = ", ".join(map(str, items)) or "nothing"
    return f"needs four whole numbers of 1 or more, one per block (e.g. 1, 2, 2, 1), got {typed}"


class ModelPanel(FormCard):
    """Edits the ``ModelConfig`` fields a user chooses; the rest pass through as loaded."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent=parent)
        self.architecture = ChoiceBox(ARCHITECTURES)
        self.add_row(
            "model.architecture", "Architecture", self.architecture,
            tooltip="IamNN shares one block's weights across its iterations; the ResNet baseline does not",
        )

        self.depth = ChoiceBox([(f"ResNet-{d}", d) for d in DEPTHS] + [("Custom caps", CUSTOM)])
        self.custom_caps = QLineEdit()
        self.custom_caps.setPlaceholderText("e.g. 1, 2, 2, 1")
        self.custom_caps.setMaximumWidth(110)
        self.caps_label = muted("")
        depth_row = hbox_widget(self.depth, self.custom_caps)
        self.add_row(
            "model.depth", "Baseline depth", depth_row, inputs=[self.depth, self.custom_caps],
            tooltip="The ResNet whose units per block become IamNN's maximum iterations per block",
        )
        self.grid.addWidget(self.caps_label, self.grid.rowCount(), 1)
        self.rows["model.iterations"] = self.rows["model.depth"]  # custom caps report under the same row

        self.width = LoadedValueSpinBox()
        self.width.setRange(0, 99_999)  # 0 and too wide are accepted here so that the config can say why
        self.width.setMaximumWidth(90)
        self.add_row("model.width", "Width", self.width, tooltip="Channels of the first block (bottleneck width)")

        self.mode = ChoiceBox(MODES)
        self.fixed_n = LoadedValueSpinBox()
        self.fixed_n.setRange(0, 64)
        self.fixed_n.setPrefix("N = ")
        self.fixed_n.setMaximumWidth(80)
        self.add_row("model.mode", "Iterations", hbox_widget(self.mode, self.fixed_n), inputs=[self.mode, self.fixed_n])

        self.halting = ChoiceBox(HALTING)
        self.add_row(
            "model.halting", "Halting recipe", self.halting,
            tooltip="Calibrated: train an anytime backbone, then fit the halting head on held-out images.\n"
            "Paper ACT: Graves' adaptive computation time with the N + R ponder cost.",
        )
        self.tau = FloatEdit()
        self.add_row("model.tau", "Ponder weight τ", self.tau, tooltip="Weight of the ponder cost (paper ACT only)")
        self.eps = FloatEdit()
        self.add_row(
            "model.eps", "Halting ε", self.eps,
            tooltip="A block halts when its cumulative halting score reaches 1 − ε",
        )

        self.figures = QLabel("Parameters and MACs appear once the engine has loaded.")
        self.figures.setWordWrap(True)
        set_role(self.figures, "muted")
        self.figures_detail = muted("", wrap=True)
        self.add_full_width(self.figures)
        self.add_full_width(self.figures_detail)

        self._extra: dict[str, Any] = {}
        self._depth_caps: dict[int, tuple[int, ...]] = {}
        for signal in (self.architecture.choice_changed, self.depth.choice_changed, self.mode.choice_changed,
                       self.halting.choice_changed):
            signal.connect(self._on_choice)
        for spin in (self.width, self.fixed_n):
            spin.valueChanged.connect(self.changed)
        for edit in (self.custom_caps, self.tau, self.eps):
            edit.textEdited.connect(self.changed)
        self.custom_caps.textEdited.connect(self._update_caps_label)
        self._update_enabled()

    # ------------------------------------------------------------------ engine
    def set_depth_caps(self, depth_caps: dict[int, tuple[int, ...]]) -> None:
        """The engine's depth -> caps table (``DEPTH_ITERATIONS``)."""
        self._depth_caps = dict(depth_caps)
        self._update_caps_label()

    def caps(self) -> tuple[int, ...] | None:
        depth = self.depth.value()
        if depth == CUSTOM:
            parsed = parse_caps(self.custom_caps.text())
            # only caps a model can have: "caps 1 · 2" under a red "1, 2" read as if they were fine (QA)
            return None if caps_problem(parsed) else tuple(parsed)  # type: ignore[arg-type]
        return self._depth_caps.get(depth)

    def show_figures(self, figures: ModelFigures | None, message: str = "") -> None:
        if figures is None:
            self.figures.setText(message)
            set_role(self.figures, "muted")
            self.figures_detail.setText("")
            self.figures_detail.setVisible(False)
            return
        self.figures.setText(figures.text)
        set_role(self.figures, "figure")
        self.figures_detail.setText(f"for {figures.input_text}")
        self.figures_detail.setVisible(True)

    # --------------------------------------------------------------- behaviour
    def _on_choice(self) -> None:
        self._update_enabled()
        self.changed.emit()

    def _update_enabled(self) -> None:
        iamnn = self.architecture.value() == "iamnn"
        custom = self.depth.value() == CUSTOM
        self.custom_caps.setVisible(custom)
        self.fixed_n.setVisible(self.mode.value() == "fixed")
        for key in ("model.mode", "model.halting", "model.eps"):
            self.rows[key].widget.setEnabled(iamnn)
        self.tau.setEnabled(iamnn and self.halting.value() == "act")
        self._update_caps_label()

    def _update_caps_label(self) -> None:
        caps = self.caps()
        if self.architecture.value() == "resnet" and caps:
            self.caps_label.setText(formatting.caps(caps, "units"))
        else:
            self.caps_label.setText(caps_text(caps))
        self.caps_label.setVisible(bool(self.caps_label.text()))  # no blank line's gap under bad caps

    # --------------------------------------------------------------------- values
    def load_values(self, model: dict[str, Any]) -> None:
        widgets = (self.architecture, self.depth, self.custom_caps, self.width, self.mode, self.fixed_n,
                   self.halting, self.tau, self.eps)
        for widget in widgets:
            widget.blockSignals(True)
        self.architecture.show_value(model.get("architecture", "iamnn"))
        iterations = model.get("iterations")
        if iterations:
            self.depth.set_value(CUSTOM)
            self.custom_caps.setText(", ".join(str(n) for n in iterations))
        else:
            self.depth.show_value(model.get("depth", 50))
        self.width.show_value(model.get("width", 16))
        mode = str(model.get("mode", "adaptive"))
        if mode.startswith("fixed:"):
            self.mode.set_value("fixed")
            n = mode.split(":", 1)[1]
            self.fixed_n.show_value(int(n) if re.fullmatch(r"[+-]?[0-9]+", n) else n)
        else:
            self.mode.show_value(mode)
        self.halting.show_value(model.get("halting", "calibrated"))
        self.tau.set_value(model.get("tau"))
        self.eps.set_value(model.get("eps"))
        edited = {"architecture", "depth", "iterations", "width", "mode", "halting", "tau", "eps"}
        self._extra = {k: v for k, v in model.items() if k not in edited}
        for widget in widgets:
            widget.blockSignals(False)
        self._update_enabled()

    def values_into(self, model: dict[str, Any]) -> None:
        model.update(self._extra)
        model["architecture"] = self.architecture.value()
        depth = self.depth.value()
        if depth == CUSTOM:
            model["iterations"] = parse_caps(self.custom_caps.text())
        else:
            model["depth"] = depth
            model["iterations"] = None
        model["width"] = self.width.value_or_loaded()
        mode = self.mode.value()
        model["mode"] = f"fixed:{self.fixed_n.value_or_loaded()}" if mode == "fixed" else mode
        model["halting"] = self.halting.value()
        model["tau"] = self.tau.value()
        model["eps"] = self.eps.value()

    def input_shape(self) -> tuple[int | None, int | None, int | None]:
        """(channels, size, classes) the model is sized for now."""
        return tuple(self._extra.get(key) for key in ("in_channels", "image_size", "num_classes"))  # type: ignore[return-value]

    def set_input_shape(self, in_channels: int, image_size: int, num_classes: int) -> None:
        """The dataset decides these; they only matter for the figures until the trainer fills them in."""
        self._extra.update(in_channels=in_channels, image_size=image_size, num_classes=num_classes)
