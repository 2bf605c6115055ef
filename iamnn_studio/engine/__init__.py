"""The IamNN engine: model, halting, compute accounting, data, training, inference, export.

Never imports Qt: the GUI and the CLI are two faces over this API.
"""
from .config import DEPTH_ITERATIONS, DataConfig, ModelConfig, RunConfig
from .model import IamNN, ModelOutput, build_model
from .baseline import build_baseline

__all__ = [
    "DEPTH_ITERATIONS", "DataConfig", "ModelConfig", "RunConfig",
    "IamNN", "ModelOutput", "build_model", "build_baseline",
]
