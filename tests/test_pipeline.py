"""End to end: `dvc repro` in a fresh git+dvc copy of the project runs all ten stages, and
DVC reruns only what a change touches."""
from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import browser
from cifarlab.config import parse_params
from conftest import CLASSES, ROOT, SHARED_JPEG, copy_project, make_arrays, set_project_defaults, write_image_tree
from stage_imports import project_files

pytestmark = pytest.mark.slow
STAGES = ["download", "stats", "plan", "train", "evaluate", "robustness", "export", "misclassify", "gradcam", "report"]


def _env() -> dict:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return env


def sh(*args, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=_env())
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc(*args, cwd: Path) -> str:
    return sh(sys.executable, "-m", "dvc", *args, cwd=cwd)


def ran(log: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", log)


ALWAYS = ["plan"]  # runs on every `dvc repro` (dvc.yaml's always_changed): another machine must be seen


def changed(status: dict) -> dict:
    """`dvc status` (Repo.status()) without the stages that always run: what is really out of date."""
    return {stage: why for stage, why in status.items() if stage.rsplit(":", 1)[-1] not in ALWAYS}


def up_to_date(project: Path) -> bool:
    return changed(json.loads(dvc("status", "--json", cwd=project))) == {}


def git_commit(cwd: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=cwd)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=cwd)


QUICK = {"data.val": 6, "train.epochs": 1, "train.batch_size": 16, "misclassify.count": 4}


def make_project(root: Path, source: str, model: str = "tiny", quick: bool = True, **settings) -> Path:
    """A git+dvc copy of the project whose defaults (its conf/) read `source` and train `model`,
    with QUICK's short-run settings unless quick is False and dotted-key `settings`
    (`data__val=0`) on top; committed, so experiments have a baseline."""
    project = copy_project(root)
    changes = {"data.source": source, **(QUICK if quick else {}),
               **{dotted.replace("__", "."): value for dotted, value in settings.items()}}
    set_project_defaults(project, model, changes)
    sh("git", "init", "-q", cwd=project)
    dvc("init", "-q", cwd=project)
    for name in ("config", "plots_page.html"):  # the project's DVC settings: Hydra, the plots page template
        shutil.copy(ROOT / ".dvc" / name, project / ".dvc" / name)
    git_commit(project, "pipeline")
    return project


