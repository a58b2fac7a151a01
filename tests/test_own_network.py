"""Your own network: one file in nets/, built, checked and trained by name like the zoo's. The
networks here are written as a student writes them in a course notebook."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch
import yaml

from cifarlab.commands import new
from cifarlab.core.errors import UserError
from cifarlab.facts import Untraceable, receptive_field
from cifarlab.models import model_names, source_file
from cifarlab.models.checkpoint import load_checkpoint, save_checkpoint
from cifarlab.models.registry import NetworkError, build_model, explained_layers, gradcam_default
from cifarlab.stats import Stats
from conftest import CLASSES, make_arrays, write_image_tree

# A notebook's network: Net() with no argument, its head sized for the data it was written for.
NO_ARGUMENT = """
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.fc = nn.Linear(16, {classes})

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)
"""

# Its forward fails: the flattened maps do not match the linear layer (a student's classic).
FORWARD_FAILS = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.fc = nn.Linear(8 * 28 * 28, num_classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.fc(x)
"""

# Convolutions written with F.conv2d on its own parameters.
FUNCTIONAL = """
import torch
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.1)
        self.w2 = nn.Parameter(torch.randn(16, 8, 5, 5) * 0.1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(F.conv2d(x, self.w1, padding=1))
        x = F.relu(F.conv2d(x, self.w2, stride=2, padding=4, dilation=2))
        return self.head(x.mean((2, 3)))
"""

# Python control flow on a tensor's value: torch.fx cannot trace it, but it trains.
UNTRACEABLE = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.body(x)
        if x.mean() > 100:
            x = x * 0.5
        return self.head(x.mean((2, 3)))
"""


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """A project folder with nets/; write(name, source) puts a network there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()

    def write(name: str, source: str) -> None:
        (tmp_path / "nets" / f"{name}.py").write_text(textwrap.dedent(source))
    return write


def test_a_network_in_nets_is_a_model_by_its_file_name(nets):
    nets("mine", NO_ARGUMENT.format(classes=3))
    nets("_helpers", "X = 1\n")  # a helper beside the networks, not a network
    assert model_names()[-1] == "mine" and "_helpers" not in model_names()
    model = build_model("mine", 3)
    assert model(torch.zeros(4, 3, 32, 32)).shape == (4, 3)


def test_net_without_an_argument_whose_head_differs_from_the_data_says_so(nets):
    nets("mine", NO_ARGUMENT.format(classes=10))
    assert build_model("mine", 10)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(NetworkError, match=r"nets/mine.py: Net's output is \(2, 10\) for a batch of 2; the data has 3 "
                                           r"classes.*give Net an argument, Net\(num_classes\)"):
        build_model("mine", 3)


