"""The course assignments (the students' reports in ../shared/seeds/) as checklists of measurable
items, each with the seed line it comes from: the architecture (measured on the network itself,
its modules and, where torch.fx can trace it, its forward; never on what its file or class is
called), the training (the run's params), the outputs and the accuracy target (the run's
metrics). `cifarlab check` measures the architecture alone, before any training; the
report stage measures all of it after a run (metrics/rubric.json)."""
from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from cifarlab.facts import Untraceable, parameter_count, receptive_field

if TYPE_CHECKING:
    from cifarlab.config import Params


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
    maps: tuple[tuple[int, int], ...] | None  # (channels, px) of the feature maps in forward order; None: untraced
    additions: tuple[tuple[int, int], ...] | None  # (channels, px) of each addition of two maps (a residual)
    max_pool_4: bool  # a max-pool with a 4x4 window


def _traced(model: nn.Module) -> tuple[fx.GraphModule | None, list[fx.Node]]:
    """The forward's graph and its calls of functions and methods, where torch.fx can trace it."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - a network fx cannot trace is measured by its modules alone
        return None, []
    return graph, [node for node in graph.graph.nodes if node.op in ("call_function", "call_method")]


def _arg(node: fx.Node, index: int, name: str, default=None):
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _largest(value) -> int:
    """The larger of a (height, width) pair, or the one number: a dilation counts along either axis."""
    return max(value) if isinstance(value, (tuple, list)) else value


def _convolutions(model: nn.Module, graph: fx.GraphModule | None, calls: list[fx.Node]) -> list[tuple[int, int, bool]]:
    """(kernel, dilation, depthwise) of every convolution: nn.Conv2d modules, and F.conv2d calls on
    the network's own weights."""
    found = [(_largest(m.kernel_size), _largest(m.dilation), m.groups == m.in_channels > 1)
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    for node in calls:
        weight = _arg(node, 1, "weight")
        if node.target is F.conv2d and isinstance(weight, fx.Node) and weight.op == "get_attr":
            shape = graph.get_parameter(weight.target).shape
            groups = _arg(node, 6, "groups", 1)
            found.append((shape[-1], _largest(_arg(node, 5, "dilation", 1)), groups > 1 and shape[1] == 1))
    return found


def _shapes(graph: fx.GraphModule | None, image_size: int = 32) -> tuple[list, list]:
    """The (channels, px) of every 4-D value the forward computes, in order, and of each addition
    of two maps; both empty where the network could not be traced."""
    if graph is None:
        return [], []
    was_training = graph.training
    try:
        ShapeProp(graph.eval()).propagate(torch.zeros(1, 3, image_size, image_size))
    except Exception:  # noqa: BLE001 - shapes are for the layer table only
        return [], []
    finally:
        graph.train(was_training)
    maps, additions = [], []
    for node in graph.graph.nodes:
        shape = getattr(node.meta.get("tensor_meta"), "shape", None)
        if shape is None or len(shape) != 4:
            continue
        maps.append((shape[1], shape[-1]))
        tensors = [arg for arg in node.args if isinstance(arg, fx.Node)]
        if node.target in (operator.add, operator.iadd, torch.add, "add", "add_") and len(tensors) == 2:
            additions.append((shape[1], shape[-1]))
    return [shape for index, shape in enumerate(maps) if index == 0 or maps[index - 1] != shape], additions


def _spatial_mean(node: fx.Node) -> bool:
    dims = _arg(node, 1, "dim")
    return node.target == "mean" and isinstance(dims, (tuple, list)) and set(dims) in ({2, 3}, {-2, -1})


def anatomy(model: nn.Module) -> Anatomy:
    modules = list(model.modules())
    graph, calls = _traced(model)
    convs = _convolutions(model, graph, calls)
    maps, additions = _shapes(graph)
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
        maps=tuple(maps) if graph is not None else None, additions=tuple(additions) if graph is not None else None,
        max_pool_4=any(isinstance(m, nn.MaxPool2d) and _largest(m.kernel_size) == 4 for m in modules)
        or any(node.target is F.max_pool2d and _largest(_arg(node, 1, "kernel_size")) == 4 for node in calls),
    )


MET = {True: "yes", False: "**no**", None: "cannot tell"}  # an item's `passed`, as the tables show it


