"""Classify images with a trained checkpoint and show how the model spent its compute on each.

``load_image`` turns any file PIL reads (or a PIL image) into the uint8 tensor the model was
trained on: same channel count, short side resized and centre-cropped exactly as the image-folder
datasets do. ``Predictor`` runs batches and returns, per image, the top classes plus the halting
story: iterations per block, the halting score of every iteration run and the cumulative score
the halting rule compared with the threshold.
"""
from __future__ import annotations

import math
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .checkpoint import Checkpoint, load_checkpoint
from .config import ModelConfig, fixed_setting
from .data.augment import normalize, resize_images
from . import split_forward
from .halting import act_step, hazard_step
from .pixels import peak_value, to_8_bit

TOP_K = 5
#: A picture is shrunk to about this many times the model's image size before it is converted and resized.
SHRINK_GAP = 3
ORIENTATION = 0x0112  # the EXIF tag
#: Transparent pixels are shown over this colour (what image editors do when flattening).
BACKGROUND = (255, 255, 255)


class ImageError(ValueError):
    """An image cannot be read or does not suit the model; the message names the file."""


# --------------------------------------------------------------------------- images
def load_image(source: str | Path | Image.Image, *, in_channels: int, image_size: int,
               notes: list[str] | None = None) -> Tensor:
    """Read ``source`` as a uint8 tensor [in_channels, image_size, image_size].

    Accepts every mode PIL decodes (L, RGB, RGBA, P, CMYK, 16-bit and float greyscale, ...),
    applies the EXIF orientation, flattens transparency over white, converts to greyscale or RGB
    as the model needs, then resizes the short side and centre-crops. What was changed on the way
    (frames after the first left out, colours dropped, transparency filled, size) is appended to
    ``notes`` as short phrases, so a user can tell what the model actually saw.
    """
    name = _display_name(source)
    if in_channels not in (1, 3):
        raise ImageError(f"cannot feed {name}: the model expects {in_channels} channels; image files give 1 or 3")
    if isinstance(source, Image.Image):
        image, size = source, source.size
    else:
        image, size = _open(Path(source), name, draft_to=SHRINK_GAP * image_size)
    frames = _frames_note(image)  # before exif_transpose: its copy is a single picture
    if notes is not None and frames:
        notes.append(frames)
    try:
        # only a picture that turns is copied (exif_transpose copies every other one whole)
        orientation = image.getexif().get(ORIENTATION, 1)
        if orientation in range(2, 9):
            image = ImageOps.exif_transpose(image)
            size = size[::-1] if orientation >= 5 else size  # 5-8 turn it a quarter
        peak = peak_value(image)  # of the whole picture, as its 8-bit scale is
        image = _lab_as_rgb(to_8_bit(_shrunk(image, image_size), peak=peak), name)
        flat, see_through = _flatten(image)
        if notes is not None and see_through:
            notes.append("transparent pixels filled with white")
        converted = _shrunk(flat.convert("L" if in_channels == 1 else "RGB"), image_size)  # a palette or 1-bit one
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read {name}: {exc}") from None
    if notes is not None:
        notes.extend(_conversion_notes(flat, in_channels, image_size, size))
    array = np.asarray(converted, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
    return resize_images(tensor[None], image_size)[0]


def _frames_note(image: Image.Image) -> str | None:
    """"first of 3 frames used (...)" for an animated GIF/WebP/PNG or a multi-page TIFF, whose other frames the
    model never sees; None for a single picture, or where the later frames cannot even be counted (damaged)."""
    try:
        with warnings.catch_warnings():  # a damaged later page's "Corrupt EXIF data" is not this picture's
            warnings.simplefilter("ignore")
            frames, current = int(getattr(image, "n_frames", 1)), image.tell()
    except (OSError, EOFError, ValueError, SyntaxError, TypeError):
        return None
    if frames <= 1:
        return None
    which = "first" if current == 0 else f"frame {current + 1}"
    return f"{which} of {frames} frames used (the model reads one picture)"


def _shrunk(image: Image.Image, image_size: int) -> Image.Image:
    """``image`` box-averaged to about ``SHRINK_GAP`` times ``image_size`` on its short side where it is larger
    still: the conversions and the float resize after it then work on thousands of pixels, not a photo's
    millions (a 12000×12000 JPEG took 3.5 GB). What the model sees is the same but for rounding (the resize
    averages these pixels anyway). A palette or 1-bit image is left whole: PIL resizes those by picking pixels."""
    factor = min(image.size) // (SHRINK_GAP * image_size)
    if factor < 2 or image.mode in ("1", "P", "PA"):
        return image
    width, height = image.size
    # PIL averages RGBA and LA with their alpha premultiplied, so flattening them after is flattening before
    return image.resize((-(-width // factor), -(-height // factor)), Image.Resampling.BOX)


def _conversion_notes(image: Image.Image, in_channels: int, image_size: int,
                      size: tuple[int, int]) -> list[str]:
    notes = []
    if in_channels == 1 and image.mode not in ("L", "1", "I", "F"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        if (rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any():
            notes.append("colours converted to greyscale (the model reads grey images)")
    elif in_channels == 3 and image.mode in ("L", "1", "I", "F"):
        notes.append("greyscale image used as RGB (the model reads colour images)")
    width, height = size  # the picture's own, not the shrunk one's
    if (width, height) != (image_size, image_size):
        crop = ", centre-cropped to a square" if width != height else ""
        notes.append(f"resized from {width}×{height} to {image_size}×{image_size}{crop}")
    return notes


def _display_name(source: Any) -> str:
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return Path(filename).name if filename else "the image"
    return Path(source).name


def _open(path: Path, name: str, *, draft_to: int) -> tuple[Image.Image, tuple[int, int]]:
    """(the decoded image, its size in the file); a JPEG is decoded at the smallest scale that keeps it at least
    ``draft_to`` pixels on each side (as the image-folder datasets read theirs), a fraction of the time and memory."""
    try:
        # a named pipe or a device would block the read for ever (a FIFO named like an image in a folder)
        if not stat.S_ISREG(path.stat().st_mode) and not path.is_dir():
            raise ImageError(f"cannot read {name}: not a regular file")
        # Between PIL's warning size (89 Mpx) and its refusal (twice that) a picture still decodes;
        # it is downsized anyway, so PIL's warning (source file, line) is only noise on stderr.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # a damaged file's "Corrupt EXIF data" too: the error (or the picture read anyway) says what matters
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            image = Image.open(path)
            size = image.size
            image.draft(None, (draft_to, draft_to))
            image.load()  # decode now: a truncated file must fail here, not later
        return image, size
    except FileNotFoundError:
        raise ImageError(f"cannot read {name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"cannot read {name}: it is a folder") from None
    except UnidentifiedImageError:
        claimed = _signature_format(path)
        what = f"a damaged or incomplete {claimed} file" if claimed else "not an image file"
        raise ImageError(f"cannot read {name}: {what}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"cannot read {name}: the image is too large{_size_against_limit(exc)}") from None
    except PermissionError:
        raise ImageError(f"cannot read {name}: permission denied") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # PIL raises these for damaged files
        raise ImageError(f"cannot read {name}: damaged image ({exc})") from None


def _signature_format(path: Path) -> str | None:
    """The format ("PNG") whose signature ``path`` starts with, though PIL could not open it: a file cut short
    after its first bytes. None where no format's signature matches (a text file named .png); formats without
    a signature (PIL's TGA, IM, ...) would claim any file, so they are not asked."""
    try:
        with path.open("rb") as file:
            prefix = file.read(16)  # what Image.open shows each format's check
    except OSError:
        return None
    Image.init()
    for claimed, (_, accepts) in Image.OPEN.items():
        try:
            # a string is PIL's "recognised but unsupported here" (e.g. no WebP library): not damage
            if accepts is not None and (answer := accepts(prefix)) and not isinstance(answer, str):
                return claimed
        except Exception:  # a check reading past a prefix this short (struct.error)
            continue
    return None


def _size_against_limit(refusal: Exception) -> str:
    """" (400 megapixels; the most it reads is 179 megapixels): shrink it first" from PIL's refusal, whose
    message holds both counts; "" where it does not."""
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+) pixels", str(refusal))
    if found is None:
        return ""
    pixels, limit = (int(n) for n in found.groups())
    return f" ({_pixel_count(pixels)}; the most it reads is {_pixel_count(limit)}): shrink it first"


def _pixel_count(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} megapixels" if pixels >= 1_000_000 else f"{pixels:,} pixels"


def _lab_as_rgb(image: Image.Image, name: str) -> Image.Image:
    """A CIELAB image (a LAB TIFF) in RGB: PIL converts LAB to RGB, but not to greyscale ("conversion from LAB to
    RGB not supported"), so a greyscale model's image goes through RGB."""
    if image.mode != "LAB":
        return image
    try:
        return image.convert("RGB")
    except ValueError:  # a PIL without that route
        raise ImageError(f"cannot read {name}: LAB colour images are not supported; save it as RGB") from None


def _flatten(image: Image.Image) -> tuple[Image.Image, bool]:
    """(``image`` composited over ``BACKGROUND``, whether any pixel was see-through); images without alpha
    pass through. An alpha channel (or a palette's transparent entry) with every pixel opaque changes nothing,
    so it is no reason to say that transparency was filled."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        see_through = rgba.getchannel("A").getextrema()[0] < 255
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB"), see_through
    return image, False


# --------------------------------------------------------------------------- halting
def cumulative_halting(scores: Sequence[float], halting: str) -> list[float]:
    """The cumulative halting score after each scored iteration, as the model's halting rule sees it.

    ``halting`` is the model's ``ModelConfig.halting``: ``act`` sums the scores (Graves' ACT),
    ``calibrated`` reads them as hazards, 1 - prod(1 - h). The steps come from ``halting.py``,
    so this can never drift from what the model compares with the threshold.
    """
    return halting_story(scores, halting, None)[0]


def halting_story(scores: Sequence[float], halting: str,
                  threshold: float | None) -> tuple[list[float], int | None]:
    """(cumulative score after each scored iteration, the iteration, from 1, whose cumulative score reached
    ``threshold``; None where none did: the block's limit stopped it, or ``threshold`` is None).

    Computed with the model's own arithmetic: float32 tensors through ``halting.py``'s step, compared with
    the threshold as the model compares it (a float32 tensor against a Python float, so in float32). In
    float64 a cumulative score landing exactly on float32(threshold), e.g. one score 0.9 under threshold
    0.9, read "not reached" although the model halted there.
    """
    step = act_step if halting == "act" else hazard_step
    cumulative = torch.zeros(1, dtype=torch.float32)  # the model's running score (halting.py's caller)
    out: list[float] = []
    reached: int | None = None
    for n, score in enumerate(scores, 1):
        # threshold 2.0 when none is given: only the cumulative value is wanted, never a halt
        halt, *_, cumulative = step(cumulative, torch.tensor([float(score)], dtype=torch.float32),
                                    2.0 if threshold is None else threshold)
        out.append(float(cumulative))
        if reached is None and bool(halt):
            reached = n
    return out, reached


# --------------------------------------------------------------------------- predictions
@dataclass
class Prediction:
    """One image's answer and how the model got there."""

    source: str
    top: list[tuple[str, float]]  # (label, probability), most probable first, up to 5
    iterations: list[int]  # per block
    caps: list[int]  # per block
    halting: list[list[float]]  # per block: the score of each iteration run (the cap iteration has none)
    cumulative: list[list[float]]  # per block: cumulative halting score after each scored iteration
    threshold: float | None  # the threshold the cumulative score was compared with (None: no halting)
    macs: int
    macs_range: tuple[int, int]  # cheapest and dearest possible MACs per image
    mode: str = "adaptive"
    notes: list[str] = field(default_factory=list)  # how the input was adapted to the model (load_image)
    #: per block: the iteration (from 1) whose cumulative score reached the threshold, compared as the model
    #: compares it (float32); None where no score reached it (the block ran to its limit) or nothing halts
    reached: list[int | None] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def probability(self) -> float:
        return self.top[0][1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "top": [{"label": label, "probability": p} for label, p in self.top],
            "iterations": self.iterations,
            "caps": self.caps,
            "halting": self.halting,
            "cumulative": self.cumulative,
            "threshold": self.threshold,
            "mode": self.mode,
            "macs": self.macs,
            "macs_range": list(self.macs_range),
            "notes": list(self.notes),
            "reached": list(self.reached),
        }


@dataclass
class PredictionFailure:
    """An input that could not be classified; ``message`` is one sentence naming it."""

    source: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "error": self.message}


class Predictor:
    """Classifies images with a checkpoint's model; the threshold and mode can be moved live."""

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.batch_size = batch_size
        self.model.to(device).eval()
        self._evaluation = _stored_evaluation(checkpoint)
        if self.left_unfitted and self.model_config.mode == "adaptive":
            self.model.set_mode("max")  # as its evaluation runs it: an unfitted head would only add its cost

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "Predictor":
        return cls(load_checkpoint(path, map_location=device), device=device)

    # ------------------------------------------------------------------ knobs
    @property
    def model(self) -> torch.nn.Module:
        return self.checkpoint.model

    @property
    def classes(self) -> list[str]:
        return self.checkpoint.classes

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    @property
    def halts(self) -> bool:
        """Whether a halting head decides the iterations (adaptive IamNN), so the threshold matters."""
        return self.model_config.architecture == "iamnn" and self.model_config.mode == "adaptive"

    @property
    def uncalibrated(self) -> bool:
        """A calibrated-halting IamNN whose head was never fitted (its run stopped before calibration):
        its adaptive iteration counts mean little until the run is resumed."""
        return self.model_config.halting_uncalibrated and not self.left_unfitted

    @property
    def left_unfitted(self) -> bool:
        """Trained with ``--no-calibrate``: its halting head was left unfitted on purpose, and the model runs at
        full depth (README), here as in ``evaluate``; not a run that stopped before calibration."""
        return self.checkpoint.halting_left_unfitted

    @property
    def threshold(self) -> float:
        return self.model_config.halting_threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        previous = self.model_config.threshold
        try:
            self.model.set_threshold(value)
        except ValueError:
            self.model.set_threshold(previous)  # set_threshold stores before it validates
            raise

    @property
    def mode(self) -> str:
        return self.model_config.mode

    @mode.setter
    def mode(self, value: str) -> None:
        previous = self.model_config.mode
        try:
            self.model.set_mode(value)
        except ValueError:
            self.model.set_mode(previous)
            raise

    @property
    def macs_range(self) -> tuple[int, int]:
        """(cheapest, dearest) MACs per image in the current mode: the halting's range in adaptive mode,
        one value where the iterations are fixed (``max``, ``fixed:N``: no halting head runs) or for a
        ResNet baseline. What ``predict`` on the command line reports, so the Use tab shows the same."""
        setting = None if self.halts or self.model_config.architecture != "iamnn" else self._fixed_setting()
        if setting is None:
            low, high = self.model.macs_range()
            return int(low), int(high)
        iterations = torch.tensor([setting], dtype=torch.long)
        macs = int(self.model.macs_for(iterations, torch.zeros_like(iterations))[0])
        return macs, macs

    @property
    def evaluated_split(self) -> str | None:
        """The split of the run's stored evaluation ("test", or "val": held-out images standing in for a test
        split), None without one."""
        if not self._evaluation:
            return None
        split = self._evaluation.get("split")
        return split if isinstance(split, str) and split else "test"

    @property
    def halting_tradeoff(self) -> dict[str, Any] | None:
        """Whether the halting beat fixed iteration counts in the run's stored evaluation (``tradeoff``)."""
        from .tradeoff import halting_tradeoff

        return halting_tradeoff(self._evaluation) if self._evaluation else None

    @property
    def mean_test_macs(self) -> float | None:
        """Mean MACs per test image at the current mode and threshold, from the stored evaluation.

        Exact at the evaluated setting, at the sweep's thresholds and fixed settings; interpolated
        between sweep thresholds; None when there is no evaluation or the setting is outside it.
        """
        evaluation = self._evaluation or {}
        mean = (evaluation.get("macs") or {}).get("mean")
        sweep = evaluation.get("sweep") or {}
        evaluated_here = evaluation.get("mode") == self.mode and (
            not self.halts or _same(evaluation.get("threshold"), self.threshold)
        )
        if evaluated_here and mean is not None:
            return float(mean)
        if not self.halts:
            fixed = {tuple(p["iterations"]): float(p["mean_macs"]) for p in sweep.get("fixed", [])}
            return fixed.get(self._fixed_setting())
        curve = sorted((p["threshold"], p["mean_macs"]) for p in sweep.get("threshold", []))
        if len(curve) < 2 or not curve[0][0] <= self.threshold <= curve[-1][0]:
            return None
        return float(np.interp(self.threshold, [t for t, _ in curve], [m for _, m in curve]))

    # ------------------------------------------------------------------ predicting
    def predict(self, images: Sequence[Tensor | Image.Image], sources: Sequence[str] | None = None,
                notes: Sequence[list[str]] | None = None) -> list[Prediction]:
        """Classify images (uint8 tensors [C, H, W] as ``load_image`` gives, or PIL images).

        ``notes`` (one list per image) carries what was done to a tensor before; notes about
        adapting PIL images and tensors here are added to it.
        """
        names = list(sources) if sources is not None else [f"image {i + 1}" for i in range(len(images))]
        image_notes = [list(n) for n in notes] if notes is not None else [[] for _ in names]
        tensors = [self._as_tensor(image, name, n) for image, name, n in zip(images, names, image_notes)]
        predictions: list[Prediction] = []
        for start in range(0, len(tensors), self.batch_size):
            batch = torch.stack(tensors[start : start + self.batch_size]).to(self.device)
            output = split_forward.forward(self.model, normalize(batch, self.checkpoint.mean, self.checkpoint.std))
            explained = self._explain(output, names[start : start + self.batch_size])
            for prediction, n in zip(explained, image_notes[start : start + self.batch_size]):
                prediction.notes = n
            predictions.extend(explained)
        return predictions

    def predict_files(self, paths: Sequence[str | Path]) -> list[Prediction | PredictionFailure]:
        """Classify image files; an unreadable file becomes a ``PredictionFailure``, the rest still run."""
        cfg = self.model_config
        results: list[Prediction | PredictionFailure | None] = []
        good: list[tuple[int, Tensor, str, list[str]]] = []
        for path in paths:
            source, notes = str(path), []
            try:
                tensor = load_image(path, in_channels=cfg.in_channels, image_size=cfg.image_size, notes=notes)
            except ImageError as exc:
                results.append(PredictionFailure(source, str(exc)))
                continue
            good.append((len(results), tensor, source, notes))
            results.append(None)
        if good:
            predictions = self.predict([t for _, t, _, _ in good], sources=[s for _, _, s, _ in good],
                                       notes=[n for _, _, _, n in good])
            for (slot, _, _, _), prediction in zip(good, predictions):
                results[slot] = prediction
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ helpers
    def _fixed_setting(self) -> tuple[int, ...] | None:
        """Iterations per block in ``max`` / ``fixed:N`` mode (None when halting decides)."""
        return fixed_setting(self.mode, self.model.caps)

    def _as_tensor(self, image: Tensor | Image.Image, name: str, notes: list[str]) -> Tensor:
        cfg = self.model_config
        if isinstance(image, Image.Image):
            return load_image(image, in_channels=cfg.in_channels, image_size=cfg.image_size, notes=notes)
        if not isinstance(image, Tensor) or image.dim() != 3:
            raise ImageError(f"cannot classify {name}: expected an image tensor [C, H, W]")
        if image.shape[0] != cfg.in_channels:
            raise ImageError(f"cannot classify {name}: it has {image.shape[0]} channels, the model takes {cfg.in_channels}")
        if image.dtype != torch.uint8:  # float images are taken as [0, 1]
            image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
        if tuple(image.shape[1:]) != (cfg.image_size, cfg.image_size):
            notes.append(f"resized from {image.shape[2]}×{image.shape[1]} to {cfg.image_size}×{cfg.image_size}")
            image = resize_images(image[None], cfg.image_size)[0]
        return image

    def _explain(self, output: Any, sources: Sequence[str]) -> list[Prediction]:
        cfg = self.model_config
        probabilities = torch.softmax(output.logits.float(), dim=1).cpu()
        top_p, top_i = probabilities.topk(min(TOP_K, probabilities.shape[1]), dim=1)
        iterations = output.iterations.cpu().tolist()
        scores = [h.cpu() for h in output.halting]
        macs = output.macs.cpu().tolist()
        # what this mode could run: the halting's own limit (``halting_caps``) when it decides
        caps = list(self.model.adaptive_caps if self.halts else self.model.caps)
        macs_range = self.macs_range
        threshold = self.threshold if self.halts else None
        predictions = []
        for i, source in enumerate(sources):
            halting = [[float(s) for s in block[i] if not math.isnan(float(s))] for block in scores]
            stories = [halting_story(block, cfg.halting, threshold) for block in halting]
            predictions.append(
                Prediction(
                    source=source,
                    top=[(self.classes[c], float(p)) for p, c in zip(top_p[i].tolist(), top_i[i].tolist())],
                    iterations=[int(n) for n in iterations[i]],
                    caps=caps,
                    halting=halting,
                    cumulative=[cumulative for cumulative, _ in stories],
                    threshold=threshold,
                    macs=int(macs[i]),
                    macs_range=macs_range,
                    mode=cfg.mode,
                    reached=[reached for _, reached in stories],
                )
            )
        return predictions


def _same(a: Any, b: float) -> bool:
    return isinstance(a, (int, float)) and math.isclose(a, b, abs_tol=1e-9)


def _stored_evaluation(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """The run's ``eval.json``: beside the checkpoint, or one folder up (``<run>/checkpoints/x.pt``).

    Read through ``read_evaluation``: a file it refuses (damaged, the wrong shape) is no evaluation."""
    from .evaluation_file import read_evaluation

    folder = checkpoint.path.parent
    for candidate in (folder / "eval.json", folder.parent / "eval.json"):
        if candidate.is_file():
            try:
                value = read_evaluation(candidate)
            except (OSError, ValueError):
                return None
            return value if isinstance(value.get("macs"), dict) else None
    return None
