"""Building a network by name, the zoo's or your own, and what cifarlab asks of it.

Your network (nets/<name>.py) is a plain `class Net(nn.Module)`, built as `Net(num_classes)` or,
as course notebooks write it, `Net()`. It is tried on a small batch as soon as it is built, so a
mistake in it is one message pointing at the line of your file and saying what cifarlab
expected, before any training. A class may declare:
  gradcam_layers   the layers GradCAM may explain (attribute paths, largest maps first)
  gradcam_default  the one `gradcam.layers: [default]` means
  any_image_size   True if it trains on images of any size (train.low_res); False if not said
Where it does not, the candidates are its top-level modules that output maps, and the default
is the deepest of them whose maps are at least MIN_GRADCAM_PX wide."""
from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from pathlib import Path

import torch
from torch import nn

from cifarlab.core.errors import UserError
from cifarlab.models import ZOO, airbench, custom_resnet, model_names, resnet, resnet18_ln, s9net, source_file, tiny

_ZOO_FILES = {module.__name__.rsplit(".", 1)[-1]: module  # the files ZOO's "module:class" names
              for module in (airbench, custom_resnet, resnet, resnet18_ln, s9net, tiny)}

# GradCAM's map is upsampled to the image: from maps under 7 px it cannot tell a head from a tail,
# and the deepest layer above that still sees whole objects (Selvaraju et al., arXiv:1610.02391)
MIN_GRADCAM_PX = 7
PROBE_IMAGES = 2  # a batch, not one image: a network that drops the batch dimension is caught too


class NetworkError(UserError):
    """Your network failed where cifarlab builds or runs it: the message points into your file."""


def network_class(name: str) -> type[nn.Module]:
    if name in ZOO:
        module, cls = ZOO[name].split(":")
        return getattr(_ZOO_FILES[module], cls)
    path = source_file(name)
    if path is None:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(model_names())}, or your own in "
                        f"nets/{name}.py (`cifarlab new {name}` starts one)")
    module = _own_module(name, path)
    net = getattr(module, "Net", None)
    if not (isinstance(net, type) and issubclass(net, nn.Module)):
        raise NetworkError(f"{path}: defines no class Net(nn.Module); cifarlab builds Net(num_classes) or Net()")
    return net


def _own_module(name: str, path: Path):
    """nets/<name>.py imported under its own module name (so two networks never collide), with
    nets/ on the import path for helpers it imports beside it."""
    spec = importlib.util.spec_from_file_location(f"nets.{name}", path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise NetworkError(_pointed(err, path, "importing it")) from None
    finally:
        sys.path.remove(folder)
    return module


def runs_at(model: nn.Module, size: int) -> bool:
    """Whether the network's forward runs on a probe batch of size x size images (its poolings
    and strides leave a map, its layers' shapes still fit), in eval mode, moving no statistics."""
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(PROBE_IMAGES, 3, size, size))
    except (RuntimeError, ValueError):
        return False
    finally:
        model.train()
    return True


def build_model(name: str, num_classes: int, image_size: int = 32) -> nn.Module:
    """The network `name` for `num_classes` classes. Your own is built and tried on a batch of
    `image_size` images, so that its mistakes surface here, in your file's terms."""
    cls = network_class(name)
    if name in ZOO:
        return cls(num_classes)
    path = source_file(name)
    takes_classes = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                        for p in inspect.signature(cls).parameters.values())
    expected = f"cifarlab builds {'Net(num_classes)' if takes_classes else 'Net()'}"
    try:
        model = cls(num_classes) if takes_classes else cls()
    except Exception as err:
        raise NetworkError(f"{_pointed(err, path, 'building Net')}\n  {expected}") from None
    shape = (PROBE_IMAGES, 3, image_size, image_size)
    try:
        with torch.no_grad():  # in eval mode: trying it moves no BatchNorm statistics
            output = model.eval()(torch.zeros(shape))
        model.train()
    except Exception as err:
        raise NetworkError(f"{_pointed(err, path, 'its forward')}\n  {expected} and feeds it a batch of "
                           f"shape {tuple(shape)} (N, channels, height, width)") from None
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (PROBE_IMAGES, num_classes):
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        fix = "" if takes_classes else "; give Net an argument, Net(num_classes), for its last layer's outputs"
        raise NetworkError(f"{path}: Net's output is {got} for a batch of {PROBE_IMAGES}; the data has {num_classes} "
                           f"classes, so cifarlab expects ({PROBE_IMAGES}, {num_classes}): one score per class{fix}")
    return model


