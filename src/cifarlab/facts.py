"""A model's facts, computed rather than typed: parameters, multiply-adds per image, and the
receptive field of its final feature map."""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import fx, nn

from cifarlab.models import ZOO
from cifarlab.models.registry import build_model, gradcam_candidates, gradcam_default, map_sizes

_WINDOW_MODULES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_WINDOW_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, F.conv2d}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_image(model: nn.Module, image_size: int = 32) -> int:
    """Multiply-accumulates of one forward pass on one image (torch counts 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode  # imports triton: slow to start for a stage that never counts

    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(was_training)
    return counter.get_total_flops() // 2


def _pair(value) -> int:
    return value[0] if isinstance(value, (tuple, list)) else value


def _window(module: nn.Module) -> tuple[int, int, int]:
    """(kernel, stride, dilation) along one axis of a conv or pooling layer."""
    stride = module.stride if module.stride is not None else module.kernel_size
    return _pair(module.kernel_size), _pair(stride), _pair(getattr(module, "dilation", 1))


class Untraceable(ValueError):
    """The receptive-field walk cannot follow this network; the message says why."""


def _function_window(node: fx.Node, graph: fx.GraphModule) -> tuple[int, int, int]:
    """(kernel, stride, dilation) of an F.conv2d / F.max_pool2d / F.avg_pool2d call. A convolution's
    kernel is its weight's shape, readable where the weight is a parameter of the network."""
    if node.target is F.conv2d:
        args = dict(zip(("input", "weight", "bias", "stride", "padding", "dilation"), node.args))
        args.update(node.kwargs)
        weight = args["weight"]
        if not (isinstance(weight, fx.Node) and weight.op == "get_attr"):
            raise Untraceable("an F.conv2d call whose weight is computed in forward, not a parameter of the network")
        kernel = graph.get_parameter(weight.target).shape[-1]
        return kernel, _pair(args.get("stride", 1)), _pair(args.get("dilation", 1))
    args = dict(zip(("input", "kernel_size", "stride", "padding", "dilation"), node.args))
    args.update(node.kwargs)
    kernel = _pair(args["kernel_size"])
    stride = _pair(args.get("stride") or kernel)
    return kernel, stride, _pair(args.get("dilation", 1))


class _WindowsAsLeaves(fx.Tracer):
    """Traces a model's own conv and pooling subclasses as the layers they are, not into them."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, _WINDOW_MODULES) or super().is_leaf_module(module, qualified_name)


def receptive_field(model: nn.Module) -> int:
    """Receptive field (pixels, along one axis) of the model's final feature map.

    Walks the traced module graph in order, carrying (rf, jump) per value: a window layer adds
    (kernel - 1) * dilation * jump and multiplies jump by its stride; where branches meet
    (residual adds) the larger field wins. Global pooling and linear layers leave it as is. A
    network torch.fx cannot trace (Python control flow on tensor values, say) is Untraceable."""
    try:
        graph = fx.GraphModule(model, _WindowsAsLeaves().trace(model))
    except Exception as err:
        raise Untraceable(f"torch.fx cannot trace its forward ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120] if str(err) else ''})") from None
    field: dict[fx.Node, tuple[int, int]] = {}
    for node in graph.graph.nodes:
        parents = [field[p] for p in node.all_input_nodes if p in field]
        rf, jump = max(parents) if parents else (1, 1)
        window = None
        if node.op == "call_module" and isinstance(graph.get_submodule(node.target), _WINDOW_MODULES):
            window = _window(graph.get_submodule(node.target))
        elif node.op == "call_function" and node.target in _WINDOW_FUNCTIONS:
            window = _function_window(node, graph)
        if window is not None:
            kernel, stride, dilation = window
            rf, jump = rf + (kernel - 1) * dilation * jump, jump * stride
        field[node] = (rf, jump)
    output = next(node for node in graph.graph.nodes if node.op == "output")
    return field[output][0]


def layer_kinds(model: nn.Module) -> str:
    """The kinds of layer the network is built of, with how many of each, in the order first met
    (`Conv2d x12, BatchNorm2d x12, ReLU x12, AdaptiveAvgPool2d x1, Linear x1`): containers left out."""
    counts: dict[str, int] = {}
    for module in model.modules():
        if not list(module.children()):
            counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return ", ".join(f"{kind} x{count}" for kind, count in counts.items())


def field_words(facts: dict) -> str:
    """The receptive field as a person reads it: `47 px`, or unknown and why."""
    if facts.get("receptive_field") is None:
        return f"unknown: {facts.get('receptive_field_unknown', 'not measured')}"
    return f"{facts['receptive_field']} px"


def models_table(num_classes: int = 10, image_size: int = 32) -> str:
    """The README's model table (Markdown), computed from the registered models."""
    lines = ["| name | parameters | MACs / image | receptive field | GradCAM layers (output px) |",
             "|---|---:|---:|---:|---|"]
    for name in ZOO:
        model = build_model(name, num_classes)
        default = gradcam_default(model, image_size)
        layers = ", ".join(f"**{layer}** {size}" if layer == default else f"{layer} {size}"
                           for layer, size in map_sizes(model, list(gradcam_candidates(model)), image_size).items())
        lines.append(f"| {name} | {parameter_count(model):,} | {macs_per_image(model, image_size):,} | "
                     f"{receptive_field(model)} | {layers} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="cifarlab facts", description="the zoo's facts as a Markdown table, "
                            "for 10 classes and 32x32 input").parse_args(argv)
    print(models_table())


if __name__ == "__main__":
    main()