def test_a_forward_that_fails_points_at_the_students_line_and_says_what_was_expected(nets):
    nets("broken", FORWARD_FAILS)
    with pytest.raises(NetworkError) as raised:
        build_model("broken", 10)
    where, error, expected = str(raised.value).splitlines()
    assert where == "nets/broken.py, line 12: return self.fc(x)"
    assert error.strip().startswith("RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert "cifarlab builds Net(num_classes) and feeds it a batch of shape (2, 3, 32, 32)" in expected


def test_the_docs_example_error_is_what_that_network_gets(nets):
    """docs/own-network.md shows the message of FORWARD_FAILS as nets/my_net.py, word for word."""
    import re

    from conftest import ROOT
    block = re.search(r"^( *)```\n(\1error: nets/my_net.py.*?)\n\1```", (ROOT / "docs" / "own-network.md").read_text(),
                      re.S | re.M)
    shown = [line.removeprefix(block.group(1)) for line in block.group(2).splitlines()]
    nets("my_net", FORWARD_FAILS)
    with pytest.raises(NetworkError) as raised:
        build_model("my_net", 10)
    assert shown == f"error: {raised.value}".splitlines()


def test_a_file_that_does_not_import_or_has_no_net_is_one_message(nets):
    nets("typo", "import torch.nn as nn\nclass Net(nn.Module)\n    pass\n")
    with pytest.raises(NetworkError, match=r"nets/typo.py, line 2: class Net\(nn.Module\)\n  SyntaxError"):
        build_model("typo", 10)
    nets("other", "import torch.nn as nn\nclass Model(nn.Module):\n    pass\n")
    with pytest.raises(NetworkError, match="nets/other.py: defines no class Net"):
        build_model("other", 10)


def test_f_conv2d_networks_have_their_receptive_field_and_untraceable_ones_say_why(nets):
    nets("functional", FUNCTIONAL)
    assert receptive_field(build_model("functional", 10)) == 1 + 2 + 4 * 2
    nets("branchy", UNTRACEABLE)
    model = build_model("branchy", 10)
    with pytest.raises(Untraceable, match="torch.fx cannot trace its forward"):
        receptive_field(model)


def test_gradcam_explains_the_deepest_block_with_maps_of_at_least_7_px_unless_told(nets):
    nets("mine", new.NETWORK.format(name="mine"))
    model = build_model("mine", 10)
    assert gradcam_default(model) == "c3"  # c1 32 px, c2 16, c3 8, c4 4
    assert explained_layers(["default", "c2", "c3"], model) == ["c3", "c2"]
    assert explained_layers(["c2.1"], model) == ["c2.1"]  # a module's path
    with pytest.raises(UserError, match="'fc', whose output is not a map"):
        explained_layers(["fc"], model)
    with pytest.raises(UserError, match="'layer3', which is not a module of Net; allowed: default, c1, c2, c3, c4"):
        explained_layers(["layer3"], model)


def test_the_zoo_keeps_its_own_layers_and_a_file_named_like_one_is_refused(nets):
    s9net = build_model("s9net", 10)
    assert gradcam_default(s9net) == "c3" and explained_layers(["c2", "default", "c3"], s9net) == ["c2", "c3"]
    nets("tiny", NO_ARGUMENT.format(classes=10))
    with pytest.raises(UserError, match="nets/tiny.py: tiny is the name of a network cifarlab ships; rename"):
        source_file("tiny")


def test_weights_of_a_network_whose_file_changed_are_one_line_naming_it(nets, tmp_path, capsys):
    nets("mine", new.NETWORK.format(name="mine"))
    model = build_model("mine", 3)
    stats = Stats([0.5] * 3, [0.25] * 3)
    save_checkpoint(tmp_path / "model.pt", "mine", model.state_dict(), CLASSES, stats, 1, {})
    load_checkpoint(tmp_path / "model.pt")  # unchanged: loads
    path = tmp_path / "nets" / "mine.py"
    path.write_text(path.read_text() + "# a comment\n")
    load_checkpoint(tmp_path / "model.pt")  # the weights still fit: loaded, with a note
    assert "note: nets/mine.py changed since" in capsys.readouterr().err
    path.write_text(path.read_text().replace("self.fc = nn.Linear(128, num_classes)",
                                             "self.fc = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, num_classes))"))
    with pytest.raises(UserError, match=r"^nets/mine.py changed since .*model.pt was trained, and the weights no "
                                        "longer fit its layers; retrain it"):
        load_checkpoint(tmp_path / "model.pt")


def test_new_refuses_names_that_exist_or_are_not_identifiers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "conf" / "model").mkdir(parents=True)
    new.main(["my_net"])
    assert "next: dvc exp run -S model=my_net" in capsys.readouterr().out
    assert (tmp_path / "nets" / "my_net.py").is_file() and (tmp_path / "conf" / "model" / "my_net.yaml").is_file()
    for name, why in (("my_net", "nets/my_net.py exists"), ("9lives", "not a usable name"),
                      ("my-net", "not a usable name"), ("s9net", "a model cifarlab already has"),
                      ("auto", "a model cifarlab already has"), ("class", "not a usable name")):
        with pytest.raises(SystemExit) as stopped:
            new.main([name])
        assert stopped.value.code == 2 and why in capsys.readouterr().err