@dataclass(frozen=True)
class Evidence:
    """What the items are measured on: the network, and after a run its params and metrics."""
    anatomy: Anatomy
    params: Params | None = None
    accuracy: float | None = None  # plain test accuracy, %
    accuracy_tta: float | None = None  # with the run's TTA, shown beside it; None without TTA
    explained_images: int | None = None  # misclassified images shown, each with GradCAM at every layer
    gradcam_layers: int = 0


@dataclass(frozen=True)
class Item:
    kind: str  # architecture, training, outputs or accuracy
    name: str
    required: str
    measured: str
    passed: bool | None  # None: cannot be told (a receptive field the walk cannot follow)
    source: str  # the seed line it comes from


@dataclass(frozen=True)
class Requirement:
    kind: str
    name: str
    required: str
    measure: Callable[[Evidence], tuple[str, bool | None]]
    source: str

    def item(self, evidence: Evidence) -> Item:
        measured, passed = self.measure(evidence)
        return Item(self.kind, self.name, self.required, measured, passed, self.source)


def _yes(flag: bool) -> tuple[str, bool]:
    return ("yes" if flag else "no"), flag


def _architecture(name: str, required: str, flag: Callable[[Anatomy], bool], source: str) -> Requirement:
    return Requirement("architecture", name, required, lambda e: _yes(flag(e.anatomy)), source)


def _params_below(limit: int, source: str) -> Requirement:
    return Requirement("architecture", "parameters", f"< {limit:,}",
                       lambda e: (f"{e.anatomy.params:,}", e.anatomy.params < limit), source)


def _field_above(limit: int, source: str) -> Requirement:
    def measure(e: Evidence) -> tuple[str, bool | None]:
        if e.anatomy.receptive_field is None:
            return f"unknown ({e.anatomy.receptive_field_unknown})", None
        return f"{e.anatomy.receptive_field} px", e.anatomy.receptive_field > limit
    return Requirement("architecture", "receptive field", f"> {limit} px", measure, source)


def _no_max_pooling(source: str) -> Requirement:
    return Requirement("architecture", "no max-pooling", "none",
                       lambda e: ("used", False) if e.anatomy.max_pooling else ("none", True), source)


def _layer_norm_only(e: Evidence) -> tuple[str, bool]:
    body = e.anatomy
    words = "LayerNorm only" if body.layer_norm and not body.batch_norm else \
        "BatchNorm used" if body.batch_norm else "no LayerNorm"
    return words, body.layer_norm and not body.batch_norm


def _in_order(wanted: list[tuple[int, int]], seen: tuple[tuple[int, int], ...]) -> bool:
    """Whether `wanted` appears in `seen` in this order (other maps may come between)."""
    rest = iter(seen)
    return all(shape in rest for shape in wanted)


def _words(shapes) -> str:
    return ", ".join(f"{channels} ch at {px} px" for channels, px in shapes) or "none"


TABLE_MAPS = [(64, 32), (128, 16), (256, 8), (512, 4)]  # prep, layer1, layer2, layer3 of the S9 custom ResNet
TABLE_RESIDUALS = [(128, 16), (512, 4)]  # layer1's and layer3's additions


def _table_maps(e: Evidence) -> tuple[str, bool | None]:
    maps = e.anatomy.maps
    if maps is None:
        return "unknown (torch.fx cannot trace its forward)", None
    stages = [shape for shape in maps if shape in TABLE_MAPS]
    return _words(dict.fromkeys(stages)), _in_order(TABLE_MAPS, maps)


def _table_residuals(e: Evidence) -> tuple[str, bool | None]:
    additions = e.anatomy.additions
    if additions is None:
        return "unknown (torch.fx cannot trace its forward)", None
    return _words(additions), _in_order(TABLE_RESIDUALS, additions)


def _epochs(count: int, source: str) -> Requirement:
    return Requirement("training", "epochs", str(count),
                       lambda e: (str(e.params.train.epochs), e.params.train.epochs == count), source)


def _training(name: str, required: str, used: Callable[[Params], bool], source: str) -> Requirement:
    return Requirement("training", name, required, lambda e: _yes(used(e.params)), source)


def _crop(padding: int, source: str) -> Requirement:
    return _training(f"RandomCrop(32, padding={padding})", "applied",
                     lambda p: p.augment.crop.p > 0 and p.augment.crop.padding == padding, source)


