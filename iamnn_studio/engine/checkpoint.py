"""Weights-only checkpoints: a plain dict of tensors, numbers and strings, written atomically.

A checkpoint holds everything needed to rebuild and use a trained model without its run folder:
the model config (including the calibrated halting threshold), the weights, the class names and
the normalisation statistics; optionally the run config, metrics and the state to resume training.

Loading uses ``torch.load(weights_only=True)`` and nothing else: a file that needs arbitrary code
to unpickle is refused, never retried with ``weights_only=False`` (CVE-2025-32434). Every way a
file can be wrong ends in a ``CheckpointError`` with one sentence saying what is wrong.
"""
from __future__ import annotations

import errno
import io
import math
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .config import ARCHITECTURES, ModelConfig, RunConfig
from .io import atomic_write, bytes_text, unsaved_reason
from .model import build_model
from .plugins import MissingBlockError

FORMAT = "iamnn-studio-checkpoint"
#: Bump when the layout changes; older files keep loading, newer ones are refused by name.
FORMAT_VERSION = 1

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save has written zip archives since torch 1.6


class CheckpointError(ValueError):
    """A checkpoint cannot be written or loaded; the message is one sentence for the user."""


class MissingPluginError(CheckpointError):
    """The checkpoint is fine, but its model's processing block comes from a plugin that is not installed here.
    ``needs`` is the message without the checkpoint's name ("needs processing block ..."), for a sentence that
    names the file its own way."""

    def __init__(self, name: str, needs: str) -> None:
        self.name, self.needs = name, needs
        super().__init__(f"{name} {needs}")

    def __reduce__(self):  # pickled with its arguments (an error may cross to another process)
        return type(self), (self.name, self.needs)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode plus what it was trained on and how."""

    model: nn.Module
    model_config: ModelConfig
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    path: Path
    run_config: RunConfig | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    notes: list[str] = field(default_factory=list)  # things worth telling the user (e.g. unreadable run config)

    @property
    def architecture(self) -> str:
        return self.model_config.architecture

    @property
    def halting_left_unfitted(self) -> bool:
        """Trained with ``--no-calibrate``: its halting head was left unfitted on purpose, and the model runs at
        full depth (README), in evaluate, predict and export alike; not a run that stopped before calibration."""
        run = self.run_config
        return run is not None and not run.calibrate_halting and self.model_config.halting_uncalibrated


# --------------------------------------------------------------------------- saving
def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    run_config: RunConfig | None = None,
    classes: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    metrics: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
    keep_previous: bool = False,
) -> Path:
    """Write ``model`` and its context to ``path`` atomically; returns the path.

    ``metrics`` and ``training_state`` must hold only what the weights-only unpickler accepts
    (tensors, numbers, strings, None and dicts/lists/tuples of them): RNG states as tensors, not
    ``random.getstate()`` objects. ``keep_previous`` first keeps the file being replaced as
    ``<name>.prev``, so a bad write can never cost the last good checkpoint.
    """
    path = Path(path)
    model = _unwrap(model)
    config: ModelConfig = model.config
    if len(classes) != config.num_classes:
        raise CheckpointError(f"{len(classes)} class names for a model with {config.num_classes} classes")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": config.architecture,
        "model_config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": [str(c) for c in classes],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "metrics": dict(metrics or {}),
        "run_config": None if run_config is None else run_config.to_dict(),
        "training_state": training_state,
    }
    if path.is_dir():
        raise CheckpointError(f"cannot write checkpoint {path}: it is a folder")
    # Into memory first, then written by Python: torch's C++ writer turns a full disk's OSError into
    # "RuntimeError: [enforce fail at inline_container.cc] unexpected pos", which says nothing to a user.
    buffer = io.BytesIO()
    try:
        torch.save(payload, buffer)
        if keep_previous and path.is_file():
            _keep_copy(path, path.with_name(path.name + ".prev"))
        atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: {_write_failure(exc, path, buffer)}") from None
    except pickle.PicklingError as exc:  # something in metrics/training_state is not plain data
        raise CheckpointError(f"cannot write checkpoint {path}: {exc}") from None
    return path


def _write_failure(error: OSError, path: Path, buffer: io.BytesIO) -> str:
    """Why the file was not written: a full disk (or quota) with the room left and the room needed."""
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return str(error.strerror or error)
    try:
        free = f"{bytes_text(shutil.disk_usage(path.parent).free)} free, "
    except OSError:
        free = ""
    return f"{unsaved_reason(error)} ({free}the checkpoint takes {bytes_text(buffer.getbuffer().nbytes)})"


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel (``module``) or torch.compile (``_orig_mod``)."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _keep_copy(path: Path, previous: Path) -> None:
    """Point ``previous`` at the current file (a hard link: no copy, and atomic via a temp name)."""
    tmp = previous.with_name(previous.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # file systems without hard links
        shutil.copy2(path, tmp)
    os.replace(tmp, previous)


# --------------------------------------------------------------------------- loading
def run_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``path`` stands for: a run folder's ``checkpoints/best.pt``, else its ``last.pt``
    (a run stopped before its first epoch ended); anything else is the file itself."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return path
    for name in ("best.pt", "last.pt"):
        for folder in (path / "checkpoints", path):  # the run folder, or its checkpoints folder itself
            if (folder / name).is_file():
                return folder / name
    raise CheckpointError(f"{path} is a folder without a checkpoint: looked for best.pt and last.pt in it "
                          "and in its checkpoints folder (give a checkpoint file or a run folder)")


def checkpoint_settings(path: str | Path) -> tuple[ModelConfig, dict[str, Any] | None]:
    """The model settings a checkpoint (or run folder) was trained with, and its run's data settings where
    the checkpoint stores them, read without building the model."""
    path = run_checkpoint(path)
    payload = _read_payload(path)
    run_config = payload.get("run_config")
    data = run_config.get("data") if isinstance(run_config, dict) else None
    return _model_config(path, payload), data if isinstance(data, dict) else None


def halting_settings(path: str | Path) -> tuple[ModelConfig, bool]:
    """The model settings a checkpoint (or run folder) was trained with, read without building the model, and
    whether its run left the halting head unfitted on purpose (``Checkpoint.halting_left_unfitted``)."""
    path = run_checkpoint(path)
    payload = _read_payload(path)
    config = _model_config(path, payload)
    run_config = payload.get("run_config")
    calibrates = run_config.get("calibrate_halting", True) if isinstance(run_config, dict) else True
    return config, calibrates is False and config.halting_uncalibrated


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint written by ``save_checkpoint``; the model is rebuilt, filled strictly and in eval mode.

    Raises ``CheckpointError`` for a missing, foreign, damaged, unsafe, incompatible or too new file.
    """
    path = Path(path)
    payload = _read_payload(path)
    config = _model_config(path, payload)
    try:
        model = build_model(config)
    except MissingBlockError as exc:  # not the file's fault: say which plugin it needs, and where plugins go
        raise MissingPluginError(shown_name(path), exc.needs) from None
    except ValueError as exc:
        raise CheckpointError(f"{shown_name(path)}: cannot build its model ({exc})") from None
    _load_weights(path, model, payload["state_dict"], config)
    model.to(map_location)
    model.eval()

    notes: list[str] = []
    run_config = None
    if payload.get("run_config") is not None:
        try:
            run_config = RunConfig.from_dict(payload["run_config"])
        except (ValueError, TypeError) as exc:
            notes.append(f"the run settings stored in the checkpoint could not be read ({exc})")
    classes = [str(c) for c in payload.get("classes") or []]
    if len(classes) != config.num_classes:
        raise CheckpointError(f"{shown_name(path)}: {len(classes)} class names for a model with "
                              f"{config.num_classes} classes")
    mean, std = _normalisation(path, payload, config)
    metrics = payload.get("metrics") or {}
    if not isinstance(metrics, dict):
        notes.append("the metrics stored in the checkpoint could not be read")
        metrics = {}
    return Checkpoint(
        model=model,
        model_config=config,
        classes=classes,
        mean=mean,
        std=std,
        path=path,
        run_config=run_config,
        metrics=dict(metrics),
        training_state=payload.get("training_state"),
        format_version=int(payload["format_version"]),
        notes=notes,
    )


