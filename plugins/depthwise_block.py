"""A depthwise-separable processing block for IamNN: the paper's stated future work.

Leroux et al. (2018), section 4: "In future work, we will incorporate other techniques such as
depthwise separable convolutions to reduce the computational cost even further." The dense 3x3
convolution of the bottleneck
(width x width x 9 weights and MACs per pixel) becomes a depthwise 3x3 (width x 9),
as in MobileNet (Howard et al., 2017):

    1x1 reduce over concat(x0, state) -> BN -> ReLU
    -> depthwise 3x3 (groups = width)  -> BN -> ReLU
    -> 1x1 expand                      -> BN

The convolutions are shared by all iterations; each batchnorm has one copy per iteration.
Pick it with ``ModelConfig(block="depthwise")``.
"""
from __future__ import annotations

from torch import Tensor, nn

from iamnn_studio.engine.layers import conv_macs, per_iteration_norms


class DepthwiseSeparableProcessing(nn.Module):
    """Drop-in replacement for ``BottleneckProcessing`` with a depthwise middle convolution."""

    def __init__(self, in_channels: int, channels: int, width: int, iterations: int) -> None:
        super().__init__()
        self.in_channels, self.channels, self.width = in_channels, channels, width
        self.reduce = nn.Conv2d(in_channels + channels, width, 1, bias=False)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.expand = nn.Conv2d(width, channels, 1, bias=False)
        self.bn_reduce = per_iteration_norms(width, iterations)
        self.bn_depthwise = per_iteration_norms(width, iterations)
        self.bn_expand = per_iteration_norms(channels, iterations)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, iteration: int) -> Tensor:
        out = self.relu(self.bn_reduce[iteration](self.reduce(x)))
        out = self.relu(self.bn_depthwise[iteration](self.depthwise(out)))
        return self.bn_expand[iteration](self.expand(out))

    def macs(self, height: int, width: int) -> int:
        """Per sample and iteration; the depthwise 3x3 costs H * W * width * 9."""
        return (
            conv_macs(height, width, self.in_channels + self.channels, self.width, 1)
            + conv_macs(height, width, self.width, self.width, 3, groups=self.width)
            + conv_macs(height, width, self.width, self.channels, 1)
        )


def register(api) -> None:
    api.blocks.register("depthwise", DepthwiseSeparableProcessing)