def _cutout(size: int, source: str) -> Requirement:
    return _training(f"CutOut {size}x{size}, mean-filled", "applied",
                     lambda p: p.augment.cutout.p > 0 and p.augment.cutout.size == size, source)


def _shown(count: int, source: str) -> list[Requirement]:
    """The gallery of misclassified images, and GradCAM on those same images, `count` of each."""
    return [
        Requirement("outputs", "misclassified images shown", f">= {count}",
                    lambda e: (str(e.explained_images), e.explained_images >= count), source),
        Requirement("outputs", "GradCAM on the same images", f">= {count}",
                    lambda e: (f"{e.explained_images} at each of {e.gradcam_layers} layer(s)",
                               e.explained_images >= count), source),
    ]


def _curves(source: str) -> Requirement:
    return Requirement("outputs", "loss curves of train and test", "both", lambda e: (
        "train and test" if e.params.train.test_curve else "train only", e.params.train.test_curve), source)


def _accuracy(target: float, source: str) -> Requirement:
    def measure(e: Evidence) -> tuple[str, bool]:
        tta = "" if e.accuracy_tta is None else f" ({e.accuracy_tta:.2f}% with TTA)"
        return f"{e.accuracy:.2f}%{tta}", e.accuracy >= target
    return Requirement("accuracy", "test accuracy, plain", f">= {target:g}%", measure, source)


@dataclass(frozen=True)
class Assignment:
    title: str
    seed: str  # the report in ../shared/seeds/ its items are read from
    items: tuple[Requirement, ...]
    not_checked: str = ""  # what of it is not measured (yet)

    @property
    def architecture(self) -> tuple[Requirement, ...]:
        return tuple(r for r in self.items if r.kind == "architecture")


S7_SEED, S8_SEED = "000_1a8ae5131926b78c.txt", "004_3196d1ca57a8b663.txt"
S9_SEED, S9_RESNET_SEED = "002_b7464361a51ceea4.txt", "001_d4c371c64f9203cf.txt"
ASSIGNMENTS = {  # keyed by the recipe (conf/recipe/) that trains the assignment; s7_early has none
    "s9_small_net": Assignment("S9 small net", S9_SEED, (
        _no_max_pooling("1. ... C1C2C3C40 (No MaxPooling, ...)"),
        _field_above(44, "2. Total RF must be more than 44"),
        _architecture("depthwise-separable convolution", "at least one", lambda b: b.depthwise_separable,
                      "3. one of the layers must use Depthwise Separable Convolution"),
        _architecture("dilated convolution", "at least one", lambda b: b.dilated,
                      "4. one of the layers must use Dilated Convolution"),
        _architecture("global average pooling", "yes", lambda b: b.global_average_pooling, "5. use GAP (compulsory)"),
        _params_below(200_000, "7. ... Total Params to be less than 200k"),
        _training("horizontal flip", "applied", lambda p: p.augment.hflip.p > 0, "6. ... horizontal flip"),
        _training("ShiftScaleRotate", "applied", lambda p: p.augment.shift_scale_rotate.p > 0,
                  "6. ... shiftScaleRotate"),
        _cutout(16, "6. ... coarseDropout (max_holes = 1, max_height=16px, ... fill_value=(mean of your dataset))"),
        _accuracy(85, "7. Achieve 85% accuracy"),
    )),
    "s7_early": Assignment("S7 early submission", S7_SEED, (
        _params_below(100_000, "2. EARLY SUBMISSIONS: ... Total Params to be less than 100k"),
    ), "its training and accuracy items: no recipe trains it"),
    "s7_resnet18": Assignment("S7 ResNet18", S7_SEED, (
        _epochs(20, "1. ... train resnet18 for 20 epochs"),
        _curves("1. ... show loss curves for test and train datasets"),
        *_shown(10, "1. ... a gallery of 10 misclassified images; gradcam output on 10 misclassified images"),
    ), "its network is ResNet18 itself: nothing of it is a measurable limit"),
    "s8_resnet18_ln": Assignment("S8 ResNet18 with LayerNorm", S8_SEED, (
        Requirement("architecture", "LayerNorm only", "no BatchNorm, LayerNorm used", _layer_norm_only,
                    "Must use LayerNormalization ONLY"),
        _epochs(40, "Train for 40 Epochs"),
        _crop(4, "RandomCrop(32, padding=4)"),
        _cutout(16, "CutOut(16x16)"),
        _training("Rotate(±5°)", "applied", lambda p: p.augment.rotate.p > 0 and p.augment.rotate.limit == 5,
                  "Rotate(±5°)"),
        _training("ReduceLROnPlateau", "used", lambda p: p.train.scheduler.name == "plateau",
                  "Must use ReduceLROnPlateau"),
        *_shown(20, "20 misclassified images; 20 GradCam output on the SAME misclassified images"),
    )),
    "s9_custom_resnet": Assignment("S9 custom ResNet", S9_RESNET_SEED, (
        Requirement("architecture", "the layer table's maps", "64 ch at 32 px, 128 at 16, 256 at 8, 512 at 4, in "
                    "order", _table_maps, "1. PrepLayer ... [64k]; 2. Layer1 ... [128k]; 3. Layer 2 ... [256k]; "
                    "4. Layer 4 ... [512k]"),
        Requirement("architecture", "residual additions", "at 128 ch 16 px and 512 ch 4 px", _table_residuals,
                    "2. ... Add(X, R1); 4. ... Add(X, R2)"),
        _architecture("MaxPool with kernel 4", "yes", lambda b: b.max_pool_4, "4. ... MaxPooling with Kernel Size 4"),
        _epochs(24, "6. ... Total Epochs = 24"),
        _training("OneCycle peaking at epoch 5", "yes", lambda p: p.train.scheduler.name == "onecycle"
                  and p.train.scheduler.onecycle.peak_epoch == 5, "6. Uses One Cycle Policy ... Max at Epoch = 5"),
        _training("no annihilation", "yes", lambda p: not p.train.scheduler.onecycle.anneal, "6. ... No Annihilation"),
        _crop(4, "7. ... RandomCrop 32, 32 (after padding of 4)"),
        _training("FlipLR", "applied", lambda p: p.augment.hflip.p > 0, "7. ... >> FlipLR"),
        _cutout(8, "7. ... Followed by CutOut(8, 8)"),
        _training("batch size", "512", lambda p: p.train.batch_size == 512, "8. Batch size = 512"),
    ), "the layer table's order of operations inside each layer (conv, then max-pool, BN, ReLU) is not compared"),
}


