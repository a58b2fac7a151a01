"""conf/ composes params.yaml as `dvc exp run -S` does: the committed params.yaml is the
defaults, every model brings its own recipe, every named recipe means exactly what its old
one-line command set, and a sweep queues one experiment per value."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from cifarlab.conf import COMPOSED, HEADER, compose, params_text
from cifarlab.config import parse_params
from cifarlab.models import ZOO
from conftest import ROOT, default_params_dict, make_arrays, param_parent, write_image_tree

RECIPES = sorted(path.stem for path in (ROOT / "conf" / "recipe").glob("*.yaml"))
ASSIGNMENTS = sorted(set(RECIPES) - {"quick", "default", "fine_tune"})  # the course assignments' recipes
OLD_COMMANDS = ROOT / "tests" / "data" / "recipe_commands.txt"


def test_generated_params_yaml_is_what_conf_composes_and_says_where_to_edit():
    """The committed params.yaml, as the project ships it (with its header; a user's own run replaces
    it, which is theirs to commit), is conf/'s defaults: what `dvc repro` on a fresh clone runs."""
    text = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True, text=True).stdout
    if not any(line.startswith(COMPOSED) for line in text.splitlines()[:8]):  # DVC writes none: a run of your own
        pytest.skip("params.yaml holds a run of your own (committed after `dvc exp run`), not the generated defaults")
    assert text == params_text(), "params.yaml: regenerate it: `cifarlab conf --out params.yaml`"  # header and all
    assert text.startswith(HEADER)
    assert (ROOT / "conf" / "config.yaml").read_text().count("#") > 60  # the explanations live there


def test_the_tests_start_from_conf_defaults_whatever_params_yaml_holds(tmp_path):
    """The tests' defaults (conftest) come from conf/, not from a params.yaml of a user's own run:
    with one in the working directory that sets other values, they are still conf/config.yaml's."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params_dict(**{"train.epochs": 999, "train.seed": 7})))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import conftest; "
            "train = conftest.default_params_dict()['train']; print(train['epochs'], train['seed'])")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests")], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    written = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["train"]
    assert out == [str(written["epochs"]), str(written["seed"])]


def test_conf_out_writes_params_whole_or_leaves_them_as_they_were(tmp_path):
    """`cifarlab conf --out params.yaml` after an edit: a composition that fails (a bad
    override, a broken conf/) leaves the file as it was, not empty as `> params.yaml` would."""
    out = tmp_path / "params.yaml"
    out.write_text("before\n")
    bad = subprocess.run([sys.executable, "-m", "cifarlab.conf", "model=vgg", "--out", str(out)], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and out.read_text() == "before\n"
    subprocess.run([sys.executable, "-m", "cifarlab.conf", "recipe=quick", "--out", str(out)], check=True)
    assert out.read_text().startswith(HEADER) and yaml.safe_load(out.read_text()) == compose(["recipe=quick"])


def test_dvc_composes_params_with_hydra():
    config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"\[hydra\]\s*\n\s*enabled = True", config), config


def test_every_model_has_its_own_defaults_and_they_are_valid():
    recipes = {path.stem for path in (ROOT / "conf" / "model").glob("*.yaml")}
    own = {path.stem for path in (ROOT / "nets").glob("*.py")}  # a student's networks, if any
    assert {*ZOO, "auto"} <= recipes <= {*ZOO, "auto", *own}
    for name in ZOO:
        params = parse_params(compose([f"model={name}"]))
        assert params.model == name and params.recipe == "default"
    default = parse_params(compose())
    s9net = parse_params(compose(["model=s9net"]))
    assert default.model == "auto" and default.train.optimizer.name == "muon"
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
    assert sorted(commands) == ASSIGNMENTS
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
    assert len(commands) >= len(ASSIGNMENTS)
    assert all(len(line.split("  #")[0].rstrip()) <= 100 and not line.endswith("\\") for line in commands), commands
    named = [re.search(r"-S recipe=(\w+)$", line.split("  #")[0].rstrip()) for line in commands if " -n " in line]
    assert sorted(match.group(1) for match in named if match) == ASSIGNMENTS


def test_the_docs_table_of_the_models_own_epochs_is_what_conf_sets():
    """docs/recipes.md, "The models' own defaults": each row's epochs are what -S model=NAME trains."""
    text = (ROOT / "docs" / "recipes.md").read_text()
    table = text.split("## The models' own defaults", 1)[1].split("\n\n", 2)[1]
    rows = {cells[1].strip(" `"): cells[-2].strip() for cells in (line.split("|") for line in table.splitlines()[2:])}
    assert set(rows) == {"auto (the default)", *ZOO}
    for name in ZOO:
        assert rows[name] == str(parse_params(compose([f"model={name}"])).train.epochs), name
    ladder = [str(rung.epochs) for rung in parse_params(compose()).plan.ladder]
    assert rows["auto (the default)"] == ", ".join(ladder[:-1]) + " or " + ladder[-1]


