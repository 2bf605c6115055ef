"""Pixel formats: what any PIL image becomes before a model (or a person) looks at it.

Torch-free (PIL and numpy only), so the GUI's thumbnails can show an image exactly as the model
reads it without importing torch.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


#: PIL's 16-bit greyscale modes: always scaled from 0-65535.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def to_8_bit(image: Image.Image, *, peak: float | None = None) -> Image.Image:
    """16-bit and float greyscale to 8-bit L, keeping the full range (PIL's convert would clip).

    ``peak``: the largest value of the image this one was shrunk from (``peak_value``), so that a thumbnail
    is scaled as its full-size original, whose brightest pixels the shrinking may have averaged away.
    """
    if image.mode in (*SIXTEEN_BIT_MODES, "I"):
        values = np.asarray(image, dtype=np.float64)
        high = values.max(initial=0) if peak is None else peak
        top = 65535.0 if high > 255 or image.mode in SIXTEEN_BIT_MODES else 255.0
        return Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        high = values.max(initial=0) if peak is None else peak
        scale = 255.0 if high <= 1.0 else 1.0  # [0, 1] floats or [0, 255] floats
        return Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8), mode="L")
    return image


def peak_value(image: Image.Image) -> float | None:
    """The largest value ``to_8_bit`` finds in a 16-bit, integer or float greyscale ``image`` (NaN read as 0),
    without a copy of its pixels (a 200 MP scan is GBs as float64); None for other modes."""
    if image.mode not in (*SIXTEEN_BIT_MODES, "I", "F"):
        return None
    high = image.getextrema()[1]
    if high != high:  # NaN: PIL starts from the first pixel, a NaN, and compares nothing with it
        return float(np.nan_to_num(np.asarray(image, dtype=np.float32)).max(initial=0))
    return max(float(high), 0.0)
