"""How an evaluation's images are named wherever it is shown (Study, Use tab, Train log, CLI).

eval.json records ``split`` "test", or "val" for a dataset without test images of its own (an image folder
without test/): those validation images also chose the model, so its accuracy is no test accuracy. Every
place that names the images asks here, so none calls a held-out evaluation a test. Pure Python.
"""
from __future__ import annotations

from typing import Any

#: The word for eval.json's split "val": images held out of training that also chose the model.
HELD_OUT = "held-out"


def split_word(split: Any) -> str:
    """"held-out" for the split "val", else the split's own name ("test", also for an older eval.json
    without ``split``)."""
    if split == "val":
        return HELD_OUT
    return split if isinstance(split, str) and split else "test"


def split_named(split: Any) -> str:
    """The split for a log line: "held-out images (val)" for "val", else its name ("test")."""
    return f"{HELD_OUT} images (val)" if split == "val" else split_word(split)


def epoch_split_word(split: Any) -> str:
    """The images an epoch's validation line names: "test" where the run holds none out (``val_fraction``
    0: progress is measured on the test images), else "val". One word for the console and train.log."""
    return "test" if split == "test" else "val"


def evaluation_word(evaluation: dict[str, Any] | None) -> str:
    """``split_word`` of an evaluation (eval.json's contents, or an ``evaluated`` event)."""
    return split_word((evaluation or {}).get("split"))

