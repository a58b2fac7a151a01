"""params.yaml is checked before any stage works: each mistake gives one line naming the key."""
from __future__ import annotations

import copy

import pytest
import yaml

from cifarlab.config import ParamsError, load_params, parse_params
from conftest import default_params_dict, param_parent


@pytest.fixture
def params():
    return default_params_dict()


def test_shipped_params_are_valid(tmp_path):
    shipped = tmp_path / "params.yaml"
    shipped.write_text(yaml.safe_dump(default_params_dict()))
    load_params(shipped)


def _set(params, dotted, value):
    params = copy.deepcopy(params)
    node, last = param_parent(params, dotted)
    node[last] = value
    return params


@pytest.mark.parametrize("key, value, message", [
    ("model", "resnet50", "is not a network here; allowed: auto, airbench93, airbench94, custom_resnet, resnet18, "
                          "resnet18_ln, s9net, tiny"),
    ("train.epochs", 0, "train.epochs = 0"),
    ("train.epochs", "ten", "a number of epochs >= 1 or 'auto'"),
    ("train.batch_size", -8, "train.batch_size = -8"),
    ("train.epochs", True, "a number of epochs"),
    ("augment.hflip.p", 1.5, "augment.hflip.p = 1.5 is not allowed; expected a number >= 0.0 and <= 1.0"),
    ("train.scheduler.name", "warm", "one of onecycle, linear, plateau, step, cosine, none"),
        ("evaluate.tta", "flip+", "one of none, flip, flip_translate"),
        ("augment.crop.fill", "zero", "one of mean, reflect"),
    ("train.optimizer.name", "rmsprop", "one of sgd, muon, adam, adamw"),
    ("train.scheduler.onecycle.max_lr", "fast", "a number > 0 or 'auto'"),
    ("train.optimizer.nesterov", "yes", "true or false"),
    ("misclassify.order", "worst", "one of confidence, index, random, per_class"),
    ("gradcam.layers", "layer3", "a non-empty list"),
    ("gradcam.faithfulness.images", 0, "gradcam.faithfulness.images = 0"),
    ("gradcam.faithfulness.fractions", [0.5, 1.0], "= 1.0 is not allowed; expected a number > 0 and < 1"),
    ("data.subset.train", -1, "data.subset.train"),
    ("train.optimizer.lr", 0, "a number > 0"),
    ("train.optimizer.momentum", 1, "train.optimizer.momentum = 1 is not allowed; expected a number >= 0 and < 1"),
])
def test_bad_values_name_key_value_and_what_is_allowed(params, key, value, message):
    with pytest.raises(ParamsError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_params(_set(params, key, value))


def test_misspelled_key_suggests_the_right_one(params):
    params["train"]["epoch"] = params["train"].pop("epochs")
    with pytest.raises(ParamsError, match=r"unknown key 'train\.epoch' \(did you mean 'train\.epochs'\?\)"):
        parse_params(params)


def test_unknown_top_level_key_lists_allowed_keys(params):
    params["optimiser"] = {}
    with pytest.raises(ParamsError, match="allowed at the top level: recipe, model, plan, data, augment"):
        parse_params(params)


def test_missing_key_is_reported(params):
    del params["misclassify"]["count"]
    with pytest.raises(ParamsError, match="missing key 'misclassify.count'"):
        parse_params(params)


def test_init_from_null_means_random_weights_as_the_empty_string_does(params):
    assert parse_params(_set(params, "train.init_from", None)).train.init_from == ""


def test_a_key_given_twice_is_refused_as_dvc_refuses_it(tmp_path):
    """PyYAML keeps the last of two equal keys in silence; DVC refuses the file."""
    path = tmp_path / "params.yaml"
    text = yaml.safe_dump(default_params_dict(), sort_keys=False)
    path.write_text(text.replace("model: ", "model: tiny\nmodel: ", 1))
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML \(.*key 'model' is given twice \(line 3\)"):
        load_params(path)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "params.yaml"
    evil.write_text("model: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(evil)


def test_a_short_run_needs_no_second_flag(params):
    """train.epochs below the OneCycle peak is valid: the peak moves (see test_optim)."""
    parse_params(_set(params, "train.epochs", 1))


def test_the_replaced_flip_tta_key_says_what_replaced_it(params):
    params["evaluate"]["flip_tta"] = True
    replaced = r"^params.yaml: evaluate.flip_tta was replaced by evaluate.tta: none, flip or flip_translate$"
    with pytest.raises(ParamsError, match=replaced):
        parse_params(params)


def test_misclassify_orders_in_config_are_the_ones_the_gallery_can_title():
    """config lists the orders as literals (so it imports nothing from explain/); they must match."""
    from cifarlab.config import ORDERS
    from cifarlab.misclassify.choose import TITLES
    assert set(ORDERS) == set(TITLES)
