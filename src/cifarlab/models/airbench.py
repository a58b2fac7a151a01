"""airbench94 and airbench93: the fast CIFAR-10 networks of K. Jordan, "94% on CIFAR-10 in 3.29
seconds on a single GPU" (arXiv:2404.00498, 2024), which refine D. Page's ResNet-9 ("How to train
your ResNet", Myrtle.ai, 2018) and tysam-code's hlb-CIFAR10.

A frozen 2x2 patch-whitening convolution (set from the training images by init_from_data), then
three conv groups (conv -> max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU), a global
max-pool (the paper's 3x3 pool over the 3x3 map of a 32x32 image, and any size's map alike, so
early epochs can train at a lower resolution: train.low_res) and a bias-free linear layer whose
logits are scaled by 1/9. airbench94's groups are 64,
256 and 256 wide; airbench93's 64, 128 and 128 (the repository's airbench/lib_airbench93.py: 93%
on the official data in less than half the multiply-adds), which is what makes it fit a CPU
without native bf16.
BatchNorm weights stay at one (only the biases train), and every 3x3 convolution starts as an
identity on its first input channels, so the untrained network passes its input through."""
from __future__ import annotations

import torch
from torch import nn

WHITEN_KERNEL = 2  # whitening patches are 2x2 pixels of 3 channels: 12 directions
WHITEN_EPS = 5e-4  # added to each eigenvalue so near-flat directions are not blown up into noise
WHITEN_BIAS_EPOCHS = 3  # the whitening bias trains this many epochs, then freezes with the weights
BN_MOMENTUM = 0.4  # PyTorch's convention (the paper's 0.6 is the weight of the old running value)
LOGIT_SCALE = 1 / 9  # keeps the initial logits small, so early steps are not saturated


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with a fixed unit scale: only the shift trains."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=BN_MOMENTUM)
    norm.weight.requires_grad_(False)
    return norm


def _conv(cin: int, cout: int) -> nn.Conv2d:
    """3x3 'same' convolution that starts as the identity on its first input channels."""
    conv = nn.Conv2d(cin, cout, 3, padding="same", bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(cin, cout)])
    return conv


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.pool, self.norm1 = _conv(cin, cout), nn.MaxPool2d(2), _batch_norm(cout)
        self.conv2, self.norm2 = _conv(cout, cout), _batch_norm(cout)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        return self.activation(self.norm2(self.conv2(x)))


class Whitening(nn.Conv2d):
    """The patch-whitening convolution. Its weights never train; its bias trains while
    `bias_trains`, and is used detached after, so that backward stops here (see start_epoch)."""
    bias_trains = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.bias if self.bias_trains else self.bias.detach())


class AirBench(nn.Module):
    widths: tuple[int, int, int]
    gradcam_layers = ("block1", "block2", "block3")  # largest maps first; the default's are 8 px
    gradcam_default = "block2"
    any_image_size = True  # global pooling before the head: train.low_res may train it on smaller crops

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        directions = 3 * WHITEN_KERNEL ** 2
        # each direction twice, with both signs, so the GELU after it keeps all of the information
        self.whiten = Whitening(3, 2 * directions, WHITEN_KERNEL, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        self.activation = nn.GELU()
        widths = self.widths
        self.block1 = ConvGroup(2 * directions, widths[0])
        self.block2 = ConvGroup(widths[0], widths[1])
        self.block3 = ConvGroup(widths[1], widths[2])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the whitening filters from normalised training images (N, 3, H, W): the
        eigenvectors of the covariance of their 2x2 patches, each scaled by 1 / sqrt(eigenvalue),
        so the layer's outputs on training patches are decorrelated with unit variance."""
        kernel = WHITEN_KERNEL
        patches = images.float().unfold(2, kernel, 1).unfold(3, kernel, 1)  # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * kernel * kernel).double()
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + WHITEN_EPS)[:, None]).flip(0)  # largest first
        filters = filters.reshape(-1, 3, kernel, kernel).to(self.whiten.weight.dtype)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def start_epoch(self, epoch: int) -> None:
        """Called before each training epoch (1-based). After WHITEN_BIAS_EPOCHS the whitening bias
        stops training, once the rest of the network has adapted to it. Forward then uses it
        detached: backward stops at the first convolution instead of computing a gradient for the
        whole first group's input (5-6% of a step on a CPU; on a 2-core Xeon with AMX, in bf16,
        airbench94's epochs after it ran 13% shorter),
        and the bias gets no gradient, so the optimiser leaves it alone. It keeps requires_grad, so
        the model's parameters never change under DDP, which is told when some go unused
        (idle_parameters, distributed.DataParallel)."""
        self.whiten.bias_trains = epoch <= WHITEN_BIAS_EPOCHS

    def idle_parameters(self, epoch: int) -> bool:
        """Whether some trainable parameters get no gradient in `epoch` (the frozen whitening bias)."""
        return epoch > WHITEN_BIAS_EPOCHS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.activation(self.whiten(x)))))
        return self.head(torch.flatten(self.pool(x), 1)) * LOGIT_SCALE


class AirBench94(AirBench):
    widths = (64, 256, 256)


class AirBench93(AirBench):
    widths = (64, 128, 128)
