"""The small net of the S7 assignment (under 100k parameters): no max-pooling; a 1x1 transition, a
dilated-conv transition and a strided transition; depthwise-separable convs; GAP head."""
from __future__ import annotations

import torch
from torch import nn

from cifarlab.models.blocks import GapHead, conv_bn_relu, separable


class Tiny(nn.Module):
    gradcam_layers = ("c1", "c2", "c3", "c4")
    gradcam_default = "c4"

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.c1 = nn.Sequential(conv_bn_relu(3, 16), conv_bn_relu(16, 32))
        self.c2 = nn.Sequential(conv_bn_relu(32, 16, kernel=1), separable(16, 32), separable(32, 48))
        self.c3 = nn.Sequential(conv_bn_relu(48, 32, stride=2, dilation=2), separable(32, 48),
                                separable(48, 64))
        self.c4 = nn.Sequential(conv_bn_relu(64, 48, stride=2), separable(48, 64), separable(64, 96))
        self.head = GapHead(96, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c4(self.c3(self.c2(self.c1(x)))))