def _normalisation(path: Path, payload: dict[str, Any], config: ModelConfig) -> tuple[tuple[float, ...], ...]:
    """(mean, std) per input channel, checked here so that a bad pair is a sentence, not a broadcast
    error at the first prediction."""
    pair = []
    for key in ("mean", "std"):
        values = payload[key]
        if isinstance(values, torch.Tensor):
            values = values.flatten().tolist()
        try:
            numbers = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise CheckpointError(f"{shown_name(path)} is damaged: its normalisation {key} is not a list of "
                                  "numbers") from None
        if len(numbers) != config.in_channels or not all(math.isfinite(v) for v in numbers):
            raise CheckpointError(f"{shown_name(path)} is damaged: its normalisation {key} holds "
                                  f"{_numbers_text(numbers)}, "
                                  f"which does not fit a model of {config.in_channels} input channel(s)")
        pair.append(numbers)
    if any(v <= 0 for v in pair[1]):
        raise CheckpointError(f"{shown_name(path)} is damaged: its normalisation std must be positive, got "
                              f"{_numbers_text(pair[1])}")
    return pair[0], pair[1]


def _numbers_text(numbers: Sequence[float]) -> str:
    """Numbers as a sentence lists them: "0.5, 0.5 and 0.5" ("no numbers" for none)."""
    words = [f"{v:g}" for v in numbers]
    if not words:
        return "no numbers"
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def shown_name(path: Path) -> str:
    """A checkpoint's name in messages: its file name, with its run for one in a run's checkpoints folder
    ("r1/checkpoints/best.pt": every run has a best.pt)."""
    path = Path(path)
    if path.parent.name == "checkpoints" and path.parent.parent.name:  # runs.CHECKPOINT_DIR (runs imports us)
        return f"{path.parent.parent.name}/checkpoints/{path.name}"
    return path.name


