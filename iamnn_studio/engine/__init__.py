"""The IamNN engine: model, halting, compute accounting, data, training, inference, export.

Never imports Qt: the GUI and the CLI are two faces over this API. Names that need torch are
imported on first use, so ``from iamnn_studio.engine import RunConfig`` stays instant.
"""
from importlib import import_module

from .config import DEPTH_ITERATIONS, DataConfig, ModelConfig, RunConfig

_LAZY = {
    "IamNN": ".model",
    "ModelOutput": ".model",
    "build_model": ".model",
    "build_baseline": ".baseline",
}

__all__ = ["DEPTH_ITERATIONS", "DataConfig", "ModelConfig", "RunConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
