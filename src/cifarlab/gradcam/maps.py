"""GradCAM with captum: where in the image the model looked for a class (faithfulness.py checks
that the highlighted pixels really carry the prediction)."""
from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from cifarlab.models.registry import map_sizes


def gradcam_maps(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                 scaled: bool = True) -> np.ndarray:
    """ReLU'd GradCAM of each target logit at `layer`, bilinearly upsampled to the input size and,
    when `scaled`, divided by its own maximum; a map with no positive evidence stays all zero.
    Unscaled maps of two classes can be drawn on one scale."""
    model.eval()
    cam = LayerGradCam(model, layer).attribute(inputs, target=targets, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode="bilinear")
    cam = cam.detach().squeeze(1).clamp(min=0).cpu().numpy()
    if not scaled:
        return cam
    peak = cam.reshape(len(cam), -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0)
    return cam / scale[:, None, None]


def figure_names(layers: list[str]) -> dict[str, str]:
    """File stem per explained layer, by its place in gradcam.layers (`gradcam-1`): the same name
    for every model, so `dvc plots diff` shows two models' grids side by side (each grid's title
    names its layer and map size)."""
    return {layer: f"gradcam-{number}" for number, layer in enumerate(layers, start=1)}


def layer_titles(model: nn.Module, layers: list[str], image_size: int) -> dict[str, str]:
    """Each layer with the resolution of its map (`layer3, 8x8 map`): a name alone does not say how coarse it is."""
    sizes = map_sizes(model, layers, image_size)
    return {layer: f"{layer}, {sizes[layer]}x{sizes[layer]} map" for layer in layers}