@pytest.mark.slow
def test_the_docs_walk_through_trains_a_students_network_and_only_its_own_edits_retrain(tmp_path):
    """The README's and docs/own-network.md's commands, verbatim, on a small tree: `new`, then
    training it, its GradCAM layers and the course recipe with it; an edit of nets/my_net.py
    reruns train and what follows, an edit of another file in nets/ reruns nothing of that run."""
    import shlex

    from dvc.repo import Repo

    from test_pipeline import ALWAYS, STAGES, changed, dvc, git_commit, make_project, ran, readme_commands, sh

    start = readme_commands("cifarlab new", section="Your own network")
    assert start + readme_commands("dvc exp run", section="Your own network") == [
        "cifarlab new my_net", "dvc exp run -S model=my_net"]
    walk = readme_commands("cifarlab new", section="From a notebook's Net to a trained run") + \
        readme_commands("dvc exp run", section="From a notebook's Net to a trained run")
    more = readme_commands("dvc exp run", section="What you get for it")
    assert walk == start + ["dvc exp run -S model=my_net"] and len(more) == 2
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree))
    printed = sh(*shlex.split(walk[0]), cwd=project)
    assert printed.rstrip().endswith("next: dvc exp run -S model=my_net")
    (project / "nets" / "other.py").write_text(textwrap.dedent(NO_ARGUMENT.format(classes=3)))
    git_commit(project, "my networks")
    log = sh(*shlex.split(walk[1]), cwd=project)
    assert ran(log) == STAGES, log
    facts = json.loads((project / "metrics" / "train.json").read_text())
    assert facts["network"] == "my_net" and facts["params"] == 61_987 and facts["receptive_field"] == 51
    assert facts["layer_kinds"] == "Conv2d x12, BatchNorm2d x12, ReLU x12, AdaptiveAvgPool2d x1, Linear x1"
    assert json.loads((project / "plan" / "choice.json").read_text())["network"]["file"] == "nets/my_net.py"
    assert json.loads((project / "metrics" / "rubric.json").read_text())["assignment"] is None  # no assignment
    assert json.loads((project / "metrics" / "gradcam.json").read_text())["layers"] == ["c3"]  # the 8 px block

    photo = next((tree / "test" / "cat").iterdir())
    assert photo.name in sh("python", "-m", "cifarlab.predict", str(photo), cwd=project)  # with its checkpoint
    sh("python", "-m", "cifarlab.score", str(tree / "test"), "--out", str(tmp_path / "scores"), cwd=project)
    scored = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert scored["accuracy"] == json.loads((project / "metrics" / "evaluate.json").read_text())["accuracy"]
    with Repo(str(project)) as repo:
        assert changed(repo.status()) == {}
    other = project / "nets" / "other.py"
    other.write_text(other.read_text() + "\n# edited\n")
    assert ran(sh(*shlex.split(walk[1]), cwd=project)) == ALWAYS
    mine = project / "nets" / "my_net.py"
    mine.write_text(mine.read_text().replace("nn.Linear(128, num_classes)", "nn.Linear(128, num_classes)  # head"))
    rerun = ran(sh(*shlex.split(walk[1]), cwd=project))  # after train, DVC skips a stage whose inputs came out alike
    assert rerun[:2] == ALWAYS + ["train"] and set(rerun) <= set(STAGES[2:])
    with Repo(str(project)) as repo:
        assert changed(repo.status()) == {}

    layers, recipe = more
    assert ran(sh(*shlex.split(layers), cwd=project)) == ALWAYS + ["gradcam", "report"]
    assert json.loads((project / "metrics" / "gradcam.json").read_text())["layers"] == ["c2", "c3"]
    sh(*shlex.split(recipe), cwd=project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert (params["model"], params["recipe"], params["train"]["scheduler"]["name"]) == ("my_net", "s9_small_net",
                                                                                         "onecycle")
    assert json.loads((project / "metrics" / "train.json").read_text())["network"] == "my_net"
    rubric = json.loads((project / "metrics" / "rubric.json").read_text())
    assert (rubric["assignment"], rubric["total"]) == ("s9_small_net", 10)
    architecture = [item["passed"] for item in rubric["items"] if item["kind"] == "architecture"]
    assert architecture == [True] * 6  # the network `new` starts meets S9's architecture
    card = (project / "reports" / "model_card.md").read_text().split("---\n", 2)[2]
    assert card.split("\n## ")[1].startswith(f"Assignment: S9 small net, {rubric['passed']} of 10 items met")
    report = (project / "reports" / "report.md").read_text()
    assert report.split("\n## ")[1].startswith(f"Assignment S9 small net: {rubric['passed']} of 10 items met")
    shown = dvc("exp", "show", "--md", cwd=project)
    assert "passed" in shown and "total" in shown and shown.count("my_net") >= 3


@pytest.mark.slow
def test_a_notebook_net_without_arguments_trains_and_one_of_f_conv2d_or_a_broken_one_stops_at_the_plan(tmp_path):
    import subprocess
    import sys

    from test_pipeline import _env, dvc, git_commit, make_project, ran

    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree))
    (project / "nets").mkdir()
    (project / "nets" / "notebook.py").write_text(textwrap.dedent(NO_ARGUMENT.format(classes=3)))
    (project / "nets" / "functional.py").write_text(textwrap.dedent(FUNCTIONAL))
    (project / "nets" / "broken.py").write_text(textwrap.dedent(FORWARD_FAILS))
    for name in ("notebook", "functional", "broken"):
        (project / "conf" / "model" / f"{name}.yaml").write_text(new.RECIPE.format(name=name))
    git_commit(project, "networks")
    log = dvc("exp", "run", "-S", "model=notebook", cwd=project)
    assert "report" in ran(log), log
    facts = json.loads((project / "metrics" / "train.json").read_text())
    assert facts["network"] == "notebook" and facts["receptive_field"] == 13
    for name, line in [("functional", "error: Net has no module that outputs maps (N, C, H, W), and GradCAM explains"),
                       ("broken", "error: nets/broken.py, line 12: return self.fc(x)")]:
        result = subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "-S", f"model={name}"], cwd=project,
                                capture_output=True, text=True, env=_env())
        shown = result.stdout + result.stderr
        assert result.returncode != 0 and "Traceback" not in shown and line in shown, shown
        assert "train" not in ran(shown)  # stopped at the plan, before anything trained