def _pointed(err: Exception, path: Path, doing: str) -> str:
    """`err` as one line at the deepest line of `path` it passed through."""
    frames = [frame for frame in traceback.extract_tb(err.__traceback__)
              if Path(frame.filename).resolve() == path.resolve()]
    if isinstance(err, SyntaxError) and err.lineno:
        where = f"{path}, line {err.lineno}: {(err.text or '').strip()}"
    elif frames:
        where = f"{path}, line {frames[-1].lineno}: {frames[-1].line}"
    else:
        where = f"{path} ({doing})"
    message = str(err).splitlines()[0][:300] if str(err) else ""
    return f"{where}\n  {type(err).__name__}: {message}"


def map_sizes(model: nn.Module, layers: list[str], image_size: int = 32) -> dict[str, int | None]:
    """Each layer's output width for a square input (None where its output is not a map), in the
    order the forward pass reaches them."""
    sizes: dict[str, int | None] = {}

    def seen(name: str):
        def hook(_module, _inputs, output):
            if name not in sizes:
                sizes[name] = output.shape[-1] if isinstance(output, torch.Tensor) and output.dim() == 4 else None
        return hook
    hooks = [model.get_submodule(name).register_forward_hook(seen(name)) for name in layers]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, image_size, image_size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return sizes


def gradcam_candidates(model: nn.Module, image_size: int = 32) -> tuple[str, ...]:
    """The layers GradCAM may explain, largest maps first: the class's own list, or its
    top-level modules that output maps, in forward order."""
    declared = getattr(model, "gradcam_layers", None)
    if declared:
        return tuple(declared)
    sizes = map_sizes(model, [name for name, _ in model.named_children()], image_size)
    return tuple(name for name, size in sizes.items() if size is not None)


def gradcam_default(model: nn.Module, image_size: int = 32) -> str:
    """The layer `gradcam.layers: [default]` explains: the class's choice, else the deepest
    candidate whose maps are at least MIN_GRADCAM_PX wide (the first candidate if none is)."""
    declared = getattr(model, "gradcam_default", None)
    if declared:
        return declared
    candidates = gradcam_candidates(model, image_size)
    if not candidates:
        raise NetworkError(f"{type(model).__name__} has no module that outputs maps (N, C, H, W), and GradCAM explains "
                           "a module's maps (functional calls such as F.conv2d have none): make a block of it an "
                           "nn.Module (nn.Conv2d, or your own) and leave gradcam.layers at default, or name that "
                           "block with -S 'gradcam.layers=[path.to.module]'")
    sizes = map_sizes(model, list(candidates), image_size)
    wide = [name for name in candidates if (sizes.get(name) or 0) >= MIN_GRADCAM_PX]
    return wide[-1] if wide else candidates[0]


def explained_layers(layers: list[str], model: nn.Module, image_size: int = 32) -> list[str]:
    """gradcam.layers as module paths of `model`, `default` resolved, each once; a path that is
    not a module of it, or whose output is not a map, is one line naming it and the candidates."""
    names = list(dict.fromkeys(gradcam_default(model, image_size) if layer == "default" else layer
                               for layer in layers))
    modules = dict(model.named_modules())
    candidates = ", ".join(["default", *gradcam_candidates(model, image_size)])
    for name in names:
        if name not in modules or name == "":
            raise UserError(f"params.yaml: gradcam.layers names {name!r}, which is not a module of "
                            f"{type(model).__name__}; allowed: {candidates}, or another module's path "
                            "(e.g. layer3.1, as model.named_modules() lists them)")
    sizes = map_sizes(model, names, image_size)
    for name in names:
        if sizes.get(name) is None:
            raise UserError(f"params.yaml: gradcam.layers names {name!r}, whose output is not a map (N, C, H, W) "
                            f"for GradCAM to explain; allowed: {candidates}")
    return names


def trains_at_any_size(name: str) -> bool:
    """Whether the network trains on images of other sizes than the data's (train.low_res)."""
    return bool(getattr(network_class(name), "any_image_size", False))
