"""The model zoo: every model trains on 32x32 images for any class count, with the assignments' sizes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cifarlab.errors import UserError
from cifarlab.models import model_names
from cifarlab.models.facts import gradcam_layer_sizes
from cifarlab.models.registry import build_model, gradcam_layer

EXPECTED_PARAMS = {"resnet18": 11_173_962, "resnet18_ln": 11_173_962, "custom_resnet": 6_573_130}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", model_names())
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


@pytest.mark.parametrize("name", model_names())
def test_gradcam_layers_include_a_fine_and_a_coarse_map(name):
    """Maps of about 16 and 8 pixels (airbench94's unpadded whitening layer makes them 15 and 7)."""
    model = build_model(name, 10)
    sizes = set(gradcam_layer_sizes(model, 32).values())
    assert sizes & {15, 16} and sizes & {7, 8}
    assert model.default_gradcam_layer in model.gradcam_layers


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UserError, match="known models: airbench94, custom_resnet, resnet18, resnet18_ln, s9net, tiny"):
        build_model("vgg16", 10)


def test_unknown_gradcam_layer_lists_valid_ones():
    with pytest.raises(UserError, match="allowed: default, c1, c2, c3, c4"):
        gradcam_layer(build_model("s9net", 10), "layer9")