def declared_outputs(project: Path) -> list[Path]:
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    outs = []
    for stage in stages.values():
        for out in stage["outs"]:
            outs.append(project / (out if isinstance(out, str) else next(iter(out))))
    return outs


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A fresh git+dvc copy of the project on a small generated image tree, after `dvc repro`."""
    root = tmp_path_factory.mktemp("pipeline")
    tree = write_image_tree(root / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(root / "project", str(tree))
    return project, dvc("repro", cwd=project)


def test_repro_runs_all_ten_stages_and_writes_every_output(first_run):
    project, log = first_run
    assert ran(log) == STAGES
    for path in declared_outputs(project):
        files = [path] if path.is_file() else list(path.glob("*"))
        assert files and all(f.stat().st_size > 0 for f in files), path
    assert "scored 12 images of the test split" in log


def test_report_renders_in_a_browser_with_every_image_and_section(first_run, tmp_path):
    if browser.CHROMIUM is None:
        pytest.skip("chromium not installed (.ci/run installs the Debian package)")
    project, _ = first_run
    rendered = browser.render(project / "reports" / "report.html", tmp_path / "report.png")
    assert rendered["images"] == 8 and rendered["loaded"] == rendered["images"]
    for title in ("Run summary", "Loss, accuracy and learning rate", "Confusion matrix", "Per-class results",
                  "Calibration: is it as sure as it is right?", "Reliability diagram",
                  "Robustness: accuracy under common corruptions (CIFAR-10-C)", "Accuracy per corruption and severity",
                  "What the corruptions look like",
                  "Misclassified test images", "GradCAM at c4, on the same images", "Params",
                  "Model summary (torchsummary)"):
        assert title in rendered["sections"], title
    assert any(title.startswith("How faithful is GradCAM?") for title in rendered["sections"])
    assert "LR range test" not in rendered["sections"]  # max_lr was set, so the test did not run
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_markdown_report_links_existing_images(first_run):
    project, _ = first_run
    markdown = (project / "reports" / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 8
    assert all((project / "reports" / link).resolve().is_file() for link in links)


def test_the_model_card_states_the_runs_own_figures_under_a_hub_header(first_run):
    project, _ = first_run
    _, header, body = (project / "reports" / "model_card.md").read_text().split("---\n", 2)
    evaluation = json.loads((project / "metrics" / "evaluate.json").read_text())
    (result,) = yaml.safe_load(header)["model-index"][0]["results"]
    robustness = json.loads((project / "metrics" / "robustness.json").read_text())
    assert [metric["value"] for metric in result["metrics"]] == [
        evaluation["accuracy"], evaluation["accuracy_without_tta"], evaluation["calibration_error_calibrated"],
        robustness["mean_corruption_accuracy"]]
    for section in ("Intended use", "Out of scope", "Training data and procedure", "Evaluation", "Calibration",
                    "Robustness", "Suspect labels", "Explanations", "Limitations"):
        assert f"\n## {section}\n" in body, section
    assert f"Test accuracy {evaluation['accuracy']:.2f}% (95% Wilson interval" in body


def test_nothing_changed_means_nothing_reruns(first_run):
    project, _ = first_run
    assert up_to_date(project)
    assert ran(dvc("repro", cwd=project)) == ALWAYS


def test_changing_the_model_reruns_train_and_after_only(first_run):
    project, _ = first_run
    git_commit(project, "first run")
    assert up_to_date(project)
    log = dvc("exp", "run", "-S", "model=s9net", cwd=project)
    assert ran(log) == STAGES[2:]
    report = (project / "reports" / "report.html").read_text()
    assert "cifarlab report: s9net" in report and report.count("data:image/png;base64,") == 8
    assert "s9net" in dvc("exp", "show", "--md", cwd=project)



def test_evaluation_knobs_never_retrain(first_run):
    project, _ = first_run
    # the baseline: s9net trained (the test above may have run on another worker, which has its own
    # copy of the project); every `-S` run starts from conf/, so the model is named again in each
    dvc("exp", "run", "-S", "model=s9net", cwd=project)
    log = dvc("exp", "run", "-S", "model=s9net", "-S", "evaluate.batch_size=7", "-S", "misclassify.count=3",
              "-S", "gradcam.faithfulness.images=5", cwd=project)
    assert ran(log) == ALWAYS + ["evaluate", "robustness", "misclassify", "gradcam", "report"]
    log = dvc("exp", "run", "-S", "model=s9net", "-S", "evaluate.batch_size=7", "-S", "misclassify.count=3",
              "-S", "gradcam.faithfulness.images=5", "-S", "gradcam.faithfulness.fractions=[0.2,0.8]", cwd=project)
    assert ran(log) == ALWAYS + ["gradcam", "report"]
    log = dvc("exp", "run", "-S", "model=s9net", "-S", "evaluate.batch_size=7", "-S", "misclassify.count=3",
              "-S", "gradcam.faithfulness.images=5", "-S", "gradcam.faithfulness.fractions=[0.2,0.8]",
              "-S", "robustness.images_per_class=2", cwd=project)
    assert ran(log) == ALWAYS + ["robustness", "report"]
    assert json.loads((project / "metrics" / "robustness.json").read_text())["images"] == 2 * len(CLASSES)


def test_an_edit_to_any_library_file_reruns_exactly_the_stages_that_run_it(first_run):
    """Every file under src/, edited alone: `dvc status` marks exactly the stages whose scripts
    import it, directly or through other modules. So an edit to the report's code never retrains,
    and an edit to an augmentation never decodes the dataset again."""
    from dvc.repo import Repo

    project, _ = first_run
    stages = list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    runs = {name: project_files(ROOT / "stages" / f"{name}.py") for name in stages}
    reruns, wrong = {}, {}
    with Repo(str(project)) as repo:
        assert changed(repo.status()) == {}
        for path in sorted((ROOT / "src").rglob("*.py")):
            edited = project / path.relative_to(ROOT)
            original = edited.read_bytes()
            edited.write_bytes(original + b"\n# edited\n")
            try:
                stale = {key.rsplit(":", 1)[-1] for key in changed(repo.status())}  # 'dvc.yaml:train' -> 'train'
                reruns[path.relative_to(ROOT / "src" / "cifarlab").as_posix()] = stale
            finally:
                edited.write_bytes(original)
            expected = {name for name in stages if path in runs[name] and name not in ALWAYS}
            if stale != expected:
                wrong[str(path.relative_to(ROOT))] = f"reruns {sorted(stale)}, runs in {sorted(expected)}"
        assert changed(repo.status()) == {}
    assert not wrong, wrong
    assert all(stale == {"report"} for name, stale in reruns.items() if name.startswith("report/"))
    assert reruns["feed/augment.py"] == {"train", "evaluate", "robustness"}


SMOKE = ["-S", "train.epochs=2", "-S", "train.low_res.epochs=0", "-S", "train.scheduler.onecycle.peak_epoch=1",
         "-S", "train.lr_finder.num_iter=10"]


def readme_recipes() -> list[tuple[str, list[str]]]:
    """(name, argv) of every `dvc exp run -n NAME ...` line in the README's assignments' recipes."""
    argvs = [shlex.split(line)[3:] for line in readme_commands("dvc exp run -n ", section="The assignments' recipes")]
    return [(argv[1], argv) for argv in argvs]


def test_every_readme_recipe_runs_in_smoke_form(tmp_path):
    recipes = readme_recipes()
    assert [name for name, _ in recipes] == ["s7-resnet18", "s8-resnet18-ln", "s9-custom-resnet", "s9-small-net",
                                             "airbench94-sgd"]
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=8))
    project = make_project(tmp_path / "project", str(tree), quick=False)
    for name, argv in recipes:
        log = dvc("exp", "run", *argv, *SMOKE, "-S", "data.val=6", cwd=project)  # a tree of 36 training images
        first = [stage for stage in ran(log) if stage not in ALWAYS][:2]
        assert first in (["download", "stats"], ["train", "evaluate"]), (name, log)
        assert "report" in ran(log), name
        params = yaml.safe_load((project / "params.yaml").read_text())
        assert params["recipe"] == argv[-1].removeprefix("recipe="), name
        train = json.loads((project / "metrics" / "train.json").read_text())
        facts = json.loads((project / "models" / "training.json").read_text())
        assert facts["model"] == params["model"] and train["epochs"] == 2, name
        gradcam = json.loads((project / "metrics" / "gradcam.json").read_text())
        drawn = sorted(path.name for path in (project / "plots" / "6-gradcam").glob("*.png"))
        assert drawn == sorted([*gradcam["figures"], "road_faithfulness.png"]), name
        assert gradcam["figures"] == [f"gradcam-{n}.png" for n in range(1, len(gradcam["layers"]) + 1)], gradcam
        chosen = pd.read_csv(project / "eval" / "misclassified.csv")
        predictions = pd.read_csv(project / "eval" / "predictions.csv")
        mistakes = int((predictions["actual"] != predictions["predicted"]).sum())
        assert len(chosen) == min(params["misclassify"]["count"], mistakes), name
        range_test = params["train"]["scheduler"]["onecycle"]["max_lr"] == "auto"
        if range_test:
            assert 1e-6 <= train["lr_finder_lr"] <= 1.0 and train["max_lr"] == train["lr_finder_lr"]
        assert (project / "plots" / "3-train" / "lr_finder.png").is_file() == range_test, name  # no placeholder
    table = dvc("exp", "show", "--md", cwd=project)
    assert all(name in table for name, _ in recipes)


def readme_commands(prefix: str, section: str = "") -> list[str]:
    """Every line of the bash blocks of the README and docs/ (in the `## section`, if named) that
    starts with `prefix` (continuations joined), but for `--help` lines (test_commands runs those)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "".join(page.read_text() + "\n## (end of page)\n" for page in pages).replace("\\\n", " ")
    if section:
        text = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", text, flags=re.S | re.M).group(1)
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.startswith(prefix)]
    return [line for line in lines if not line.endswith(" --help")]


