"""How numbers read in the views: MACs, parameter counts, percentages, ratios."""
from __future__ import annotations

import math
from typing import Any, Sequence

from iamnn_studio import numbers


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def si(value: Any, digits: int = 3) -> str:
    """1234567 -> "1.23 M"; 1000000 -> "1.00 M"; 950 -> "950"; None -> "–"."""
    text = numbers.si(value, digits)
    return "–" if text is None else text


def macs(value: Any) -> str:
    """Multiply-accumulates, e.g. "3.9 M MACs"."""
    text = si(value, digits=2 if _finite(value) is not None and abs(float(value)) < 1e4 else 3)
    return f"{text} MACs" if text != "–" else "–"


def macs_range(low: Any, high: Any) -> str:
    return f"{si(low)} – {si(high)}"


def params(value: Any) -> str:
    return si(value)


def percent(value: Any, digits: int = 1) -> str:
    """A fraction (0-1) as "87.3 %"."""
    number = _finite(value)
    return "–" if number is None else f"{100 * number:.{digits}f} %"


def ratio(value: Any, digits: int = 2) -> str:
    """"0.62×"."""
    number = _finite(value)
    return "–" if number is None else f"{number:.{digits}f}×"


def caps(values: Sequence[int], word: str = "caps") -> str:
    """(2, 3, 4, 2) -> "caps 2 · 3 · 4 · 2": a model's iteration caps per block as the Train tab writes them
    (``word`` "units" for a ResNet's residual units)."""
    return f"{word} " + " · ".join(str(value) for value in values)


def rough_duration(seconds: float) -> str:
    """An estimate as people say it: "under a minute", "about 15 min", "about 2 h 30 min"."""
    if seconds < 60:
        return "under a minute"
    minutes = seconds / 60
    if minutes < 10:
        return f"about {round(minutes)} min"
    if minutes < 60:
        return f"about {round(minutes / 5) * 5} min"
    hours, rest = divmod(round(minutes / 10) * 10, 60)
    return f"about {hours} h" + (f" {rest:02d} min" if rest else "")
