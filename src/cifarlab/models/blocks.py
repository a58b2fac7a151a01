"""Small building blocks shared by the compact models."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubgridDilatedConv2d(nn.Conv2d):
    """A stride-1 dilated convolution computed as an ordinary one on each of the dilation**2
    interleaved sub-grids of its input, which a dilated kernel never mixes (the "space to batch"
    form of atrous convolution, as in TensorFlow's atrous_conv2d): the same outputs and weights,
    but CPU kernels for ordinary convolutions are faster, above all in a depthwise layer's backward
    pass (5x for that layer alone on 2 AVX2 cores; 6% for a whole s9net step, docs/speed.md). Its
    output keeps the input's layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation[0]
        n, c, h, w = x.shape
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        x = F.pad(x, (0, -w % d, 0, -h % d))  # zeros the sub-grids would see as padding anyway
        rows, cols = x.shape[2] // d, x.shape[3] // d
        grids = (x.permute(0, 2, 3, 1).reshape(n, rows, d, cols, d, c).permute(2, 4, 0, 1, 3, 5)
                 .reshape(d * d * n, rows, cols, c).permute(0, 3, 1, 2))
        out = F.conv2d(grids, self.weight, self.bias, 1, self.padding[0] // d, 1, self.groups)
        out = (out.permute(0, 2, 3, 1).reshape(d, d, n, rows, cols, -1).permute(2, 3, 0, 4, 1, 5)
               .reshape(n, rows * d, cols * d, -1))
        return out[:, :h, :w].permute(0, 3, 1, 2).contiguous(memory_format=layout)


def conv2d(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv with same padding (for stride 1); dilated ones run on sub-grids (above)."""
    layer = SubgridDilatedConv2d if dilation > 1 and stride == 1 else nn.Conv2d
    return layer(cin, cout, kernel, stride=stride, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                 groups=groups, bias=False)


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv (same padding for stride 1) → BatchNorm → ReLU."""
    return nn.Sequential(
        conv2d(cin, cout, kernel, stride, dilation),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def separable(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """Depthwise-separable 3x3 conv: per-channel 3x3, then 1x1 mixing → BatchNorm → ReLU."""
    return nn.Sequential(
        conv2d(cin, cin, 3, stride, dilation, groups=cin),
        conv2d(cin, cout, 1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class GapHead(nn.Sequential):
    """Global average pooling then a linear classifier."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