# Misses two of S9's items: a max-pool, and no dilated convolution.
MISSES_TWO = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.c2 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.Conv2d(32, 64, 1), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.ReLU())
        self.c4 = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                                nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(self.gap(self.c4(self.c3(self.c2(self.c1(x))))).flatten(1))
"""


def _met(name: str, assignment: str) -> dict[str, bool | None]:
    from cifarlab.rubric import architecture_items
    return {item.name: item.passed for item in architecture_items(assignment, build_model(name, 10))}


def test_the_s9_rubric_passes_a_network_that_meets_it_and_names_the_two_items_another_misses(nets, capsys):
    from cifarlab.commands import check
    nets("meets", new.NETWORK.format(name="meets"))
    assert set(_met("meets", "s9_small_net").values()) == {True}
    nets("misses", MISSES_TWO)
    met = _met("misses", "s9_small_net")
    assert [name for name, passed in met.items() if not passed] == ["no max-pooling", "dilated convolution"]
    check.main(["misses", "--assignment", "s9_small_net"])
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == (
        "meets S9 small net's architecture items: 4 of 6; missed: no max-pooling used, required none; "
        "dilated convolution no, required at least one")


def test_the_rubric_reads_functional_and_untraceable_networks(nets):
    nets("functional", FUNCTIONAL)  # F.conv2d, dilated, no depthwise, a mean over H and W
    met = _met("functional", "s9_small_net")
    assert met["dilated convolution"] and met["global average pooling"] and not met["depthwise-separable convolution"]
    nets("branchy", UNTRACEABLE)
    assert _met("branchy", "s9_small_net")["receptive field"] is None  # cannot tell, and says so


@pytest.mark.parametrize("name, assignment", [("s9net", "s9_small_net"), ("tiny", "s7_early"),
                                              ("resnet18_ln", "s8_resnet18_ln"), ("custom_resnet", "s9_custom_resnet")])
def test_the_zoos_assignment_networks_meet_their_architecture_items(name, assignment):
    assert set(_met(name, assignment).values()) == {True}


def test_networks_unlike_the_assignments_miss_what_differs(nets):
    assert _met("resnet18", "s8_resnet18_ln") == {"LayerNorm only": False}  # BatchNorm
    nets("mine", new.NETWORK.format(name="mine"))
    assert _met("mine", "s9_custom_resnet") == {"the layer table's maps": False, "residual additions": False,
                                                "MaxPool with kernel 4": False}
    nets("branchy", UNTRACEABLE)
    assert _met("branchy", "s9_custom_resnet")["the layer table's maps"] is None  # cannot tell
    assert _met("resnet18", "s9_custom_resnet")["MaxPool with kernel 4"] is False


def test_the_docs_check_command_runs_verbatim(nets, capsys):
    import shlex

    from cifarlab.commands import check
    from test_pipeline import readme_commands
    (command,) = readme_commands("cifarlab check")
    nets("my_net", new.NETWORK.format(name="my_net"))
    check.main(shlex.split(command)[2:])  # after `cifarlab check`
    assert capsys.readouterr().out.rstrip().endswith("meets S9 small net's architecture items: 6 of 6")


def test_after_a_run_the_rubric_holds_every_item_of_the_recipes_assignment(nets):
    from cifarlab.conf import compose
    from cifarlab.config import parse_params
    from cifarlab.rubric import run_rubric
    nets("my_net", new.NETWORK.format(name="my_net"))
    model = build_model("my_net", 10)
    evaluation = {"accuracy": 86.0, "accuracy_without_tta": 84.9, "tta": "flip"}
    gradcam = {"explained_images": 10, "layers": ["c3"]}
    params = parse_params(compose(["recipe=s9_small_net", "model=resnet18"])).model_copy(update={"model": "my_net"})
    rubric = run_rubric(params, model, evaluation, gradcam)
    assert (rubric["assignment"], rubric["passed"], rubric["total"]) == ("s9_small_net", 9, 10)
    (accuracy,) = [item for item in rubric["items"] if item["kind"] == "accuracy"]
    assert accuracy == {"kind": "accuracy", "name": "test accuracy, plain", "required": ">= 85%",
                        "measured": "84.90% (86.00% with TTA)", "passed": False, "source": "7. Achieve 85% accuracy"}
    kinds = [item["kind"] for item in rubric["items"]]
    assert kinds.count("architecture") == 6 and kinds.count("training") == 3
    plain = parse_params(compose(["model=s9net"]))
    assert run_rubric(plain, model, evaluation, gradcam)["assignment"] is None  # the default recipe: no rubric
    s8 = parse_params(compose(["recipe=s8_resnet18_ln"]))
    rubric = run_rubric(s8, build_model("resnet18_ln", 10), evaluation, {"explained_images": 20, "layers": ["a", "b"]})
    assert rubric["passed"] == rubric["total"] == 8


def test_check_on_a_network_that_fails_is_its_line_not_a_traceback(nets, capsys):
    from cifarlab.commands import check
    from cifarlab.core.errors import run_command
    nets("broken", FORWARD_FAILS)
    assert run_command(check.main, ["broken", "--assignment", "s9_small_net"]) == 2  # as `cifarlab check` runs it
    assert capsys.readouterr().err.startswith("error: nets/broken.py, line 12: return self.fc(x)\n")


def test_a_students_checkpoint_starts_a_fine_tune_of_the_same_network(nets, tmp_path):
    from cifarlab.train.init_from import start_from
    nets("my_net", new.NETWORK.format(name="my_net"))
    trained = build_model("my_net", 3)
    save_checkpoint(tmp_path / "start.pt", "my_net", trained.state_dict(), CLASSES, Stats([0.5] * 3, [0.25] * 3), 1,
                    {})
    fresh = build_model("my_net", 2)
    line, _ = start_from(fresh, str(tmp_path / "start.pt"), "my_net", ["cat", "dog"], 32)
    assert "every weight of its my_net but the head" in line and "(cat)" in line
    assert torch.equal(fresh.c1[0][0].weight, trained.c1[0][0].weight)
    assert torch.equal(fresh.fc.weight[0], trained.fc.weight[CLASSES.index("cat")])
