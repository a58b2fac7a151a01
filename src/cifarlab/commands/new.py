"""`cifarlab new NAME`: start a network of your own. It writes nets/NAME.py, a plain
PyTorch `class Net(nn.Module)` to edit (or to replace with your notebook's), and
conf/model/NAME.yaml, its training recipe, so that `dvc exp run -S model=NAME` trains it through
every stage. Nothing in cifarlab itself needs an edit."""
from __future__ import annotations

import argparse
import keyword
import sys
from pathlib import Path

from cifarlab.config import AUTO
from cifarlab.core.errors import refuse, run_command
from cifarlab.core.io import write_text
from cifarlab.models import NETS, ZOO

CONF_MODELS = Path("conf/model")

# A starting point in the shape the S9 assignment asks for (../docs/own-network.md): four blocks,
# no max-pooling (stride-2 convolutions shrink the maps), a depthwise-separable and a dilated
# convolution, global average pooling; 62,890 parameters, a receptive field of 51 px.
NETWORK = '''"""{name}: my network for CIFAR-10 (`dvc exp run -S model={name}` trains it)."""
import torch
from torch import nn


def conv(cin, cout, stride=1, dilation=1, groups=1, kernel=3):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation,
                  groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


def separable(cin, cout, stride=1):
    """A depthwise 3x3 convolution, then a pointwise 1x1 one."""
    return nn.Sequential(conv(cin, cin, stride=stride, groups=cin), conv(cin, cout, kernel=1))


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.c1 = nn.Sequential(conv(3, 16), conv(16, 32))
        self.c2 = nn.Sequential(conv(32, 32, stride=2), separable(32, 48))
        self.c3 = nn.Sequential(conv(48, 48, stride=2, dilation=2), separable(48, 64))
        self.c4 = nn.Sequential(separable(64, 96, stride=2), separable(96, 128))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.c4(self.c3(self.c2(self.c1(x))))
        return self.fc(torch.flatten(self.gap(x), 1))
'''

RECIPE = '''# @package _global_
# {name}: your network (nets/{name}.py) with the SGD recipe every network but airbench94 starts
# from (conf/base/sgd.yaml). Change what you like here; conf/config.yaml explains every key.
defaults:
  - /base/sgd
model: {name}
train:
  epochs: 12
'''


def refusal(name: str) -> str | None:
    """Why `name` cannot be a new network here, or None."""
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        return (f"{name!r} is not a usable name: use a Python identifier of letters, digits and _ that does not "
                "start with _ or a digit (e.g. my_net)")
    if name in ZOO or name == AUTO:
        return f"{name} is a model cifarlab already has; choose another name (e.g. my_{name})"
    for path in (NETS / f"{name}.py", CONF_MODELS / f"{name}.yaml"):
        if path.exists():
            return f"{path} exists; choose another name, or edit that file"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifarlab new", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the network's name: a Python identifier, e.g. my_net")
    name = parser.parse_args(argv).name
    if not Path("dvc.yaml").is_file() or not CONF_MODELS.is_dir():
        refuse("run this in the project folder (where dvc.yaml and conf/ are)")
    why = refusal(name)
    if why:
        refuse(why)
    network, recipe = NETS / f"{name}.py", CONF_MODELS / f"{name}.yaml"
    write_text(network, NETWORK.format(name=name))
    write_text(recipe, RECIPE.format(name=name))
    print(f"wrote {network} (your network: edit it, or paste your notebook's Net over it) and {recipe} "
          f"(its training recipe)\nnext: dvc exp run -S model={name}")


if __name__ == "__main__":
    sys.exit(run_command(main))
