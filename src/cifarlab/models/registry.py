"""Models by name. Each model class lists the submodules GradCAM may target and a default."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cifarlab.errors import UserError

_MODELS: dict[str, Callable[[int], nn.Module]] = {}


def register(name: str):
    def decorate(factory):
        _MODELS[name] = factory
        return factory
    return decorate


def model_names() -> list[str]:
    return sorted(_MODELS)


def build_model(name: str, num_classes: int) -> nn.Module:
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    return _MODELS[name](num_classes)


def gradcam_layer_names(name: str) -> list[str]:
    """Valid GradCAM layer names for a registered model ('default' is always allowed too)."""
    return list(_MODELS[name].gradcam_layers)


def gradcam_layer_name(model: nn.Module, layer: str) -> str:
    """The layer `layer` names: 'default' resolved, anything else checked against gradcam_layers."""
    name = model.default_gradcam_layer if layer == "default" else layer
    if name not in model.gradcam_layers:
        raise UserError(f"gradcam layer {layer!r} is not a layer of "
                        f"{type(model).__name__}; allowed: default, {', '.join(model.gradcam_layers)}")
    return name


def gradcam_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module to explain: `layer` is 'default' or one of the model's gradcam_layers."""
    return getattr(model, gradcam_layer_name(model, layer))