def architecture_items(assignment: str, model: nn.Module) -> list[Item]:
    evidence = Evidence(anatomy(model))
    return [requirement.item(evidence) for requirement in ASSIGNMENTS[assignment].architecture]


def run_rubric(params: Params, model: nn.Module, evaluation: dict, gradcam: dict) -> dict:
    """metrics/rubric.json: every item of the run's assignment (named by its recipe), with
    `passed` and `total` that `dvc exp show` lists; a recipe that is no assignment has no rubric
    and says so."""
    assignment = ASSIGNMENTS.get(params.recipe)
    if assignment is None:
        return {"assignment": None, "note": f"recipe {params.recipe} is not a course assignment; those are "
                                            f"{', '.join(name for name in ASSIGNMENTS if name != 's7_early')}"}
    tta = evaluation["accuracy"] if evaluation["tta"] != "none" else None
    evidence = Evidence(anatomy(model), params, evaluation["accuracy_without_tta"], tta,
                        gradcam["explained_images"], len(gradcam["layers"]))
    items = [requirement.item(evidence) for requirement in assignment.items]
    return {"assignment": params.recipe, "title": assignment.title, "seed": assignment.seed,
            "passed": sum(bool(item.passed) for item in items), "total": len(items),
            "items": [vars(item) for item in items], "not_checked": assignment.not_checked or None}


def verdict(title: str, items: list[Item], what: str = "architecture items") -> str:
    """One line: how many items are met, and what the missed ones measured."""
    missed = [f"{item.name} {item.measured}, required {item.required}" for item in items if item.passed is False]
    unknown = [item.name for item in items if item.passed is None]
    line = f"meets {title}'s {what}: {sum(bool(item.passed) for item in items)} of {len(items)}"
    if missed:
        line += "; missed: " + "; ".join(missed)
    if unknown:
        line += "; cannot tell: " + ", ".join(unknown)
    return line
