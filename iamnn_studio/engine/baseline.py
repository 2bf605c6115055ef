"""The unshared ResNet of the same depth and width, built from torchvision's ResNet.

torchvision hard-codes 64 stem channels; this subclass sets the stem width and the stem
kind (3x3 for small images) and reuses torchvision's ``_make_layer``, blocks and forward.
Depth 18/34 use ``BasicBlock``, deeper ones ``Bottleneck`` (expansion 4), as in He et al.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .config import ModelConfig
from .model import ModelOutput


class WidthResNet(ResNet):
    """torchvision's ResNet with a configurable width and stem."""

    def __init__(self, config: ModelConfig) -> None:
        nn.Module.__init__(self)
        block = BasicBlock if config.depth in (18, 34) and config.iterations is None else Bottleneck
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = config.width, 1, 1, 64
        w = config.width
        if config.small_stem:
            self.conv1 = nn.Conv2d(config.in_channels, w, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(config.in_channels, w, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        units = config.caps
        self.layer1 = self._make_layer(block, w, units[0])
        self.layer2 = self._make_layer(block, w * 2, units[1], stride=2)
        self.layer3 = self._make_layer(block, w * 4, units[2], stride=2)
        self.layer4 = self._make_layer(block, w * 8, units[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w * 8 * block.expansion, config.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ResNetBaseline(nn.Module):
    """Wraps ``WidthResNet`` so it returns the same ``ModelOutput`` as IamNN."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.resnet = WidthResNet(config)
        self._macs: int | None = None

    @property
    def caps(self) -> tuple[int, ...]:
        return self.config.caps

    def set_threshold(self, threshold: float | None) -> None:  # nothing halts in a ResNet
        self.config.threshold = threshold

    def set_mode(self, mode: str) -> None:
        self.config.mode = mode

    def image_macs(self) -> int:
        """MACs of one image, counted once by torch's flop counter (2 FLOPs per MAC)."""
        if self._macs is None:
            c = self.config
            probe = torch.zeros(1, c.in_channels, c.image_size, c.image_size, device=self.resnet.fc.weight.device)
            was_training = self.training
            self.eval()
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self.resnet(probe)
            self.train(was_training)
            self._macs = counter.get_total_flops() // 2
        return self._macs

    def macs_range(self) -> tuple[int, int]:
        return self.image_macs(), self.image_macs()

    def forward(self, x: Tensor, *, exits=None, compact: bool = True) -> ModelOutput:
        logits = self.resnet(x)
        batch = x.shape[0]
        units = torch.tensor(self.caps, device=x.device).expand(batch, -1)
        return ModelOutput(
            logits=logits,
            iterations=units.clone(),
            halting=[torch.full((batch, n), float("nan"), device=x.device) for n in self.caps],
            ponder_cost=units.sum(1).float(),
            macs=torch.full((batch,), self.image_macs(), dtype=torch.long, device=x.device),
        )


def build_baseline(config: ModelConfig) -> ResNetBaseline:
    """The unshared ResNet matching ``config``'s depth, width, stem and classes."""
    config.validate()
    return ResNetBaseline(config)
