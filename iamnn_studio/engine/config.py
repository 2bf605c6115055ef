"""Configuration dataclasses: the one source of truth for a model and a run.

The GUI forms and the CLI flags both edit these; the engine reads them. Every config
round-trips through plain dicts (JSON) and TOML, and ``validate()`` raises a
``ValueError`` whose message starts with the offending field's name.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import struct
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

#: Residual units per block of the baseline ResNets = the iteration caps of IamNN.
DEPTH_ITERATIONS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

#: Upper bounds that catch typos (an extra zero) before a model is built: ResNet-152 at the standard
#: width is 3-8-36-3 iterations at width 64. A model inside them can still be too big for a machine:
#: ``estimate.memory_problem`` checks that against its memory.
MAX_ITERATIONS = 256
MAX_WIDTH = 1024
MAX_BOTTLENECK_RATIO = 16
MAX_IMAGE_SIZE = 2048
MAX_EPOCHS = 100_000
#: Optimiser bounds that no real run comes near (SGD's learning rates are about 0.1, AdamW's 1e-3; weight
#: decays 5e-4 to 1) but that catch a slipped exponent: 1e308 passed float checks and overflowed torch's float32.
MAX_LR = 100.0
MAX_WEIGHT_DECAY = 10.0
MAX_TAU = 100.0  # the ponder-cost weight: the paper's are 1e-3 to 1e-2
#: CPU threads a settings file may ask for: a bound on typos, as the file may be meant for a bigger machine
#: (the trainer uses at most this machine's cores).
MAX_NUM_THREADS = 1024
#: Training augmentations, applied in this order (``data/augment.py``); ``data.augment`` is "none" or
#: one or more of them joined by "-": crop-flip, crop-flip-erase, ...
AUGMENT_STEPS = ("crop", "flip", "erase")
AUGMENT_MODES = ("none",) + tuple(
    "-".join(steps) for k in range(1, len(AUGMENT_STEPS) + 1) for steps in itertools.combinations(AUGMENT_STEPS, k)
)
#: How the validation share is drawn from the training images (``data.split_off``): the same share of every
#: class, or at random over all of them (every run before ``data.val_split`` existed).
VAL_SPLITS = ("per-class", "random")
#: A run's folder is named after it (plus "-2" and so on): well inside every file system's 255 bytes.
MAX_NAME_BYTES = 120

HALTING_KINDS = ("calibrated", "act")
ARCHITECTURES = ("iamnn", "resnet")
STEMS = ("auto", "small", "imagenet")


def _field_error(name: str, message: str) -> ValueError:
    return ValueError(f"{name}: {message}")


def caps_text(caps: Any) -> str:
    """Iterations per block as the app, the logs and messages write them: "3·4·6·3"."""
    return "·".join(str(n) for n in caps)


def one_of(choices: Any) -> str:
    """The allowed values as a message lists them: "sgd or adamw", "auto, small or imagenet"."""
    names = [str(c) for c in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass
class ModelConfig:
    """An IamNN (or its unshared ResNet baseline).

    ``mode`` selects how many iterations run: ``adaptive`` (the halting head decides),
    ``fixed:N`` (exactly N per block, capped; ``fixed:1`` is the paper's 1-iteration
    ablation) or ``max`` (every iteration up to the cap, no halting).
    ``halting`` selects how the adaptive head is trained and read: ``calibrated``
    (default: an anytime backbone plus a halting head fitted afterwards on held-out
    stop labels, see ``docs/research/adaptivity.md``) or ``act`` (Graves' ACT with the
    N + R ponder cost, exactly as the paper describes it).
    """

    depth: int = 50
    iterations: tuple[int, ...] | None = None  # custom caps per block; None = from depth
    width: int = 16  # channels of the stem = bottleneck width of the first block
    bottleneck_ratio: int = 4  # block output channels = ratio x bottleneck width
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    stem: str = "auto"  # auto: 3x3 stem for <= 64 px inputs, ImageNet 7x7/2 + maxpool above
    mode: str = "adaptive"
    halting: str = "calibrated"
    tau: float = 0.01  # ponder-cost weight (ACT training)
    eps: float = 0.01  # halting epsilon: a block halts when its cumulative score reaches 1 - eps
    threshold: float | None = None  # inference threshold on the cumulative score; None = 1 - eps
    block: str = "bottleneck"  # processing-block variant (plugins register more)
    architecture: str = "iamnn"  # "iamnn" or "resnet" (the unshared baseline)
    # The most iterations adaptive inference runs per block; None = the caps. Calibration sets it to
    # the most accurate fixed setting on held-out images: depth past it costs compute and accuracy.
    halting_caps: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ derived
    @property
    def halting_uncalibrated(self) -> bool:
        """A calibrated-halting IamNN whose head was never fitted (its run stopped before calibration)."""
        return self.architecture == "iamnn" and self.halting == "calibrated" and self.threshold is None

    @property
    def caps(self) -> tuple[int, ...]:
        """Maximum iterations per block."""
        if self.iterations is not None:
            return tuple(int(n) for n in self.iterations)
        return DEPTH_ITERATIONS[self.depth]

    @property
    def adaptive_caps(self) -> tuple[int, ...]:
        """The most iterations per block that the halting may use (``halting_caps`` or the caps)."""
        return self.caps if self.halting_caps is None else tuple(int(n) for n in self.halting_caps)

    @property
    def small_stem(self) -> bool:
        if self.stem == "auto":
            return self.image_size <= 64
        return self.stem == "small"

    @property
    def halting_threshold(self) -> float:
        return 1.0 - self.eps if self.threshold is None else float(self.threshold)

    def fixed_iterations(self) -> int | None:
        """N for ``fixed:N``, else None."""
        if self.mode.startswith("fixed:"):
            return int(self.mode.split(":", 1)[1])
        return None

    # --------------------------------------------------------------- validation
    def validate(self) -> "ModelConfig":
        if self.iterations is None and self.depth not in DEPTH_ITERATIONS:
            raise _field_error(
                "depth", f"{_shown(self.depth)} is not a ResNet depth; choose {one_of(sorted(DEPTH_ITERATIONS))}"
            )
        if self.iterations is not None:
            caps = tuple(self.iterations) if isinstance(self.iterations, (list, tuple)) else ()
            if len(caps) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in caps):
                raise _field_error("iterations", f"needs four positive integers, got {_listed(self.iterations)}")
            if max(caps) > MAX_ITERATIONS:
                raise _field_error("iterations", f"at most {MAX_ITERATIONS} iterations per block, got {max(caps)}")
        _positive_int("width", self.width, MAX_WIDTH)
        _positive_int("bottleneck_ratio", self.bottleneck_ratio, MAX_BOTTLENECK_RATIO)
        _positive_int("in_channels", self.in_channels)
        _positive_int("num_classes", self.num_classes)
        _positive_int("image_size", self.image_size, MAX_IMAGE_SIZE)
        if self.image_size < 8:
            raise _field_error("image_size", f"must be at least 8 pixels, got {self.image_size}")
        if self.stem not in STEMS:
            raise _field_error("stem", f"must be {one_of(STEMS)}, got {_shown(self.stem)}")
        if not isinstance(self.mode, str) or (self.mode not in ("adaptive", "max") and not self.mode.startswith("fixed:")):
            raise _field_error("mode", f"must be 'adaptive', 'fixed:N' or 'max', got {self.mode!r}")
        if self.mode.startswith("fixed:"):
            try:
                n = int(self.mode.split(":", 1)[1])
            except ValueError:
                raise _field_error("mode", f"'fixed:N' needs an integer N, got {self.mode!r}") from None
            if n < 1:
                raise _field_error("mode", f"'fixed:N' needs N >= 1, got {n}")
        if self.halting not in HALTING_KINDS:
            raise _field_error("halting", f"must be {one_of(HALTING_KINDS)}, got {_shown(self.halting)}")
        _refuse_infinity("tau", self.tau, MAX_TAU, "the ponder weight ")
        if not _is_number(self.tau) or self.tau < 0:
            raise _field_error("tau", f"the ponder weight must be >= 0, got {self.tau!r}")
        if self.tau > MAX_TAU:
            raise _field_error("tau", f"the ponder weight must be at most {MAX_TAU:g}, got {self.tau!r}")
        if not _is_number(self.eps) or not 0 <= self.eps < 1:
            raise _field_error("eps", f"the halting epsilon must be in [0, 1), got {self.eps!r}")
        if self.threshold is not None and (not _is_number(self.threshold) or not 0 < self.threshold <= 1):
            raise _field_error("threshold", f"must be in (0, 1], got {self.threshold!r}")
        if self.threshold is not None and _as_float32(self.threshold) == 0:
            raise _field_error("threshold", f"must be at least {MIN_THRESHOLD}, got {self.threshold!r} (0 in the "
                                            "model's float32 arithmetic: every block would stop at its first iteration)")
        if self.architecture not in ARCHITECTURES:
            raise _field_error("architecture", f"must be {one_of(ARCHITECTURES)}, got {_shown(self.architecture)}")
        if self.halting_caps is not None:
            limits = tuple(self.halting_caps) if isinstance(self.halting_caps, (list, tuple)) else ()
            if (len(limits) != len(self.caps) or any(isinstance(n, bool) or not isinstance(n, int) for n in limits)
                    or any(not 1 <= n <= cap for n, cap in zip(limits, self.caps))):
                raise _field_error("halting_caps", f"needs one integer per block between 1 and its cap (caps "
                                                   f"{caps_text(self.caps)}), got {_listed(self.halting_caps)}")
        return self

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("iterations", "halting_caps"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, d, "model")


def fixed_setting(mode: str, caps: Any) -> tuple[int, ...] | None:
    """Iterations per block that ``max`` or ``fixed:N`` runs on blocks with these caps (N is held to each
    block's cap: ``fixed:2`` on caps 1-2-3-2 runs 1-2-2-2); None for ``adaptive`` (the halting decides)."""
    caps = tuple(int(c) for c in caps)
    if mode == "max":
        return caps
    if isinstance(mode, str) and mode.startswith("fixed:"):
        n = int(mode.split(":", 1)[1])
        return tuple(min(n, c) for c in caps)
    return None


#: The model compares the cumulative halting score with the threshold in float32, where anything under
#: about 7e-46 is 0 (every block would stop at once); 1e-45 is the smallest float32 above 0, rounded.
MIN_THRESHOLD = 1e-45


def training_recipe(model_config: "ModelConfig") -> str:
    """The loss of a model: ``calibrated`` (anytime exits; the halting head is fitted afterwards),
    ``act`` (cross-entropy plus the ponder cost) or ``plain`` cross-entropy (fixed, max, ResNet)."""
    if model_config.architecture == "resnet" or model_config.mode != "adaptive":
        return "plain"
    return "act" if model_config.halting == "act" else "calibrated"


def calibrates_halting(config: "RunConfig") -> bool:
    """Whether the run fits its halting head after training (``calibrated`` recipe, calibration on)."""
    return training_recipe(config.model) == "calibrated" and config.calibrate_halting


def _as_float32(value: float) -> float:
    """``value`` rounded to float32, as torch compares a float32 tensor with a Python float."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _is_number(v: Any) -> bool:
    """A finite int or float: NaN and infinity ("inf" or "1e999" typed in a form) are no setting."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _refuse_infinity(name: str, value: Any, maximum: float, what: str = "") -> None:
    """Refuse an infinite setting as too big ("1e999" typed is infinity): the lower bound's message that
    ``_is_number`` would give ("must be > 0, got inf") says the opposite."""
    if isinstance(value, float) and value == math.inf:
        raise _field_error(name, f"{what}must be at most {maximum:g}, got {value!r}")


def _check_utf8(name: str, text: str, advice: str = "") -> None:
    """Refuse a setting that config.toml (UTF-8) cannot hold: a command-line argument that is not UTF-8 text
    arrives with its bytes as lone surrogates (``\\udcff``), and saving the run's settings failed on it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _field_error(name, f"must be UTF-8 text, got {repr(os.fsencode(text))[1:]}{advice}") from None


def _shown(value: Any) -> str:
    """A setting's value as the TOML file or the command line wrote it (``true``, not Python's ``True``)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _listed(value: Any) -> str:
    """A list setting's value item by item, as the file wrote it ("1, 2, true, 1"), not as a Python tuple."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_shown(item) for item in value) or "an empty list"
    return _shown(value)


def _boolean(name: str, value: Any) -> None:
    """A TOML ``true``/``false``: a string such as "no" would otherwise count as on."""
    if not isinstance(value, bool):
        raise _field_error(name, f"must be true or false, got {_shown(value)}")


def _positive_int(name: str, value: Any, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _field_error(name, f"must be a positive integer, got {_shown(value)}")
    if maximum is not None and value > maximum:
        raise _field_error(name, f"must be at most {maximum}, got {value}")


def _from_dict(cls, d: dict[str, Any], section: str):
    """Build dataclass ``cls`` from ``d``, naming unknown keys instead of ignoring them."""
    if not isinstance(d, dict):
        raise ValueError(f"{section}: expected a table of settings, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{section}.{unknown[0]}: unknown setting (known: {', '.join(sorted(names))})")
    kwargs = dict(d)
    for key in ("iterations", "halting_caps"):
        if isinstance(kwargs.get(key), list):  # anything else is left for validate() to name
            kwargs[key] = tuple(kwargs[key])
    return cls(**kwargs)


@dataclass
class DataConfig:
    """Which dataset to train on and how to feed it."""

    name: str = "fashion-mnist"  # a key of the dataset registry
    root: str | None = None  # folder with the files; None = the provider's default places
    download: bool = False  # may torchvision download it?
    val_fraction: float = 0.1  # share of the training set held out for validation/calibration
    # how that share is drawn: "per-class" (the same share of every class) or "random" (over all images, so a
    # class may get none). A saved config without it is a run from before this setting: it keeps "random"
    # (``from_dict``), or its resume and evaluation would see other validation (and test) images.
    val_split: str = "per-class"
    augment: str = "crop-flip"  # none, or crop / flip / erase joined by "-" in that order (crop-flip-erase)
    image_size: int | None = None  # resize to this (image folders); None = provider's native size
    options: dict[str, Any] = field(default_factory=dict)  # provider-specific (e.g. synthetic size)

    def validate(self) -> "DataConfig":
        if not isinstance(self.name, str) or not self.name:
            raise _field_error("data.name", "needs a dataset name")
        if self.root is not None and not isinstance(self.root, str):
            raise _field_error("data.root", f"needs a folder path, got {_shown(self.root)}")
        if self.root is not None:
            _check_utf8("data.root", self.root, "; rename the folder, or link to it from a UTF-8 path")
        _boolean("data.download", self.download)
        if not isinstance(self.options, dict):
            raise _field_error("data.options", f"expected a table of the dataset's options, got {_shown(self.options)}")
        if not _is_number(self.val_fraction) or not 0 <= self.val_fraction < 1:
            raise _field_error("data.val_fraction", f"must be in [0, 1), got {self.val_fraction!r}")
        if self.val_split not in VAL_SPLITS:
            raise _field_error("data.val_split", f"must be {one_of(VAL_SPLITS)}, got {_shown(self.val_split)}")
        if self.augment not in AUGMENT_MODES:
            raise _field_error("data.augment", "must be none, or crop, flip and erase joined by '-' in that order "
                                               f"(e.g. crop-flip-erase), got {self.augment!r}")
        if self.image_size is not None:
            _positive_int("data.image_size", self.image_size, MAX_IMAGE_SIZE)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataConfig":
        if isinstance(d, dict) and "val_split" not in d:  # saved before the setting existed: split as it was
            d = {**d, "val_split": "random"}
        return _from_dict(cls, d, "data")


OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "one-cycle", "step", "constant")
DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N", one GPU by its number (see is_device)


def is_device(value: Any) -> bool:
    """Whether ``value`` names a device a run may ask for: one of ``DEVICES`` or ``cuda:N``."""
    if not isinstance(value, str):
        return False
    kind, colon, index = value.partition(":")
    return value in DEVICES or (kind == "cuda" and bool(colon) and index.isascii() and index.isdigit())


@dataclass
class RunConfig:
    """A whole training run: data, model and optimisation."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "one-cycle"
    label_smoothing: float = 0.0
    batch_size: int = 128
    epochs: int = 10
    max_steps: int | None = None  # cap on optimiser steps (quick tries); None = epochs decide
    ponder_warmup_epochs: float = 1.0  # ACT: tau ramps linearly from 0 over this many epochs
    calibrate_halting: bool = True  # fit the halting head after training (calibrated halting)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA
    num_threads: int | None = None  # CPU threads for torch; None = all cores
    # Start from this checkpoint's weights (a run folder: its best.pt): a new run with its own optimiser
    # and schedule, e.g. to train a finished model longer. The model settings must build the same network.
    init_from: str | None = None

    def validate(self) -> "RunConfig":
        if not isinstance(self.name, str) or not self.name.strip() or any(c in self.name for c in "/\\"):
            raise _field_error("name", f"needs a non-empty name without slashes, got {self.name!r}")
        if self.name.strip() in (".", "..") or any(ord(c) < 32 for c in self.name):
            raise _field_error("name", f"must be a folder name, got {self.name!r}")
        _check_utf8("name", self.name)
        if len(self.name.encode()) > MAX_NAME_BYTES:  # the run's folder is named after it
            raise _field_error("name", f"at most {MAX_NAME_BYTES} characters, got {len(self.name)}")
        self.data.validate()
        self.model.validate()
        if self.optimizer not in OPTIMIZERS:
            raise _field_error("optimizer", f"must be {one_of(OPTIMIZERS)}, got {_shown(self.optimizer)}")
        _refuse_infinity("lr", self.lr, MAX_LR, "the learning rate ")
        if not _is_number(self.lr) or self.lr <= 0:
            raise _field_error("lr", f"the learning rate must be > 0, got {self.lr!r}")
        if self.lr > MAX_LR:
            raise _field_error("lr", f"the learning rate must be at most {MAX_LR:g}, got {self.lr!r}")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise _field_error("momentum", f"must be in [0, 1), got {self.momentum!r}")
        _refuse_infinity("weight_decay", self.weight_decay, MAX_WEIGHT_DECAY)
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise _field_error("weight_decay", f"must be >= 0, got {self.weight_decay!r}")
        if self.weight_decay > MAX_WEIGHT_DECAY:
            raise _field_error("weight_decay", f"must be at most {MAX_WEIGHT_DECAY:g}, got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise _field_error("schedule", f"must be {one_of(SCHEDULES)}, got {_shown(self.schedule)}")
        if not _is_number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise _field_error("label_smoothing", f"must be in [0, 1), got {self.label_smoothing!r}")
        _positive_int("batch_size", self.batch_size)
        _positive_int("epochs", self.epochs, MAX_EPOCHS)
        if self.max_steps == 0 and not isinstance(self.max_steps, bool):
            self.max_steps = None  # TOML has no "none": 0 says no step limit, as --max-steps 0 does
        if self.max_steps is not None:
            _positive_int("max_steps", self.max_steps)
        if not _is_number(self.ponder_warmup_epochs) or self.ponder_warmup_epochs < 0:
            raise _field_error("ponder_warmup_epochs", f"must be >= 0, got {self.ponder_warmup_epochs!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**53:
            # per-process seeds (seed * 1000 + rank) must fit torch.manual_seed's 64 bits
            raise _field_error("seed", f"must be an integer in [0, 2**53 - 1], got {self.seed!r}")
        for name in ("calibrate_halting", "amp", "channels_last"):
            _boolean(name, getattr(self, name))
        if not is_device(self.device):
            raise _field_error("device", f"must be auto, cpu, cuda or cuda:N (N a GPU number), got {self.device!r}")
        if self.num_threads is not None:
            _positive_int("num_threads", self.num_threads, MAX_NUM_THREADS)
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise _field_error("init_from", f"needs a checkpoint file or run folder, got {self.init_from!r}")
        if self.init_from is not None:
            _check_utf8("init_from", self.init_from, "; rename the file, or link to it from a UTF-8 path")
        return self

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["data"] = self.data.to_dict()
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        if not isinstance(d, dict):
            raise ValueError("run: expected a table of settings")
        d = dict(d)
        data = DataConfig.from_dict(d.pop("data", {}))
        model = ModelConfig.from_dict(d.pop("model", {}))
        run = _from_dict(cls, d, "run")
        run.data, run.model = data, model
        return run

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.to_dict()))

    @classmethod
    def from_toml(cls, text: str) -> "RunConfig":
        try:
            d = tomllib.loads(text.removeprefix("\ufeff"))  # a byte order mark, as some Windows editors write
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config: not valid TOML ({exc})") from None
        return cls.from_dict(d)

    def make_paths_absolute(self) -> "RunConfig":
        """A relative data folder or start checkpoint becomes absolute (from the current folder), so
        a run's saved settings mean the same when it is evaluated or resumed from another folder."""
        if self.data.root:
            self.data.root = os.path.abspath(os.path.expanduser(self.data.root))
        if self.init_from:
            self.init_from = os.path.abspath(os.path.expanduser(self.init_from))
        return self

    def save(self, path: str | Path) -> None:
        from .io import atomic_write_text  # local: io imports nothing heavy, but keep config standalone

        atomic_write_text(Path(path), self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_toml(read_settings_file(path))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


#: A settings file is a few hundred bytes: anything over this is the wrong file (read no further).
MAX_SETTINGS_BYTES = 1 << 20


def read_settings_file(path: str | Path) -> str:
    """The text of a settings file, or ``ValueError`` saying why it is none. A pipe (``<(...)``,
    ``/dev/stdin``) or a terminal is read too, up to ``MAX_SETTINGS_BYTES``: ``/dev/zero`` or a huge file
    read whole took the memory, gigabytes, before "not valid TOML"."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if not _readable_as_settings(fh):
                raise ValueError(f"config: {path} is a device, not a settings file (.toml)")
            data = fh.read(MAX_SETTINGS_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"config: no such file: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"config: {path} is a folder: give a settings file (.toml)") from None
    except OSError as exc:
        raise ValueError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SETTINGS_BYTES:
        raise ValueError(f"config: {path} is over {MAX_SETTINGS_BYTES >> 20} MiB, too big for a settings file "
                         "(a few hundred bytes of TOML); is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"config: {path} is not a settings file: not UTF-8 text") from None


def _readable_as_settings(fh) -> bool:
    """A file, a pipe or socket (process substitution, ``/dev/stdin``) or a terminal; not another device."""
    import stat

    mode = os.fstat(fh.fileno()).st_mode
    return stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or fh.isatty()


def _drop_none(d: Any) -> Any:
    """TOML has no null: leave unset optional values out (they load back as their defaults)."""
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, (list, tuple)):
        return [_drop_none(v) for v in d]
    return d
