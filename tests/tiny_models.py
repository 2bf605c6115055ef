"""Tiny models and made-up images whose halting varies from image to image, for engine tests.

An untrained IamNN halts every image alike (its halting heads see near-identical features), so
these helpers fit the batchnorm statistics to a set of images of different brightness and give
the halting heads large random output weights: the halting scores, and so the iterations and
MACs, then differ per image and move with the threshold.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from torch import nn

from iamnn_studio.engine.checkpoint import save_checkpoint
from iamnn_studio.engine.config import ModelConfig
from iamnn_studio.engine.data.augment import normalize
from iamnn_studio.engine.data.bundle import ImageTensors
from iamnn_studio.engine.model import build_model

CLASSES = ["dark", "grey", "light"]
MEAN, STD = (0.5,), (0.25,)


def tiny_config(**overrides) -> ModelConfig:
    settings = dict(iterations=(1, 2, 3, 2), width=4, image_size=16, in_channels=1, num_classes=3, threshold=0.7)
    settings.update(overrides)
    return ModelConfig(**settings)


def varied_images(count: int = 96, size: int = 16, channels: int = 1, seed: int = 0) -> ImageTensors:
    """Noisy images on a brightness ramp, labelled dark / grey / light by their brightness."""
    generator = torch.Generator().manual_seed(seed)
    level = torch.linspace(0, 255, count)
    noise = torch.randn(count, channels, size, size, generator=generator) * 30
    images = (level.view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8)
    labels = (torch.arange(count) * 3 // count).long()
    return ImageTensors(images, labels)


#: Fitted models by (config, seed), with the global RNG state each fitting left: a fitting takes 1-3 s on
#: a slow CPU, and the engine tests ask for the same few models dozens of times.
_FITTED: dict[tuple[str, int], tuple[nn.Module, torch.Tensor]] = {}


def varied_halting_model(config: ModelConfig | None = None, seed: int = 0) -> nn.Module:
    """A model in eval mode whose iterations differ between ``varied_images`` and with the threshold.

    A copy of the one fitted before for an equal config and seed, where there is one: as if fitted again
    (the same weights and statistics, ``config`` itself in the model, the global RNG left as a fitting leaves it).
    """
    config = config or tiny_config()
    key = (repr(config), seed)
    if key in _FITTED:
        fitted, rng_state = _FITTED[key]
        for field in dataclasses.fields(config):  # as build_model's validate() and set_threshold() leave it
            setattr(config, field.name, copy.deepcopy(getattr(fitted.config, field.name)))
        torch.set_rng_state(rng_state)
        return copy.deepcopy(fitted, memo={id(fitted.config): config})
    model = _fit_varied_halting_model(config, seed)
    _FITTED[key] = (copy.deepcopy(model), torch.get_rng_state())
    return model


def _fit_varied_halting_model(config: ModelConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(config)
    data = varied_images(channels=config.in_channels, size=config.image_size, seed=seed)
    x = normalize(data.images, MEAN, STD)
    threshold = config.threshold
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # running statistics = plain average over the fitting passes
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.train()
        model(x, exits=model.caps)  # every iteration's statistics
        if config.architecture == "iamnn":
            model.set_threshold(0.999)
            model(x)  # the halting heads' input statistics at every iteration
            model.set_threshold(threshold)
            for block in model.blocks:
                block.halting_head.out.weight.normal_(0.0, 2.0, generator=generator)
                block.halting_head.out.bias.zero_()
    return model.eval()


def save_varied_checkpoint(path: Path, config: ModelConfig | None = None, **kwargs) -> nn.Module:
    model = varied_halting_model(config)
    save_checkpoint(path, model, classes=CLASSES, mean=MEAN, std=STD, **kwargs)
    return model
