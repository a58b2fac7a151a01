"""The custom ResNet (DavidNet / ResNet9) of the S9 assignment: prep 64 → layer1 128 + res → layer2 256
→ layer3 512 + res → MaxPool(4) → FC."""
from __future__ import annotations

import torch
from torch import nn

from cifarlab.models.blocks import conv_bn_relu


def _conv_pool_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualLayer(nn.Module):
    """X = conv-pool-bn-relu(x); out = X + ResBlock(X), so the module's output is after the add."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _conv_pool_bn_relu(cin, cout)
        self.res = nn.Sequential(conv_bn_relu(cout, cout), conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x + self.res(x)


class CustomResNet(nn.Module):
    gradcam_layers = ("prep", "layer1", "layer2", "layer3")
    gradcam_default = "layer2"

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.prep = conv_bn_relu(3, 64)
        self.layer1 = ResidualLayer(64, 128)
        self.layer2 = _conv_pool_bn_relu(128, 256)
        self.layer3 = ResidualLayer(256, 512)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(torch.flatten(self.pool(x), 1))
