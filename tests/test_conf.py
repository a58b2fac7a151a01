"""conf/ composes params.yaml as `dvc exp run -S` does: the committed params.yaml is the
defaults, every model brings its own recipe, every named recipe means exactly what its old
one-line command set, and a sweep queues one experiment per value."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from cifarlab.conf import HEADER, compose
from cifarlab.config import GRADCAM_LAYERS, parse_params
from cifarlab.models import MODELS
from conftest import ROOT, param_parent

RECIPES = sorted(path.stem for path in (ROOT / "conf" / "recipe").glob("*.yaml"))
OLD_COMMANDS = ROOT / "tests" / "data" / "recipe_commands.txt"


def test_committed_params_yaml_is_what_conf_composes_with_a_header_saying_where_to_edit():
    text = (ROOT / "params.yaml").read_text()
    assert text.startswith(HEADER), "params.yaml: regenerate it with `python -m cifarlab.conf > params.yaml`"
    assert yaml.safe_load(text) == compose(), "params.yaml: regenerate it with `python -m cifarlab.conf > params.yaml`"
    assert (ROOT / "conf" / "config.yaml").read_text().count("#") > 60  # the explanations live there


def test_dvc_composes_params_with_hydra():
    config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"\[hydra\]\s*\n\s*enabled = True", config), config


def test_every_model_has_its_own_defaults_and_they_are_valid():
    assert sorted(path.stem for path in (ROOT / "conf" / "model").glob("*.yaml")) == sorted(MODELS)
    for name in MODELS:
        params = parse_params(compose([f"model={name}"]))
        assert params.model == name and params.recipe == "default"
    default = parse_params(compose())
    s9net = parse_params(compose(["model=s9net"]))
    assert default.model == "airbench94" and default.train.optimizer.name == "muon"
    # the swap brings s9net a recipe of its own, not airbench94's knobs
    assert s9net.train.optimizer.name == "sgd" and s9net.train.optimizer.norm_bias_lr_scale == 1
    assert s9net.train.batch_size != default.train.batch_size


def old_commands() -> dict[str, list[tuple[str, object]]]:
    """Per recipe, the (key, value) pairs its old `dvc exp run` command set, parsed as Hydra parses -S."""
    parser = OverridesParser.create()
    commands = {}
    for line in OLD_COMMANDS.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, command = line.split(": ", 1)
        argv = shlex.split(command)
        overrides = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-S"]
        commands[name] = [(o.key_or_group, o.value()) for o in map(parser.parse_override, overrides)]
    return commands


def test_every_assignment_recipe_sets_exactly_what_its_old_command_set():
    commands = old_commands()
    assert sorted(commands) == sorted(set(RECIPES) - {"quick"})
    for name, pairs in commands.items():
        composed = compose([f"recipe={name}"])
        parse_params(composed)
        assert composed["recipe"] == name
        assert len(pairs) >= 30, name  # each old command reset every knob any recipe changes
        for key, value in pairs:
            node, last = param_parent(composed, key)
            assert node[last] == value, (name, key, node[last], value)


def test_command_line_values_win_over_a_recipe_and_a_failed_compose_writes_nothing(tmp_path):
    params = compose(["recipe=s7_resnet18", "train.epochs=3", "model=tiny"])
    assert params["train"]["epochs"] == 3 and params["model"] == "tiny" and params["recipe"] == "s7_resnet18"
    from hydra.errors import HydraException
    with pytest.raises(HydraException, match="resnet50"):
        compose(["model=resnet50"])


def test_every_recipe_command_is_one_short_line():
    text = (ROOT / "docs" / "recipes.md").read_text()
    commands = [line for line in text.splitlines() if line.startswith("dvc exp run")]
    assert len(commands) >= len(RECIPES) - 1
    assert all(len(line.split("  #")[0].rstrip()) <= 100 and not line.endswith("\\") for line in commands), commands
    named = [re.search(r"-S recipe=(\w+)$", line.split("  #")[0].rstrip()) for line in commands if " -n " in line]
    assert sorted(match.group(1) for match in named if match) == sorted(set(RECIPES) - {"quick"})


def test_every_model_default_gradcam_layer_is_declared():
    assert set(GRADCAM_LAYERS) == set(MODELS)


@pytest.mark.slow
def test_a_seed_sweep_queues_one_experiment_per_seed_with_those_params(tmp_path):
    from test_pipeline import dvc, make_project, sh
    project = make_project(tmp_path / "project", "cifar10", model="airbench94", quick=False)
    dvc("exp", "run", "--queue", "-S", "train.seed=range(0,2)", cwd=project)
    status = dvc("queue", "status", cwd=project)
    tasks = re.findall(r"^([0-9a-f]{7})\s+\S+\s+.*Queued", status, flags=re.M)
    assert len(tasks) == 2, status
    seeds = []
    for task in tasks:
        params = yaml.safe_load(sh("git", "show", f"{task}:params.yaml", cwd=project))
        seeds.append(params["train"].pop("seed"))
        expected = yaml.safe_load((Path(project) / "params.yaml").read_text())
        expected["train"].pop("seed")
        assert params == expected
    assert sorted(seeds) == [0, 1]
