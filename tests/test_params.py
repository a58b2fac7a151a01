"""params.yaml is checked before any stage works: each mistake gives one line naming the key."""
from __future__ import annotations

import copy

import pytest
import yaml

from cifarlab.params import ParamsError, load_params, validate
from conftest import ROOT


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_are_valid():
    load_params(ROOT / "params.yaml")


def _set(params, dotted, value):
    params = copy.deepcopy(params)
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    return params


@pytest.mark.parametrize("key, value, message", [
    ("model", "resnet50", "one of custom_resnet, resnet18, resnet18_ln, s9net, tiny"),
    ("train.epochs", 0, "train.epochs = 0"),
    ("train.epochs", "ten", "an integer >= 1"),
    ("train.batch_size", -8, "train.batch_size = -8"),
    ("train.epochs", True, "an integer"),
    ("augment.hflip.p", 1.5, "augment.hflip.p = 1.5 is not allowed; expected a number >= 0.0 and <= 1.0"),
    ("train.scheduler.name", "cosine", "one of onecycle, none"),
    ("data.subset.train", -1, "data.subset.train"),
    ("train.optimizer.lr", 0, "a number > 0"),
])
def test_bad_values_name_key_value_and_what_is_allowed(params, key, value, message):
    with pytest.raises(ParamsError, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate(_set(params, key, value))


def test_misspelled_key_suggests_the_right_one(params):
    params["train"]["epoch"] = params["train"].pop("epochs")
    with pytest.raises(ParamsError, match=r"unknown key 'train\.epoch' \(did you mean 'train\.epochs'\?\)"):
        validate(params)


def test_unknown_top_level_key_lists_allowed_keys(params):
    params["optimiser"] = {}
    with pytest.raises(ParamsError, match="allowed at the top level: model, data, augment"):
        validate(params)


def test_missing_key_is_reported(params):
    del params["misclassify"]["count"]
    with pytest.raises(ParamsError, match="missing key 'misclassify.count'"):
        validate(params)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "params.yaml"
    evil.write_text("model: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(evil)
