"""Reading ``eval.json``: the one place that says whether a file holds an evaluation the app can show.

``evaluate`` writes the file; views, comparisons and verdicts read it. A damaged or hand-edited file
("macs": [1, 2, 3], a sweep point without its accuracy, "top1": NaN) must not reach them half-valid:
each would fail in its own way, some after part of the screen was already drawn. ``read_evaluation``
checks the shape once, here, and refuses the file with what is wrong.

Older evaluations lack keys that later versions added (``sweep``, ``adaptivity``, ``paired``, ...):
only ``top1`` is required; every other key, where present and not null, must have the shape
``evaluate`` writes. Unknown keys are left alone. Pure Python: no torch.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from . import runs

#: How many problems a refusal names (a file of junk has hundreds).
MAX_PROBLEMS_SAID = 3

# A check takes (value, where) and returns its problems, each a phrase naming ``where``.
Check = Callable[[Any, str], list[str]]


def read_evaluation(path: str | Path, max_bytes: int | None = None) -> dict[str, Any]:
    """The evaluation in ``path``; ``OSError`` when it cannot be opened, ``ValueError`` saying what is wrong
    when it is no evaluation (not JSON, over ``max_bytes`` (``runs.MAX_JSON_FILE_BYTES``): damage, not read
    whole; or the wrong shape: ``evaluation_problems``)."""
    limit = runs.MAX_JSON_FILE_BYTES if max_bytes is None else max_bytes
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise ValueError(f"it is {_bytes(size)}, too big for an evaluation")
        raw = fh.read(size + 1)  # +1: sees a file that grew since
    if len(raw) > limit:
        raise ValueError(f"it is over {_bytes(limit)}, too big for an evaluation")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("it is not text") from None
    if not text.strip():
        raise ValueError("it is empty")
    try:
        evaluation = json.loads(text)
    except json.JSONDecodeError as error:  # cut short by a crash or a full disk, mostly
        raise ValueError(f"it is not valid JSON: {error.msg} at line {error.lineno}") from None
    problems = evaluation_problems(evaluation)
    if problems:
        said = "; ".join(problems[:MAX_PROBLEMS_SAID])
        more = len(problems) - MAX_PROBLEMS_SAID
        raise ValueError(said + (f"; and {more} more problem{'s' if more > 1 else ''}" if more > 0 else ""))
    return evaluation


def evaluation_problems(evaluation: Any) -> list[str]:
    """What is wrong with ``evaluation`` as the content of eval.json, in words ([] when nothing)."""
    if not isinstance(evaluation, dict):
        return [f"it holds {_kind(evaluation)}, not an evaluation"]
    if evaluation.get("top1") is None:
        return ["it holds no top-1 accuracy"]
    problems = _record(EVALUATION)(evaluation, "")
    classes = evaluation.get("classes")
    confusion = evaluation.get("confusion")
    if not problems and isinstance(classes, list) and isinstance(confusion, list) and len(confusion) != len(classes):
        problems.append(f"confusion has {len(confusion)} rows for {len(classes)} classes")
    return problems


# ------------------------------------------------------------------------------------------ checks
def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "NaN" if isinstance(value, float) and math.isnan(value) else (
            "an infinite number" if isinstance(value, float) and math.isinf(value) else "a number")
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _number(low: float | None = None, high: float | None = None, integer: bool = False) -> Check:
    """A finite number (an integer with ``integer``) in [low, high]; never true/false or text."""
    def check(value: Any, where: str) -> list[str]:
        wanted = "a whole number" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return [f"{where} is {_kind(value)}, not {wanted}"]
        if integer and value != int(value):
            return [f"{where} is {value}, not {wanted}"]
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low:g} and {high:g}" if low is not None and high is not None else f"at least {low:g}"
            return [f"{where} is {value:g}, not {bounds}"]
        return []
    return check


NUMBER, FRACTION, COUNT = _number(), _number(0, 1), _number(0, integer=True)
POSITIVE_COUNT = _number(1, integer=True)


def _text(value: Any, where: str) -> list[str]:
    return [] if isinstance(value, str) else [f"{where} is {_kind(value)}, not text"]


def _name(value: Any, where: str) -> list[str]:
    """A class name: text, or a number in files written before class names became text."""
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                  and math.isfinite(value)):
        return []
    return [f"{where} is {_kind(value)}, not text"]


def _flag(value: Any, where: str) -> list[str]:
    return [] if isinstance(value, bool) else [f"{where} is {_kind(value)}, not true or false"]


def _optional(check: Check) -> Check:
    """``check``, or null."""
    return lambda value, where: [] if value is None else check(value, where)


def _list(item: Check, square: bool = False) -> Check:
    """A list whose every item passes ``item``; with ``square``, a list of n lists of n items each."""
    def check(value: Any, where: str) -> list[str]:
        if not isinstance(value, list):
            return [f"{where} is {_kind(value)}, not a list"]
        problems = [p for i, v in enumerate(value) for p in item(v, f"{where}[{i}]")]
        if square and not problems:
            ragged = [i for i, row in enumerate(value) if len(row) != len(value)]
            if ragged:
                problems.append(f"{where} is not square: row {ragged[0]} has {len(value[ragged[0]])} entries "
                                f"for {len(value)} rows")
        return problems
    return check


def _mapping(item: Check) -> Check:
    """An object whose every value passes ``item`` (keys are names: per class)."""
    def check(value: Any, where: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{where} is {_kind(value)}, not an object"]
        return [p for k, v in value.items() for p in item(v, f"{where}[{json.dumps(k)}]")]
    return check


def _record(fields: dict[str, tuple[Check, bool]]) -> Check:
    """An object with these keys, each (check, required); a key not required may be missing or null."""
    def check(value: Any, where: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{where} is {_kind(value)}, not an object"]
        problems = []
        for key, (item, required) in fields.items():
            inside = f"{where}.{key}" if where else key
            if value.get(key) is None:
                if required:
                    problems.append(f"{where or 'it'} has no {key}")
                continue
            problems.extend(item(value[key], inside))
        return problems
    return check


def _fields(required: tuple[str, ...] = (), **checks: Check) -> Check:
    return _record({key: (check, key in required) for key, check in checks.items()})


ITERATIONS_VECTOR = _list(POSITIVE_COUNT)
CURVE_POINT = dict(mean_macs=NUMBER, top1=FRACTION)
IMAGE = _fields(("index",), index=COUNT, macs=NUMBER, label=_name, prediction=_name, correct=_flag,
                iterations=ITERATIONS_VECTOR)
EVALUATION = {key: (check, key == "top1") for key, check in dict(
    top1=FRACTION,
    top5=FRACTION,
    images=COUNT,
    split=_text,
    split_note=_text,
    checkpoint=_text,
    architecture=_text,
    mode=_text,
    full_depth_note=_text,
    halting=_text,
    threshold=NUMBER,
    halting_calibrated=_flag,
    stopped=_flag,
    classes=_list(_name),
    caps=ITERATIONS_VECTOR,
    halting_caps=ITERATIONS_VECTOR,
    per_class=_mapping(_optional(FRACTION)),
    confusion=_list(_list(COUNT), square=True),
    macs=_fields(("mean",), mean=NUMBER, min=NUMBER, p10=NUMBER, p50=NUMBER, p90=NUMBER, max=NUMBER,
                 max_over_min=NUMBER, p90_over_p10=NUMBER),
    macs_range=_fields(min=NUMBER, max=NUMBER),
    full_depth=_fields(top1=FRACTION, mean_macs=NUMBER),
    iterations=_fields(caps=ITERATIONS_VECTOR, histogram=_list(_list(COUNT)), mean=_list(NUMBER),
                       share_at_one=_list(FRACTION), share_at_cap=_list(FRACTION)),
    easiest=_list(IMAGE),
    hardest=_list(IMAGE),
    adaptivity=_fields(
        spearman_macs_vs_loss=_number(-1, 1), macs_wrong=NUMBER, macs_right=NUMBER,
        per_class_macs=_mapping(_optional(NUMBER)), distinct_iteration_vectors=COUNT,
        collapse=_fields(alarm=_flag, reasons=_list(_text), p90_over_p10=NUMBER, top_vector=ITERATIONS_VECTOR,
                         top_vector_share=FRACTION),
        random_allocation=_fields(top1=FRACTION, reason=_text, adaptive_minus_random=_number(-1, 1),
                                  mean_macs=NUMBER, settings=COUNT, seed=NUMBER,
                                  paired=_fields(("only_random_right", "only_adaptive_right"),
                                                 only_random_right=COUNT, only_adaptive_right=COUNT)),
    ),
    sweep=_fields(
        fixed=_list(_fields(("iterations", "mean_macs", "top1"), iterations=ITERATIONS_VECTOR, **CURVE_POINT,
                            paired=_fields(("only_fixed_right", "only_adaptive_right"),
                                           only_fixed_right=COUNT, only_adaptive_right=COUNT))),
        threshold=_list(_fields(("mean_macs", "top1"), threshold=NUMBER, **CURVE_POINT,
                                evaluated=_flag)),
    ),
).items()}


def _bytes(size: int) -> str:
    for factor, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"
