"""The course assignments (the students' reports in ../shared/seeds/) as checklists of items a
network's code can be measured against, each with the seed line it comes from. What is measured
is the network itself (its modules and, where torch.fx can trace it, its forward), never what its
file or class is called. The training, output and accuracy items of the assignments are not
checked here: they need a run."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import fx, nn

from cifarlab.facts import Untraceable, parameter_count, receptive_field


@dataclass(frozen=True)
class Anatomy:
    """What a network is made of, as the assignments ask about it."""
    params: int
    receptive_field: int | None  # None: the walk cannot follow its forward (receptive_field_unknown says why)
    receptive_field_unknown: str | None
    max_pooling: bool  # nn.MaxPool2d / nn.AdaptiveMaxPool2d or F.max_pool2d
    depthwise_separable: bool  # a depthwise convolution (groups == input channels > 1) and a 1x1 one
    dilated: bool  # a convolution with dilation > 1
    global_average_pooling: bool  # nn.AdaptiveAvgPool2d(1), F.adaptive_avg_pool2d(x, 1) or a mean over H and W
    batch_norm: bool
    layer_norm: bool  # nn.LayerNorm, or GroupNorm with one group (LayerNorm over C, H, W)


def _traced(model: nn.Module) -> tuple[fx.GraphModule | None, list[fx.Node]]:
    """The forward's graph and its calls of functions and methods, where torch.fx can trace it."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - a network fx cannot trace is measured by its modules alone
        return None, []
    return graph, [node for node in graph.graph.nodes if node.op in ("call_function", "call_method")]


def _arg(node: fx.Node, index: int, name: str, default=None):
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _pair(value) -> int:
    return max(value) if isinstance(value, (tuple, list)) else value


def _convolutions(model: nn.Module, graph: fx.GraphModule | None, calls: list[fx.Node]) -> list[tuple[int, int, bool]]:
    """(kernel, dilation, depthwise) of every convolution: nn.Conv2d modules, and F.conv2d calls on
    the network's own weights."""
    found = [(_pair(m.kernel_size), _pair(m.dilation), m.groups == m.in_channels > 1)
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    for node in calls:
        weight = _arg(node, 1, "weight")
        if node.target is F.conv2d and isinstance(weight, fx.Node) and weight.op == "get_attr":
            shape = graph.get_parameter(weight.target).shape
            groups = _arg(node, 6, "groups", 1)
            found.append((shape[-1], _pair(_arg(node, 5, "dilation", 1)), groups > 1 and shape[1] == 1))
    return found


def _spatial_mean(node: fx.Node) -> bool:
    dims = _arg(node, 1, "dim")
    return node.target == "mean" and isinstance(dims, (tuple, list)) and set(dims) in ({2, 3}, {-2, -1})


def anatomy(model: nn.Module) -> Anatomy:
    modules = list(model.modules())
    graph, calls = _traced(model)
    convs = _convolutions(model, graph, calls)
    try:
        field, unknown = receptive_field(model), None
    except Untraceable as why:
        field, unknown = None, str(why)
    return Anatomy(
        params=parameter_count(model), receptive_field=field, receptive_field_unknown=unknown,
        max_pooling=any(isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) for m in modules)
        or any(node.target in (F.max_pool2d, F.adaptive_max_pool2d) for node in calls),
        depthwise_separable=any(depthwise for _, _, depthwise in convs) and any(k == 1 for k, _, _ in convs),
        dilated=any(dilation > 1 for _, dilation, _ in convs),
        global_average_pooling=any(isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1))
                                   for m in modules)
        or any(node.target is F.adaptive_avg_pool2d and _arg(node, 1, "output_size") in (1, (1, 1)) for node in calls)
        or any(_spatial_mean(node) for node in calls),
        batch_norm=any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules),
        layer_norm=any(isinstance(m, nn.LayerNorm) or (isinstance(m, nn.GroupNorm) and m.num_groups == 1)
                       for m in modules),
    )


@dataclass(frozen=True)
class Item:
    name: str
    required: str
    measured: str
    passed: bool | None  # None: cannot be told (a receptive field the walk cannot follow)
    source: str  # the seed line it comes from


