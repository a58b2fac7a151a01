"""Shared fixtures: small generated datasets in every source format the download stage reads."""
from __future__ import annotations

import os
import sys
import tempfile

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # before torch is imported here or in a test's subprocess
    # test workers share the cores as queued experiments do (README): a share each, not all of them
    # each, which makes the threads of two trainings wait on one another
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

# the plan stage's measured speeds: one cache per test process, never the user's ~/.cache
os.environ.setdefault("CIFARLAB_CACHE", tempfile.mkdtemp(prefix="cifarlab-speeds-"))
# the docs' commands (`cifarlab ...`, `dvc ...`) as an activated environment finds them: this one's
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

import contextlib
import copy
import functools
import http.server
import json
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cifarlab.conf import compose, params_text
from cifarlab.config import Params, parse_params

ROOT = Path(__file__).resolve().parents[1]
SHARED_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
SHARED_FROST = ROOT.parent / "shared" / "data" / "frost"  # the benchmark's frost photographs, never committed
# a test project's frost: the photographs where this machine has them, else the drawn texture (never a download)
TEST_FROST = str(SHARED_FROST) if SHARED_FROST.is_dir() else "drawn"
CLASSES = ["bird", "cat", "ship"]  # alphabetical, so folder order equals label order


@contextlib.contextmanager
def serve_folder(folder: Path):
    """`folder` served over HTTP on this machine, as a download meets a web server; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def colour_images(count: int, label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Noisy images whose dominant colour channel is the class: learnable in a few steps."""
    images = rng.integers(0, 90, (count, size, size, 3), dtype=np.uint8)
    images[..., label % 3] += 140
    return images


def make_arrays(per_class_train: int = 6, per_class_test: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in (("train", per_class_train), ("test", per_class_test)):
        xs = [colour_images(count, label, rng) for label in range(len(CLASSES))]
        ys = [np.full(count, label, dtype=np.int64) for label in range(len(CLASSES))]
        out[split] = (np.concatenate(xs), np.concatenate(ys))
    return out


def param_parent(params: dict, dotted: str) -> tuple[dict, str]:
    """The mapping in params that holds a dotted key such as 'train.optimizer.lr', and its last part."""
    *parents, last = dotted.split(".")
    for key in parents:
        params = params[key]
    return params, last


# The course assignments' plain training settings, for tests written in their units: SGD in
# PyTorch's units with OneCycle, no lookahead or label smoothing, test scores on the curves, and
# OneCycle's peak as the LR of other schedules. Read from conf/ (S7's recipe), their one source.
PLAIN_KEYS = ("train.optimizer.name", "train.scheduler.name", "train.optimizer.decoupled",
              "train.optimizer.norm_bias_lr_scale", "train.optimizer.momentum", "train.optimizer.weight_decay",
              "train.lookahead.every", "train.label_smoothing", "train.test_curve")


def _plain_recipe() -> dict:
    assignment = compose(["recipe=s7_resnet18"])
    plain = {}
    for dotted in PLAIN_KEYS:
        node, last = param_parent(assignment, dotted)
        plain[dotted] = node[last]
    return {**plain, "train.optimizer.lr": assignment["train"]["scheduler"]["onecycle"]["max_lr"]}


PLAIN_RECIPE = _plain_recipe()


@functools.cache
def _default_text() -> str:
    """params.yaml as conf/ composes it with no overrides: the project's own defaults. Not the
    workspace's params.yaml, which `dvc exp run` rewrites, nor the committed one, which a user's
    baseline commit replaces with their first run's params."""
    return params_text()


def default_params_dict(**changes) -> dict:
    """The project's default params as a plain mapping, with dotted-key changes ('train.epochs': 2).
    A named model takes the airbench recipe's 10 epochs at full size (conf/model/airbench94.yaml)
    where the defaults leave epochs to the plan stage and the changes do not set them."""
    params = copy.deepcopy(yaml.safe_load(_default_text()))
    if changes.get("model", "auto") != "auto":
        params["train"]["epochs"], params["train"]["low_res"]["epochs"] = 10, 0
    for dotted, value in changes.items():
        node, last = param_parent(params, dotted)
        node[last] = value
    return params


def default_params(**changes) -> Params:
    """The project's default params, validated, with dotted-key changes ({'train.epochs': 2})."""
    return parse_params(default_params_dict(**changes))


def set_project_defaults(project: Path, model: str, settings: dict) -> None:
    """Make a project copy's own defaults (its conf/) `model` with dotted-key `settings` on top of
    the model's and any recipe's, so that `dvc exp run -S`, which composes conf/ afresh, keeps
    them; params.yaml is composed from it too."""
    conf = project / "conf"
    main = (conf / "config.yaml").read_text()
    main = main.replace("  - model: auto ", f"  - model: {model} ", 1)
    main = main.replace("  - optional recipe: null", "  - optional recipe: null\n  - test_settings", 1)
    (conf / "config.yaml").write_text(main)
    nested: dict = {}
    for dotted, value in {"robustness.frost": TEST_FROST, **settings}.items():
        *parents, last = dotted.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    (conf / "test_settings.yaml").write_text("# @package _global_\n" + yaml.safe_dump(nested))
    (project / "params.yaml").write_text(yaml.safe_dump(compose(conf=conf), sort_keys=False))


def write_image_tree(root: Path, arrays: dict, fmt: str = "png") -> Path:
    for split, (images, labels) in arrays.items():
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:04d}.{fmt}")
    return root