def _read_payload(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True, after checks that turn torch's errors into plain sentences."""
    name = shown_name(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():  # a named pipe would block the read for ever; a device's bare name ("zero") says nothing
        raise CheckpointError(f"{path} is not a regular file, so not a checkpoint")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not magic:
        raise CheckpointError(f"{name} is empty: not a checkpoint")
    if magic != _ZIP_MAGIC:
        if path.suffix.lower() == ".onnx" or magic[:1] == b"\x08":  # an ONNX model starts with its ir_version field
            raise CheckpointError(f"{name} looks like an ONNX export, not an IamNN Studio checkpoint: open the "
                                  "checkpoint it was exported from (onnxruntime runs the export)")
        raise CheckpointError(f"{name} is not an IamNN Studio checkpoint (not a PyTorch zip file)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{name} is damaged or incomplete (truncated? its zip directory is missing)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):  # what torch.jit.save writes
                raise CheckpointError(f"{name} is a TorchScript export, not an IamNN Studio checkpoint: open the "
                                      "checkpoint it was exported from (torch.jit.load reads the export)")
            if any(n.endswith("/archive_format") for n in names):  # what torch.export.save writes
                raise CheckpointError(f"{name} is a torch.export (.pt2) program, not an IamNN Studio checkpoint: "
                                      "open the checkpoint it was exported from (torch.export.load reads it)")
            if not any(n.endswith("/data.pkl") for n in names):
                raise CheckpointError(f"{name} is not an IamNN Studio checkpoint (a zip file, but not a PyTorch one)")
            damaged = archive.testzip()  # CRC of every entry: catches flipped bytes torch would not notice
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{name} is damaged: {exc}") from None
    except UnicodeDecodeError:  # bytes flipped in the zip directory's file names
        raise CheckpointError(f"{name} is damaged: its zip directory has unreadable file names") from None
    if damaged is not None:
        raise CheckpointError(f"{name} is damaged: {damaged} fails its checksum")

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _needs_code(exc):
            raise CheckpointError(
                f"{name} refused: this file needs arbitrary code to load; only weights-only checkpoints are accepted"
            ) from None
        raise CheckpointError(f"{name} is not an IamNN Studio checkpoint (unreadable pickle data)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{name} is damaged or not a checkpoint: {first_line}") from None

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        what = "a bare dict of tensors (weights only?)" if _is_state_dict(payload) else "written by something else"
        raise CheckpointError(f"{name} is not an IamNN Studio checkpoint ({what})")
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{name}: unknown checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name} uses checkpoint format {version}, newer than this IamNN Studio reads ({FORMAT_VERSION}); "
            "update IamNN Studio"
        )
    for key in ("model_config", "state_dict", "mean", "std"):
        if key not in payload:
            raise CheckpointError(f"{name} is incomplete: it has no {key!r}")
    return payload


def _needs_code(exc: pickle.UnpicklingError) -> bool:
    """True when the weights-only unpickler refused a global/reduce (code), not garbage bytes."""
    text = str(exc)
    return any(word in text for word in ("GLOBAL", "global", "is blocked", "REDUCE", "BUILD", "not an allowed"))


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _model_config(path: Path, payload: dict[str, Any]) -> ModelConfig:
    architecture = payload.get("architecture")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(
            f"{shown_name(path)} holds a {architecture!r} model; this IamNN Studio reads {', '.join(ARCHITECTURES)}"
        )
    try:
        config = ModelConfig.from_dict(payload["model_config"]).validate()
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{shown_name(path)}: its model settings are invalid ({exc})") from None
    if config.architecture != architecture:
        raise CheckpointError(
            f"{shown_name(path)} says it holds a {architecture!r} model but its settings describe a "
            f"{config.architecture!r} one"
        )
    return config


def _shape_text(shape: Sequence[int]) -> str:
    """A tensor's shape as image sizes are written, "64×3×3×3" (not torch's list); "0-d" for a single number."""
    return "×".join(str(n) for n in shape) or "0-d"


def _load_weights(path: Path, model: nn.Module, state_dict: Any, config: ModelConfig) -> None:
    """``load_state_dict(strict=True)``, after naming the first missing, extra or misshapen parameter."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{shown_name(path)}: its weights are not a state dict")
    expected = model.state_dict()
    what = f"the {config.architecture} model its settings describe"
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{shown_name(path)} does not fit {what}: parameter {missing[0]!r} is missing{more}")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise CheckpointError(f"{shown_name(path)} does not fit {what}: unexpected parameter {extra[0]!r}{more}")
    for key, tensor in expected.items():
        stored = state_dict[key]
        if not isinstance(stored, torch.Tensor) or stored.shape != tensor.shape:
            got = (f"shape {_shape_text(stored.shape)}" if isinstance(stored, torch.Tensor)
                   else f"type {type(stored).__name__}")
            raise CheckpointError(
                f"{shown_name(path)} does not fit {what}: parameter {key!r} has {got} "
                f"in the checkpoint but shape {_shape_text(tensor.shape)} in the model"
            )
        if stored.is_floating_point() and not bool(torch.isfinite(stored).all()):
            # such a model answers "nan %" for every image: say so once, at loading
            raise CheckpointError(f"{shown_name(path)}: parameter {key!r} holds NaN or infinite values, so the model "
                                  "cannot "
                                  "classify (did its training diverge? use an earlier checkpoint)")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise CheckpointError(f"{shown_name(path)}: its weights cannot be loaded "
                              f"({str(exc).splitlines()[0]})") from None
