"""Every problem of a run config at once, in the config's own words (or the form's, where a field shows
its value in another form), keyed by field.

``RunConfig.validate()`` stops at the first bad field. To show each bad field its message, the
checker validates the data, model and run sections in turn and, after each error, puts the
default value into that field and validates again. Call only once the engine is loaded.
"""
from __future__ import annotations

import copy
import math
from typing import Any

MAX_ERRORS = 40


def split_error(error: Exception) -> tuple[str, str]:
    """``ValueError("width: must be ...")`` -> ("width", "must be ...")."""
    text = str(error)
    field, sep, message = text.partition(": ")
    if not sep or " " in field:
        return "", text
    return field, message


def collect_errors(values: dict[str, Any]) -> dict[str, str]:
    """{field key: message} for a RunConfig dict; keys are ``data.X``, ``model.X`` or the run's ``X``."""
    from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig

    defaults = RunConfig().to_dict()
    values = copy.deepcopy(values)
    errors: dict[str, str] = {}
    sections = (
        ("data", lambda: DataConfig.from_dict(values["data"]).validate(), "data."),
        ("model", lambda: ModelConfig.from_dict(values["model"]).validate(), "model."),
        ("run", lambda: RunConfig.from_dict(values).validate(), ""),
    )
    for section, check, prefix in sections:
        for _ in range(MAX_ERRORS):
            try:
                check()
                break
            except (ValueError, TypeError) as error:
                field, message = split_error(error)
                key = _key(field, prefix)
                if not key or key in errors:
                    errors[key or section] = message
                    return errors  # cannot repair this one: report what we have
                errors[key] = _in_form_words(key, message, values)
                if not _reset(values, defaults, key):
                    return errors
                if key == "model.iterations":  # without caps the depth counts: the file's unused depth was blamed
                    _reset(values, defaults, "model.depth")  # under the caps' row in their place (QA)
    return errors


def _in_form_words(key: str, message: str, values: dict[str, Any]) -> str:
    """The config's ``message`` about ``key``, or the form's own where the field shows the value in another
    form: custom caps are typed as "1, 2, 2, 1", not a tuple."""
    if key == "model.iterations":
        from .model_panel import caps_problem

        return caps_problem(values.get("model", {}).get("iterations")) or message
    if key == "data.val_fraction":
        return _fraction_in_percent(values.get("data", {}).get("val_fraction")) or message
    return message


def _fraction_in_percent(fraction: Any) -> str | None:
    """The validation split's problem in the percent its box shows (a fraction of 1.5 shows as a stand-in,
    99 %: "must be in [0, 1), got 1.5" beside it read as a contradiction); None where it is no number."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
        return None
    said = f"the file says {fraction * 100:g} %"
    if fraction >= 1:
        return f"must be below 100 %; {said}"
    return f"must be 0 % or more; {said}" if fraction < 0 else None


def _key(field: str, prefix: str) -> str:
    if not field:
        return ""
    if field.startswith(("data.", "model.", "run.")):
        return field.removeprefix("run.")
    return prefix + field


def _reset(values: dict[str, Any], defaults: dict[str, Any], key: str) -> bool:
    """Put the default back into ``key`` (e.g. ``model.width``); False if there is no such field."""
    *parents, leaf = key.split(".")
    target, source = values, defaults
    for part in parents:
        if not isinstance(target.get(part), dict) or not isinstance(source.get(part), dict):
            return False
        target, source = target[part], source[part]
    if leaf not in source:
        if leaf in target:  # unknown setting: drop it
            del target[leaf]
            return True
        return False
    target[leaf] = copy.deepcopy(source[leaf])
    return True