def test_the_default_recipe_can_be_named_and_means_no_recipe():
    """params.yaml says `recipe: default`; `-S recipe=default` selects exactly that, for any model."""
    assert compose(["recipe=default"]) == compose()
    assert compose(["model=s9net", "recipe=default"]) == compose(["model=s9net"])


@pytest.mark.slow
def test_the_sweep_commands_queue_one_experiment_per_value_with_those_params(tmp_path):
    """docs/recipes.md's sweeps, as written (queued, not run): a seed sweep of the default, one of
    a recipe, and the four assignments; each queued experiment holds its params."""
    from test_pipeline import dvc, make_project, readme_commands, sh
    commands = [c for c in readme_commands("dvc exp run --queue", section="Sweeps")]
    assert len(commands) == 3, commands
    project = make_project(tmp_path / "project", "cifar10", model="auto", quick=False)
    for command in commands:
        sh("bash", "-c", command, cwd=project)
    status = dvc("queue", "status", cwd=project)
    tasks = re.findall(r"^([0-9a-f]{7})\s+\S+\s+.*Queued", status, flags=re.M)
    assert len(tasks) == 3 + 2 + 4, status
    queued = [yaml.safe_load(sh("git", "show", f"{task}:params.yaml", cwd=project)) for task in tasks]
    runs = sorted((params["recipe"], params["train"]["seed"]) for params in queued)
    assert runs == sorted([("default", 0), ("default", 1), ("default", 2), ("s9_small_net", 0), ("s9_small_net", 1),
                           ("s7_resnet18", 42), ("s8_resnet18_ln", 42), ("s9_custom_resnet", 42),
                           ("s9_small_net", 42)]), runs
    for params in queued:  # each is exactly its composition: the project's defaults and its overrides
        overrides = [f"recipe={params['recipe']}"] if params["recipe"] != "default" else []
        expected = compose([*overrides, f"train.seed={params['train']['seed']}"], conf=Path(project) / "conf")
        assert params == expected, params["recipe"]


# params-dependent tests that take seconds; every other test reads params the same way (conftest.default_params)
PARAMS_DEPENDENT = ["tests/test_conf.py", "tests/test_params.py", "tests/test_report.py", "tests/test_augment.py",
                    "tests/test_optim.py", "tests/test_muon.py", "tests/test_device_data.py"]


