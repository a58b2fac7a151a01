"""The small net of the S9 assignment: blocks C1-C4 and a GAP head, no max-pooling (stride-2
transitions), depthwise-separable convs and dilated convs for a receptive field above 44."""
from __future__ import annotations

import torch
from torch import nn

from cifarlab.models.blocks import GapHead, conv_bn_relu, separable


class S9Net(nn.Module):
    gradcam_layers = ("c1", "c2", "c3", "c4")
    gradcam_default = "c3"

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.c1 = nn.Sequential(conv_bn_relu(3, 24), conv_bn_relu(24, 32))
        self.c2 = nn.Sequential(conv_bn_relu(32, 32, stride=2), separable(32, 64),
                                conv_bn_relu(64, 64, dilation=2))
        self.c3 = nn.Sequential(separable(64, 64, stride=2), separable(64, 128),
                                separable(128, 128, dilation=2))
        self.c4 = nn.Sequential(separable(128, 128, stride=2), separable(128, 160), separable(160, 160))
        self.head = GapHead(160, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c4(self.c3(self.c2(self.c1(x)))))
