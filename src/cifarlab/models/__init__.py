"""The model zoo by name, known without importing torch (every stage checks params.yaml, and most
never build a model): the module that defines each model, one small file per family, and the
layers GradCAM may target, largest maps first, with the default one."""
from __future__ import annotations

from typing import NamedTuple


class ZooEntry(NamedTuple):
    module: str  # cifarlab.models.<module> defines and registers the model
    gradcam_layers: tuple[str, ...]
    default_gradcam_layer: str


ZOO = {
    "airbench94": ZooEntry("airbench", ("block1", "block2", "block3"), "block2"),  # 15, 7, 3 px
    "custom_resnet": ZooEntry("custom_resnet", ("prep", "layer1", "layer2", "layer3"), "layer2"),  # 32, 16, 8, 4 px
    "resnet18": ZooEntry("resnet", ("layer1", "layer2", "layer3", "layer4"), "layer3"),  # 32, 16, 8, 4 px
    "resnet18_ln": ZooEntry("resnet18_ln", ("layer1", "layer2", "layer3", "layer4"), "layer3"),
    "s9net": ZooEntry("s9net", ("c1", "c2", "c3", "c4"), "c3"),  # 32, 16, 8, 4 px
    "tiny": ZooEntry("tiny", ("c1", "c2", "c3", "c4"), "c4"),  # 32, 32, 16, 8 px
}


def model_names() -> list[str]:
    return sorted(ZOO)


def gradcam_layer_names(name: str) -> list[str]:
    """Valid GradCAM layer names for a model ('default' is always allowed too)."""
    return list(ZOO[name].gradcam_layers)
