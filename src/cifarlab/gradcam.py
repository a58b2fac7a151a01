"""GradCAM with captum: where in the image the model looked for a class."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from captum.attr import LayerAttribution, LayerGradCam  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from torch import nn  # noqa: E402


def gradcam_maps(model: nn.Module, layer: nn.Module, inputs: torch.Tensor,
                 targets: torch.Tensor) -> np.ndarray:
    """ReLU'd GradCAM of each target logit at `layer`, bilinearly upsampled to the input size and
    scaled to [0, 1] per image; a map with no positive evidence stays all zero."""
    model.eval()
    cam = LayerGradCam(model, layer).attribute(inputs, target=targets, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode="bilinear")
    cam = cam.detach().squeeze(1).clamp(min=0).cpu().numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0)
    return cam / scale[:, None, None]


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured [0, 1] map over a uint8 RGB image."""
    heat = colormaps["jet"](cam)[..., :3]
    return ((1 - alpha) * image / 255.0 + alpha * heat).clip(0, 1)
