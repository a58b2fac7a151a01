"""GradCAM with captum: where in the image the model looked for a class, and a deletion check
that the highlighted pixels really carry the prediction."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn


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


def figure_names(model: nn.Module, layers: list[str], image_size: int) -> dict[str, str]:
    """File stem per explained layer, by the resolution of its map (`8px`), so `dvc plots diff`
    pairs the 8x8 maps of an s9net run (c3) with those of a resnet18 run (layer3); two layers
    of one resolution add their names (`32px-c1`, `32px-c2`)."""
    from cifarlab.models.facts import gradcam_layer_sizes

    sizes = gradcam_layer_sizes(model, image_size)
    stems = {layer: f"{sizes[layer]}px" for layer in layers}
    clashes = {stem for stem in stems.values() if list(stems.values()).count(stem) > 1}
    return {layer: f"{stem}-{layer}" if stem in clashes else stem for layer, stem in stems.items()}


def _occlude(inputs: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
    """Set masked pixels to 0, the dataset mean after normalisation, in every channel."""
    keep = torch.from_numpy(~masks).to(inputs.dtype)[:, None]
    return inputs * keep


@torch.no_grad()
def _confidence(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.softmax(model(inputs), dim=1).gather(1, targets[:, None]).squeeze(1)


def deletion_drops(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, percent: float,
                   seed: int = 0) -> tuple[float, float]:
    """Mean drop of the predicted class's probability when the top `percent`% GradCAM pixels are
    occluded, and when as many pixels chosen at random are: a faithful map drops it more."""
    model.eval()
    with torch.no_grad():
        predicted = model(inputs).argmax(1)
    maps = gradcam_maps(model, layer, inputs, predicted)
    flat = maps.reshape(len(maps), -1)
    count = max(1, round(flat.shape[1] * percent / 100))
    rng = np.random.default_rng(seed)
    top = np.zeros_like(flat, dtype=bool)
    rand = np.zeros_like(flat, dtype=bool)
    for i, row in enumerate(flat):
        top[i, np.argsort(-row, kind="stable")[:count]] = True
        rand[i, rng.choice(flat.shape[1], size=count, replace=False)] = True
    base = _confidence(model, inputs, predicted)
    shape = maps.shape
    drop_top = base - _confidence(model, _occlude(inputs, top.reshape(shape)), predicted)
    drop_rand = base - _confidence(model, _occlude(inputs, rand.reshape(shape)), predicted)
    return drop_top.mean().item(), drop_rand.mean().item()
