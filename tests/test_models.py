"""The model zoo: every model trains on 32x32 images for any class count, with the assignments' sizes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cifarlab.core.errors import UserError
from cifarlab.models import ZOO
from cifarlab.models.blocks import SubgridDilatedConv2d
from cifarlab.models.registry import build_model, gradcam_candidates, gradcam_default, map_sizes

EXPECTED_PARAMS = {"resnet18": 11_173_962, "resnet18_ln": 11_173_962, "custom_resnet": 6_573_130}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("num_classes", [10, 3])
def test_forward_and_backward(name, num_classes):
    model = build_model(name, num_classes)
    logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, num_classes)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0.99 * count(model)  # few frozen


@pytest.mark.parametrize("name, expected", EXPECTED_PARAMS.items())
def test_exact_parameter_counts(name, expected):
    assert count(build_model(name, 10)) == expected


def test_small_models_stay_under_their_budgets():
    assert count(build_model("s9net", 10)) < 200_000
    assert count(build_model("tiny", 10)) < 100_000


def test_resnet18_ln_has_no_batchnorm():
    model = build_model("resnet18_ln", 10)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert sum(isinstance(m, nn.GroupNorm) and m.num_groups == 1 for m in model.modules()) == 20


@pytest.mark.parametrize("name", ["s9net", "tiny"])
def test_compact_models_use_depthwise_and_dilated_convs_and_no_maxpool(name):
    convs = [m for m in build_model(name, 10).modules() if isinstance(m, nn.Conv2d)]
    assert any(c.groups == c.in_channels > 1 for c in convs)
    assert any(c.dilation[0] > 1 for c in convs)
    assert not any(isinstance(m, nn.MaxPool2d) for m in build_model(name, 10).modules())


@pytest.mark.parametrize("name", ZOO)
def test_gradcam_layers_include_a_fine_and_a_coarse_map(name):
    """Maps of about 16 and 8 pixels (airbench94's unpadded whitening layer makes them 15 and 7)."""
    model = build_model(name, 10)
    layers = gradcam_candidates(model)
    sizes = set(map_sizes(model, list(layers), 32).values())
    assert sizes & {15, 16} and sizes & {7, 8}
    assert gradcam_default(model) in layers


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_network_declares_its_gradcam_layers_on_its_class_and_they_exist(name):
    model = build_model(name, 10)
    assert type(model).gradcam_layers and type(model).gradcam_default
    assert all(isinstance(model.get_submodule(layer), nn.Module) for layer in type(model).gradcam_layers), name


def test_unknown_model_lists_the_known_ones():
    known = "airbench93, airbench94, custom_resnet, resnet18, resnet18_ln, s9net, tiny"
    with pytest.raises(UserError, match=f"known models: {known}"):
        build_model("vgg16", 10)


@pytest.mark.parametrize("groups, size", [(8, (8, 8)), (1, (9, 8)), (8, (7, 10))])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_a_dilated_conv_on_sub_grids_equals_pytorchs_dilated_conv(groups, size, layout):
    """Same outputs, input gradients and weight gradients as nn.Conv2d, for odd sizes too (the
    sub-grids then differ in size), and the layout the input came in."""
    torch.manual_seed(0)
    reference = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=groups, bias=False)
    subgrid = SubgridDilatedConv2d(8, 8, 3, padding=2, dilation=2, groups=groups, bias=False)
    subgrid.load_state_dict(reference.state_dict())
    x = torch.randn(3, 8, *size).to(memory_format=layout)
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outputs = [reference(inputs[0]), subgrid(inputs[1])]
    torch.testing.assert_close(outputs[1], outputs[0])
    assert outputs[1].is_contiguous(memory_format=layout)
    weights = torch.randn_like(outputs[0])
    for out in outputs:
        (out * weights).sum().backward()
    torch.testing.assert_close(inputs[1].grad, inputs[0].grad)
    torch.testing.assert_close(subgrid.weight.grad, reference.weight.grad)


def test_the_compact_models_run_their_stride_1_dilated_convs_on_sub_grids():
    dilated = [m for name in ("s9net", "tiny") for m in build_model(name, 10).modules()
               if isinstance(m, nn.Conv2d) and m.dilation[0] > 1]
    assert dilated and all(isinstance(m, SubgridDilatedConv2d) == (m.stride[0] == 1) for m in dilated)
    assert any(isinstance(m, SubgridDilatedConv2d) for m in dilated)
