"""How counts read wherever they are shown (CLI, app, logs): "1.00 M", "950", "12.5 k"."""
from __future__ import annotations

import math
from typing import Any

SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: Any, digits: int = 3) -> str | None:
    """``value`` with an SI prefix and ``digits`` significant digits, trailing zeros kept so that
    numbers in one list read alike (1,003,776 -> "1.00 M" next to "2.12 M", not "1 M");
    None for what is not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    for factor, prefix in SI_PREFIXES:
        if abs(number) >= factor:
            return f"{f'{number / factor:#.{digits}g}'.rstrip('.')} {prefix}"
    return f"{number:.{digits}g}"
