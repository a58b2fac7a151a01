"""The model zoo: importing this package registers every model by name."""
from cifarlab.models import custom_resnet, resnet, resnet18_ln, s9net, tiny  # noqa: F401  (registers them)
from cifarlab.models.registry import build_model, gradcam_layer, gradcam_layer_name, gradcam_layer_names, model_names

__all__ = ["build_model", "gradcam_layer", "gradcam_layer_name", "gradcam_layer_names", "model_names"]
