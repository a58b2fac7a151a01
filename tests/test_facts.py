"""Model facts are computed: receptive field on hand-worked nets, MACs, and the torchsummary
table of resnet18 against the one in the S7 assignment's report."""
from __future__ import annotations

import re

import pytest
from torch import nn

from cifarlab.facts import macs_per_image, parameter_count, receptive_field
from cifarlab.models.registry import build_model
from cifarlab.report.render import model_summary
from conftest import ROOT

SEEDS = ROOT.parent / "shared" / "seeds"


def test_receptive_field_of_three_stacked_3x3_convs_is_7():
    net = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(3)])
    assert receptive_field(net) == 7


def test_receptive_field_with_pooling_and_dilation():
    # conv3 -> rf 3; maxpool 2/2 -> rf 4, jump 2; conv3 -> 4 + 2*2 = 8; conv3 dilation 2 -> 8 + 2*2*2 = 16
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                        nn.Conv2d(8, 8, 3, padding=2, dilation=2))
    assert receptive_field(net) == 16


class _Residual(nn.Module):
    """conv3 stride 2 beside a 1x1 stride-2 shortcut, then a 3x3: 3 -> (3 + 2*2) = 7, not 1x1's 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, stride=2, padding=1)
        self.shortcut = nn.Conv2d(3, 3, 1, stride=2)
        self.after = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.after(self.conv(x) + self.shortcut(x))


def test_receptive_field_takes_the_wider_branch_and_one_stride():
    assert receptive_field(_Residual()) == 7


def test_resnet18_receptive_field_and_macs():
    model = build_model("resnet18", 10)
    assert receptive_field(model) == 109  # 3 + 4*2 + (2 + 3*4) + (4 + 3*8) + (8 + 3*16)
    assert 0.55e9 < macs_per_image(model) < 0.56e9  # the published 0.56 GMACs


def test_s9net_receptive_field_exceeds_44():
    assert receptive_field(build_model("s9net", 10)) > 44


def test_macs_of_a_single_conv_are_counted_exactly():
    net = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert macs_per_image(net, 32) == 32 * 32 * 8 * 3 * 9


def _table_rows(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r"^\s+(\w+-\d+)\s+(\[[-\d, ]+\])\s+([\d,]+)$", text, flags=re.M)


@pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared/seeds not present")
def test_resnet18_summary_matches_seed_000_layer_by_layer():
    seed = next(SEEDS.glob("000_*.txt")).read_text()
    expected = _table_rows(seed.split("### Model Summary")[1].split("Total params")[0])
    ours = _table_rows(model_summary(build_model("resnet18", 10), 32))
    assert len(expected) == 49
    assert ours == expected


def test_summary_reports_the_parameter_total():
    model = build_model("tiny", 10)
    assert f"Total params: {parameter_count(model):,}" in model_summary(model, 32)


def test_readme_model_table_is_the_computed_one():
    from cifarlab.facts import models_table

    assert models_table() in (ROOT / "README.md").read_text()