def test_temp_experiments_read_a_relative_source_from_the_project(tmp_path):
    """`dvc exp run --temp` runs in .dvc/tmp/exps/...: data.source ../tree is still the tree beside the project."""
    write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", "../tree")
    log = dvc("exp", "run", "--temp", "-n", "temp-run", cwd=project)
    assert ran(log) == STAGES, log
    assert "temp-run" in dvc("exp", "show", "--md", cwd=project)


@pytest.mark.skipif(not SHARED_JPEG.is_file(), reason="../shared/data/cifar10-jpeg.tar.gz not present")
def test_readme_quick_start_verbatim_on_real_images(tmp_path):
    """The Quick start as written, with ../shared beside the project as in a checkout: the first
    run learns, the baseline commit leaves nothing stale, and the second run and the compare
    commands compare the two runs by name."""
    (first,) = readme_commands("dvc exp run -n first ", section="Quick start")
    commands = [c for c in readme_commands("", section="Quick start") if c.startswith(("git add", "dvc exp run -n tiny",
                                                                                        "dvc exp show", "dvc metrics",
                                                                                        "dvc plots"))]
    assert len(commands) == 5, commands
    baseline, second, show, metrics, plots = commands
    (tmp_path / "shared").symlink_to(SHARED_JPEG.parents[1])
    project = make_project(tmp_path / "project", "cifar10", model="auto", quick=False)  # as committed
    log = dvc(*shlex.split(first)[1:], cwd=project)
    assert ran(log) == STAGES
    evaluation = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert evaluation["num_test_images"] == 1000
    # chance is 10%; 25% leaves room for platform noise (the README states what this run reaches)
    assert evaluation["accuracy"] > 25.0, evaluation
    classes = json.loads((project / "eval" / "classes.json").read_text())["per_class_accuracy"]
    assert set(classes) == {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
    sh("bash", "-c", baseline, cwd=project)
    assert up_to_date(project)
    assert sh("git", "status", "--porcelain", cwd=project) == ""  # params, lock, metrics and plots all committed
    committed = yaml.safe_load(sh("git", "show", "HEAD:params.yaml", cwd=project))
    assert committed["recipe"] == "quick" and committed["data"]["subset"]["train"] == 5000  # what main's metrics ran
    assert ran(sh(*shlex.split(second), cwd=project)) == STAGES[2:]  # the same data: only train and after
    table = sh(*shlex.split(show), cwd=project)
    assert max(len(line) for line in table.splitlines()) <= 120, table
    header = sh(*shlex.split(show), "--csv", cwd=project).splitlines()[0].split(",")
    assert len(header) <= 16, header  # DVC's own seven columns included
    assert "auto" in table and "[tiny]" in table and "accuracy" in table, table  # the baseline and the new run
    diff = sh(*shlex.split(metrics), cwd=project)
    assert "first" in diff and "tiny" in diff and "macs" in diff, diff
    sh(*shlex.split(plots), cwd=project)
    page = project / "dvc_plots" / "index.html"
    html = page.read_text()
    shown = re.findall(r'<img src="static/(?:first|tiny)_plots_(\d)-', html)
    assert len(shown) == 2 * 8 and shown == sorted(shown), shown  # both runs' figures, in pipeline order
    assert "need an internet connection" in html  # said on the page, shown when Vega cannot load
    if browser.CHROMIUM is not None:  # every figure (curves, gallery, GradCAM...) shows, also offline
        rendered = browser.render(page, tmp_path / "plots.png")
        assert rendered["images"] == len(shown) and rendered["loaded"] == rendered["images"], rendered
        assert (tmp_path / "plots.png").stat().st_size > 10_000


def test_readme_queue_runs_two_experiments_at_once_each_with_its_own_results(tmp_path):
    """The README's "Many experiments" lines, as written: two seeds of tiny queued, run by two
    workers at once (each in its own copy of the workspace: resume state, temp files and the
    DDP port are per run), then compared."""
    commands = readme_commands("", section="Many experiments")
    queue, start = commands[0], commands[1]
    assert queue.startswith("dvc exp run --queue") and "'train.seed=1,2'" in queue
    assert start.endswith("dvc queue start -j 2")
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree))
    sh("bash", "-c", queue, cwd=project)
    # the workers run on in the background holding what they inherit: no pipes to wait on
    subprocess.run(["bash", "-c", start], cwd=project, env=_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    most_at_once, deadline, seen = 0, time.monotonic() + 900, []
    while True:
        status = dvc("queue", "status", cwd=project)
        seen.append(status)
        most_at_once = max(most_at_once, status.count(" Running"))
        if " Queued" not in status and " Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status.count(" Success") == 2, status
    assert most_at_once == 2, seen
    printed = {command: sh(*shlex.split(command), cwd=project) for command in commands[2:]}
    assert "n=2 (seeds 1, 2)" in printed["cifarlab seeds"], printed  # the two seeds as one recipe
    shown = pd.read_csv(io.StringIO(dvc("exp", "show", "--csv", cwd=project)))
    runs = shown[shown["typ"] != "baseline"]  # the experiments, not the commit or the workspace
    assert sorted(runs["train.seed"].astype(int)) == [1, 2] and set(runs["model"]) == {"tiny"}, shown
    assert runs["accuracy"].astype(float).notna().all(), shown
    for rev in runs["rev"]:  # one core each
        facts = json.loads(sh("git", "show", f"{rev}:models/training.json", cwd=project))
        assert facts["threads"] == 1, facts


@pytest.mark.skipif(not SHARED_JPEG.is_file(), reason="../shared/data/cifar10-jpeg.tar.gz not present")
def test_readme_results_commands_run_in_smoke_form(tmp_path):
    """The README's Results commands, as written, with ../shared beside the project; cut to two
    epochs on a subset of the real images."""
    commands = [line for line in readme_commands("", section="Results") if line and not line.startswith("#")]
    assert len(commands) >= 2 and all("dvc exp run -n " in command for command in commands), commands
    (tmp_path / "shared").symlink_to(SHARED_JPEG.parents[1])
    project = make_project(tmp_path / "project", "cifar10")
    subset = ["-S", "data.subset.train=400", "-S", "data.subset.test=100", "-S", "data.val=100"]
    for command in commands:
        sh("bash", "-c", shlex.join([*shlex.split(command), *SMOKE, *subset]), cwd=project)
        params = yaml.safe_load((project / "params.yaml").read_text())
        train = json.loads((project / "metrics" / "train.json").read_text())
        facts = json.loads((project / "models" / "training.json").read_text())
        evaluation = json.loads((project / "metrics" / "evaluate.json").read_text())
        assert params["data"]["source"] == "../shared/data/cifar10-jpeg.tar.gz", command
        assert facts["model"] in parse_params(params).model_choices() and train["epochs"] == 2, command
        assert evaluation["tta"] != "none", command
        assert evaluation["num_test_images"] == 100, command
