"""Every model by the name params.yaml's `model` gives it, one small file per family. The layers
GradCAM may explain in each are listed in config.GRADCAM_LAYERS, beside the key they constrain."""
from __future__ import annotations

from torch import nn

from cifarlab.core.errors import UserError
from cifarlab.models.airbench import AirBench93, AirBench94
from cifarlab.models.custom_resnet import CustomResNet
from cifarlab.models.resnet import ResNet18BN
from cifarlab.models.resnet18_ln import ResNet18LN
from cifarlab.models.s9net import S9Net
from cifarlab.models.tiny import Tiny

MODELS: dict[str, type[nn.Module]] = {
    "airbench93": AirBench93,
    "airbench94": AirBench94,
    "custom_resnet": CustomResNet,
    "resnet18": ResNet18BN,
    "resnet18_ln": ResNet18LN,
    "s9net": S9Net,
    "tiny": Tiny,
}


def build_model(name: str, num_classes: int) -> nn.Module:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name](num_classes)
