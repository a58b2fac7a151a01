"""Models by name: a model's module is imported when it is first built, and its class is given
the GradCAM layers the zoo lists for it."""
from __future__ import annotations

import importlib

from torch import nn

from cifarlab.errors import UserError
from cifarlab.models import ZOO, model_names

_MODELS: dict[str, type[nn.Module]] = {}


def register(name: str):
    """Class decorator: file the model under `name`, a name of the zoo."""
    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        cls.gradcam_layers, cls.default_gradcam_layer = ZOO[name].gradcam_layers, ZOO[name].default_gradcam_layer
        _MODELS[name] = cls
        return cls
    return decorate


def build_model(name: str, num_classes: int) -> nn.Module:
    if name not in ZOO:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    importlib.import_module(f"cifarlab.models.{ZOO[name].module}")
    return _MODELS[name](num_classes)


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
