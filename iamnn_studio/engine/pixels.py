"""Pixel formats: what any PIL image becomes before a model (or a person) looks at it.

Torch-free (PIL and numpy only), so the GUI's thumbnails can show an image exactly as the model
reads it without importing torch.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale to 8-bit L, keeping the full range (PIL's convert would clip)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0
        return Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0  # [0, 1] floats or [0, 255] floats
        return Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8), mode="L")
    return image