@pytest.mark.slow
def test_the_tests_pass_after_the_readme_baseline_commit_of_a_first_run(tmp_path):
    """A user runs the Quick start's first run and makes its baseline commit: params.yaml now holds
    that run (a subset, 5 epochs). The tests start from conf/'s defaults, so they still pass."""
    from test_pipeline import _env, readme_commands, sh
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(ROOT), str(clone), cwd=tmp_path)
    for path in sh("git", "ls-files", "-mo", "--exclude-standard", cwd=ROOT).splitlines():  # this checkout's edits
        if (ROOT / path).is_file():
            (clone / path).parent.mkdir(parents=True, exist_ok=True)
            (clone / path).write_bytes((ROOT / path).read_bytes())
    (first,) = readme_commands("dvc exp run -n first ", section="Quick start")
    overrides = [argv for flag, argv in zip(shlex.split(first), shlex.split(first)[1:]) if flag == "-S"]
    (clone / "params.yaml").write_text(yaml.safe_dump(compose(overrides), sort_keys=False))  # as dvc exp run writes it
    (baseline,) = [c for c in readme_commands("git add -A", section="Quick start")]
    sh("bash", "-c", baseline, cwd=clone)
    assert yaml.safe_load(sh("git", "show", "HEAD:params.yaml", cwd=clone))["recipe"] == "quick"
    env = {**_env(), "PYTHONPATH": str(clone / "src")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider",
                           *PARAMS_DEPENDENT], cwd=clone, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "skipped" in done.stdout  # the generated-params check steps aside


def _edited(text: str, **changes) -> str:
    """params.yaml's text with dotted-key values changed by hand, its comments kept."""
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    values = yaml.safe_load(text)
    for dotted, value in changes.items():
        node, last = param_parent(values, dotted)
        node[last] = value
    return header + yaml.safe_dump(values, sort_keys=False)


def test_a_hand_edit_of_composed_params_is_named_in_one_line(tmp_path, capsys):
    """A params.yaml from `cifarlab conf`, edited by hand: the run uses the edit and one
    line names the keys the next `dvc exp run` would drop; unedited, or only reordered, nothing."""
    from cifarlab.config import load_params

    path = tmp_path / "params.yaml"
    composed = params_text(["recipe=quick", "train.seed=3"])
    path.write_text(composed)
    assert load_params(path).train.seed == 3 and capsys.readouterr().err == ""
    values = yaml.safe_load(composed)
    path.write_text(composed.split("\n\n")[0] + "\n\n" + yaml.safe_dump(values, sort_keys=True))  # reordered
    load_params(path)
    assert capsys.readouterr().err == ""
    path.write_text(_edited(composed, **{"train.epochs": 7, "evaluate.tta": "none"}))
    assert load_params(path).train.epochs == 7
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and note.startswith(f"note: {path}: evaluate.tta, train.epochs edited by hand")
    assert "`dvc exp run --no-hydra`" in note


def test_a_bare_dvc_exp_run_recomposes_params_and_no_hydra_keeps_a_hand_edit(tmp_path):
    """What docs/recipes.md says, run: after a hand edit, a plain `dvc exp run` trains conf/'s
    values (the edit gone), and `dvc exp run --no-hydra` trains the edited file."""
    from test_pipeline import dvc, git_commit, make_project, sh

    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=2, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree), data__val=0)
    sh("python", "-m", "cifarlab.conf", "--out", "params.yaml", cwd=project)  # with the header, as committed
    composed = yaml.safe_load((project / "params.yaml").read_text())
    edited = _edited((project / "params.yaml").read_text(), **{"data.subset.test": 6})
    (project / "params.yaml").write_text(edited)
    git_commit(project, "a hand edit")
    log = dvc("exp", "run", "download", cwd=project)
    assert yaml.safe_load((project / "params.yaml").read_text()) == composed
    assert ("note: the committed params.yaml sets data.subset.test = 6 by hand, which this run's params.yaml does "
            "not: `dvc exp run` recomposed it from conf/; set data.subset.test with `dvc exp run -S "
            "data.subset.test=6` (or in conf/config.yaml, for good)") in log
    (project / "params.yaml").write_text(edited)
    dvc("exp", "run", "--no-hydra", "download", cwd=project)
    assert yaml.safe_load((project / "params.yaml").read_text())["data"]["subset"]["test"] == 6
    with np.load(project / "data" / "prepared.npz") as prepared:
        assert len(prepared["y_test"]) == 6