@dataclass(frozen=True)
class Requirement:
    name: str
    required: str
    measure: Callable[[Anatomy], tuple[str, bool | None]]
    source: str

    def item(self, body: Anatomy) -> Item:
        measured, passed = self.measure(body)
        return Item(self.name, self.required, measured, passed, self.source)


def _yes(flag: bool) -> tuple[str, bool]:
    return ("yes" if flag else "no"), flag


def _params_below(limit: int) -> Callable[[Anatomy], tuple[str, bool]]:
    return lambda body: (f"{body.params:,}", body.params < limit)


def _field_above(limit: int) -> Callable[[Anatomy], tuple[str, bool | None]]:
    def measure(body: Anatomy) -> tuple[str, bool | None]:
        if body.receptive_field is None:
            return f"unknown ({body.receptive_field_unknown})", None
        return f"{body.receptive_field} px", body.receptive_field > limit
    return measure


@dataclass(frozen=True)
class Assignment:
    title: str
    seed: str  # the report in ../shared/seeds/ its items are read from
    architecture: tuple[Requirement, ...]
    not_checked: str = ""  # what of its architecture cannot be measured here yet


S9_SEED = "002_b7464361a51ceea4.txt"
ASSIGNMENTS = {
    "s9_small_net": Assignment("S9 small net", S9_SEED, (
        Requirement("no max-pooling", "none", lambda b: ("none" if not b.max_pooling else "used", not b.max_pooling),
                    "1. ... C1C2C3C40 (No MaxPooling, ...)"),
        Requirement("receptive field", "> 44 px", _field_above(44), "2. Total RF must be more than 44"),
        Requirement("depthwise-separable convolution", "at least one", lambda b: _yes(b.depthwise_separable),
                    "3. one of the layers must use Depthwise Separable Convolution"),
        Requirement("dilated convolution", "at least one", lambda b: _yes(b.dilated),
                    "4. one of the layers must use Dilated Convolution"),
        Requirement("global average pooling", "yes", lambda b: _yes(b.global_average_pooling),
                    "5. use GAP (compulsory)"),
        Requirement("parameters", "< 200,000", _params_below(200_000), "7. ... Total Params to be less than 200k"),
    )),
    "s7_early": Assignment("S7 early submission", "000_1a8ae5131926b78c.txt", (
        Requirement("parameters", "< 100,000", _params_below(100_000),
                    "2. EARLY SUBMISSIONS: ... Total Params to be less than 100k"),
    )),
    "s8_resnet18_ln": Assignment("S8 ResNet18 with LayerNorm", "004_3196d1ca57a8b663.txt", (
        Requirement("LayerNorm only", "no BatchNorm, LayerNorm used",
                    lambda b: ("LayerNorm only" if b.layer_norm and not b.batch_norm else
                               "BatchNorm used" if b.batch_norm else "no LayerNorm",
                               b.layer_norm and not b.batch_norm),
                    "Must use LayerNormalization ONLY"),
    )),
    "s7_resnet18": Assignment("S7 ResNet18", "000_1a8ae5131926b78c.txt", (),
                              "its network is ResNet18 itself; nothing of it is a measurable limit"),
    "s9_custom_resnet": Assignment("S9 custom ResNet", "001_d4c371c64f9203cf.txt", (),
                                   "its layer table (prep 64, layer1 128 + residual, layer2 256, layer3 512 + "
                                   "residual, MaxPool 4, FC) is not compared yet"),
}


def architecture_items(assignment: str, model: nn.Module) -> list[Item]:
    body = anatomy(model)
    return [requirement.item(body) for requirement in ASSIGNMENTS[assignment].architecture]


def verdict(title: str, items: list[Item]) -> str:
    """One line: how many items are met, and what the missed ones measured."""
    missed = [f"{item.name} {item.measured}, required {item.required}" for item in items if item.passed is False]
    unknown = [item.name for item in items if item.passed is None]
    line = f"meets {title}'s architecture items: {sum(bool(item.passed) for item in items)} of {len(items)}"
    if missed:
        line += "; missed: " + "; ".join(missed)
    if unknown:
        line += "; cannot tell: " + ", ".join(unknown)
    return line