def write_cifar_batches(folder: Path, arrays: dict) -> Path:
    """The official cifar-10-batches-py layout: five train batches, a test batch, batches.meta."""
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, images: np.ndarray, labels: np.ndarray) -> None:
        batch = {b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                 b"labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))

    x_train, y_train = arrays["train"]
    for number, part in enumerate(np.array_split(np.arange(len(y_train)), 5), start=1):
        dump(f"data_batch_{number}", x_train[part], y_train[part])
    dump("test_batch", *arrays["test"])
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    return folder


@pytest.fixture
def arrays():
    return make_arrays()


@pytest.fixture
def image_tree(tmp_path, arrays) -> Path:
    return write_image_tree(tmp_path / "tree", arrays)


@pytest.fixture
def run_python():
    """Run a Python script as a subprocess with this interpreter; returns CompletedProcess."""

    def run(args, cwd, **kwargs):
        return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, **kwargs)
    return run


def project_on_tree(root: Path, per_class_train: int, per_class_test: int, **changes) -> Path:
    """A project copy in root/project reading a generated tree in root/tree, model tiny, with
    dotted-key param changes ({'train.epochs': 1})."""
    tree = write_image_tree(root / "tree", make_arrays(per_class_train, per_class_test))
    project = copy_project(root / "project")
    params = default_params_dict(**{"data.source": str(tree), "model": "tiny", "robustness.frost": TEST_FROST,
                                    **changes})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def copy_project(dest: Path) -> Path:
    """Copy the pipeline (dvc.yaml, conf/ and the params.yaml it composes, stages, src) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    (dest / "params.yaml").write_text(_default_text())
    for name in ("conf", "stages", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def train_results(project: Path) -> tuple[str, str, dict, str]:
    """What the train stage wrote, timings aside: the per-epoch dvclive log, LR range test, the
    other metrics and the LR of every step."""
    metrics = json.loads((project / "metrics" / "train.json").read_text())
    for timing in ("train_seconds", "epoch_seconds", "train_images_per_s"):
        metrics.pop(timing)
    plots, live = project / "plots", project / "dvclive"
    log = "".join(f"{path.relative_to(live)}\n{path.read_text()}" for path in sorted(live.rglob("*.*")))
    return log, (plots / "lr_finder.csv").read_text(), metrics, (plots / "lr_steps.csv").read_text()


def clean_train_outputs(project: Path) -> None:
    """Remove what a train run leaves (outputs and resume state), as `dvc repro` would start."""
    for folder in ("models", "metrics", "plots", ".cache"):
        shutil.rmtree(project / folder, ignore_errors=True)
