"""Shapes drawn on the fly: an instant, file-free dataset whose images range from easy to hard.

Each image gets its own hardness ``h`` in [0, difficulty]; ``h`` shrinks the shape and lowers its
contrast, and adds clutter strokes, an occluding patch and pixel noise. An adaptive network should
spend more iterations on high-``h`` images, which is what the demo shows (the test split's ``h`` is
kept in ``bundle.extras["difficulty"]``).

Everything is vectorised over the batch: every shape is a signed distance function of pixel
coordinates, turned into anti-aliased coverage, so 2,000 28 px images take well under a second.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from ..config import DataConfig
from .base import DATASETS, DatasetProvider, InputShape
from .bundle import DatasetBundle, ImageTensors

STROKE = 0.16  # half-width of line strokes, in units of the shape's half-size
MAX_CLUTTER = 5  # most distracting strokes in one image (at hardness 1)


def _box(u: Tensor, v: Tensor, half: float = 0.85) -> Tensor:
    return torch.maximum(u.abs(), v.abs()) - half


def _stripes(across: Tensor, u: Tensor, v: Tensor, period: float = 0.5) -> Tensor:
    t = across / period
    to_centre = (t - t.round()).abs() * period
    return torch.maximum(to_centre - period / 4, _box(u, v))


def _dot_grid(u: Tensor, v: Tensor, spacing: float = 0.6) -> Tensor:
    du = u - (u / spacing).round().clamp(-1, 1) * spacing
    dv = v - (v / spacing).round().clamp(-1, 1) * spacing
    return torch.sqrt(du.square() + dv.square()) - 0.2


def _triangle(u: Tensor, v: Tensor) -> Tensor:
    # Apex up (v grows downwards): the half-width grows linearly from the apex to the base.
    half_width = 0.9 * (v + 0.8) / 1.6
    return torch.maximum(torch.maximum(u.abs() - half_width, v - 0.8), -0.8 - v) * 0.85


def _diagonal(u: Tensor, v: Tensor, direction: Tensor) -> Tensor:
    return torch.maximum((u - direction * v).abs() / math.sqrt(2) - STROKE, _box(u, v, 0.8))


# Signed distance (negative inside) of each class, in the shape's own coordinates: u right, v down,
# the shape spanning about [-1, 1]. ``d`` is a per-image random sign for shapes with two mirror forms.
SHAPES: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "circle": lambda u, v, d: torch.sqrt(u.square() + v.square()) - 0.85,
    "square": lambda u, v, d: _box(u, v, 0.75),
    "triangle": lambda u, v, d: _triangle(u, v),
    "cross": lambda u, v, d: torch.maximum((u.abs() - v.abs()).abs() / math.sqrt(2) - STROKE, _box(u, v, 0.8)),
    "horizontal stripes": lambda u, v, d: _stripes(v, u, v),
    "vertical stripes": lambda u, v, d: _stripes(u, u, v),
    "ring": lambda u, v, d: (torch.sqrt(u.square() + v.square()) - 0.75).abs() - STROKE,
    "diagonal": _diagonal,  # either direction, so the class survives a horizontal flip
    "dot grid": lambda u, v, d: _dot_grid(u, v),
    "plus": lambda u, v, d: torch.minimum(
        torch.maximum(u.abs() - STROKE, v.abs() - 0.85), torch.maximum(v.abs() - STROKE, u.abs() - 0.85)
    ),
}
CLASSES = list(SHAPES)


def draw_shapes(
    labels: Tensor, *, image_size: int, channels: int, difficulty: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Images uint8 [N, C, S, S] of the shapes named by ``labels``, and each image's hardness in [0, 1]."""
    n, s = len(labels), image_size

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator)

    hard = difficulty * rand(n)
    h = hard.view(n, 1, 1)
    # Pixel centres in [-1, 1]; the shape has half-size ``r`` and centre (cx, cy), kept inside the frame.
    r = (0.5 + 0.25 * rand(n)) * (1 - 0.5 * hard * rand(n))
    cx, cy = ((rand(n) * 2 - 1) * (1 - r) * 0.9 for _ in range(2))
    grid = (torch.arange(s) + 0.5) / s * 2 - 1
    x, y = grid.view(1, 1, s), grid.view(1, s, 1)
    u = (x - cx.view(n, 1, 1)) / r.view(n, 1, 1)
    v = (y - cy.view(n, 1, 1)) / r.view(n, 1, 1)
    direction = torch.where(rand(n) < 0.5, -1.0, 1.0).view(n, 1, 1)

    distance = torch.empty(n, s, s)
    for label, shape in enumerate(SHAPES.values()):
        idx = torch.nonzero(labels == label).flatten()
        if len(idx):
            distance[idx] = shape(u[idx].expand(-1, s, s), v[idx].expand(-1, s, s), direction[idx])
    pixels_per_unit = (r * s / 2).view(n, 1, 1)
    shape_cover = (0.5 - distance * pixels_per_unit).clamp(0, 1)  # anti-aliased edge, one pixel wide

    # Clutter: short strokes anywhere, more of them on harder images (drawn only where present).
    count = (MAX_CLUTTER * hard * rand(n)).round()
    owner = torch.repeat_interleave(torch.arange(n), count.long())
    start = rand(len(owner), 2) * 2 - 1
    angle = rand(len(owner)) * math.pi
    step = torch.stack((angle.cos(), angle.sin()), -1) * (0.2 + 0.4 * rand(len(owner), 1))
    stroke_cover = (0.5 - (_segment_distance(x, y, start, step) - 0.05) * s / 2).clamp(0, 1)
    clutter_cover = torch.zeros(n, s * s).scatter_reduce_(
        0, owner.view(-1, 1).expand(-1, s * s), stroke_cover.view(-1, s * s), "amax"
    ).view(n, s, s)

    # Occlusion: a patch of background over part of the shape.
    occluded = rand(n) < 0.8 * hard
    ox, oy = (c + (rand(n) * 2 - 1) * r for c in (cx, cy))
    half_w, half_h = ((0.15 + 0.25 * rand(n)) * r * (0.5 + hard) for _ in range(2))
    inside_x = (x - ox.view(n, 1, 1)).abs() < half_w.view(n, 1, 1)
    inside_y = (y - oy.view(n, 1, 1)).abs() < half_h.view(n, 1, 1)
    patch = inside_x & inside_y & occluded.view(n, 1, 1)

    # Colours: bright shape on a dark background, the contrast shrinking with hardness.
    def tint() -> Tensor:  # a random colour per image; plain grey for one channel
        return 0.4 + 0.6 * rand(n, channels) if channels > 1 else torch.ones(n, 1)

    background = (0.35 * hard * rand(n)).view(n, 1) * tint()
    foreground = (1 - 0.5 * hard * rand(n)).view(n, 1) * tint()
    clutter_colour = foreground * (0.5 + 0.5 * rand(n, 1))
    bg, fg, cc = (c.view(n, channels, 1, 1) for c in (background, foreground, clutter_colour))

    img = bg + (fg - bg) * shape_cover.unsqueeze(1)
    img = img + (cc - img) * clutter_cover.unsqueeze(1)
    img = torch.where(patch.unsqueeze(1), bg, img)
    noise = torch.randn((n, channels, s, s), generator=generator) * (0.02 + 0.3 * h).unsqueeze(1)
    images = ((img + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return images, hard


def _segment_distance(x: Tensor, y: Tensor, start: Tensor, step: Tensor) -> Tensor:
    """Distance from every pixel to each stroke ``start + t * step``, t in [0, 1]: [K, S, S]."""
    px = x - start[:, 0, None, None]
    py = y - start[:, 1, None, None]
    sx, sy = step[:, 0, None, None], step[:, 1, None, None]
    t = ((px * sx + py * sy) / (sx.square() + sy.square())).clamp(0, 1)
    return torch.sqrt((px - t * sx).square() + (py - t * sy).square())


def balanced_labels(n: int, num_classes: int, generator: torch.Generator) -> Tensor:
    """Each class equally often (to within one), in random order."""
    return (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]


class SyntheticProvider(DatasetProvider):
    name = "synthetic"
    label = "Synthetic shapes"
    downloadable = False
    description = (
        "10 classes of shapes and patterns drawn on the fly (no files), with a difficulty knob that adds "
        "noise, clutter, occlusion and scale changes: per-image compute should follow per-image difficulty."
    )
    options = {"difficulty": 0.5, "train_size": 2000, "test_size": 500, "image_size": 28, "channels": 1}

    def available_offline(self, root: str | None) -> tuple[bool, str]:
        return True, "generated on the fly, no files needed"

    def load(self, cfg: DataConfig, *, seed: int) -> DatasetBundle:
        opts = self.read_options(cfg)
        splits, hardness = {}, {}
        for offset, split in enumerate(("train", "test")):
            # Separate streams per split: changing test_size never changes the training images.
            gen = torch.Generator().manual_seed(seed * 2 + offset)
            labels = balanced_labels(opts[f"{split}_size"], len(CLASSES), gen)
            images, hardness[split] = draw_shapes(
                labels, image_size=opts["image_size"], channels=opts["channels"],
                difficulty=opts["difficulty"], generator=gen,
            )
            splits[split] = ImageTensors(images, labels)
        return DatasetBundle.from_splits(
            self.name, CLASSES, splits["train"], splits["test"], val_fraction=cfg.val_fraction,
            val_split=cfg.val_split, seed=seed, default_augment=self.default_augment,
            extras={"difficulty": hardness["test"]},
            notes=[f"{opts['train_size']} train / {opts['test_size']} test shapes, difficulty {opts['difficulty']:g}"],
        )

    def input_shape(self, cfg: DataConfig | None = None) -> InputShape:
        """From the options (``ValueError`` if they are invalid): the images are drawn to order."""
        opts = self.read_options(cfg) if cfg is not None else dict(self.options)
        return InputShape(channels=opts["channels"], size=opts["image_size"], classes=len(CLASSES))

    def read_options(self, cfg: DataConfig) -> dict[str, Any]:
        opts = {**self.options, **({"image_size": cfg.image_size} if cfg.image_size else {}), **cfg.options}
        difficulty = opts["difficulty"]
        if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float)) or not 0 <= difficulty <= 1:
            raise ValueError(f"data.options.difficulty: must be a number in [0, 1], got {difficulty!r}")
        for key, low in (("train_size", 10), ("test_size", 1), ("image_size", 8)):
            value = opts[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"data.options.{key}: must be an integer >= {low}, got {value!r}")
        if opts["channels"] not in (1, 3) or isinstance(opts["channels"], bool):
            raise ValueError(f"data.options.channels: must be 1 or 3, got {opts['channels']!r}")
        opts["difficulty"] = float(difficulty)
        return opts


DATASETS.register("synthetic", SyntheticProvider())
