"""`dvc exp run -S model=X` swaps in X with its own training recipe (conf/model/X.yaml: optimiser,
schedule, augmentations, precision), and that recipe learns: each model, swapped in alone, trains
on real images to well above chance. The run is shortened (2 epochs of 5,000 images, batch 64 for
every model, so the test fits a CPU), so a model's own epochs and batch size are not what is run
here; that each model has valid defaults of its own is test_conf's, and what they reach in full,
docs/results.md's."""
from __future__ import annotations

import json
import sys

import pytest
import yaml

from cifarlab.conf import compose
from cifarlab.models import ZOO
from conftest import SHARED_JPEG, copy_project

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED_JPEG.is_file(), reason="../shared/data/cifar10-jpeg.tar.gz not present")]

# what the swap test sets besides the model: a short run on part of the real images; everything else
# is the model's own recipe
SHORT_RUN = [f"data.source={SHARED_JPEG}", "data.subset.train=5000", "data.subset.test=1000", "train.epochs=2",
             "train.low_res.epochs=0", "train.batch_size=64"]


@pytest.fixture(scope="module")
def prepared_project(tmp_path_factory, run_python_module):
    project = copy_project(tmp_path_factory.mktemp("swap") / "project")
    (project / "params.yaml").write_text(yaml.safe_dump(compose(SHORT_RUN)))
    for stage in ("download", "stats"):
        run_python_module([f"stages/{stage}.py"], project)
    return project


@pytest.fixture(scope="module")
def run_python_module():
    import subprocess

    def run(args, cwd):
        done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout
    return run


@pytest.mark.parametrize("model", sorted(ZOO))
def test_each_model_swapped_in_alone_learns_on_real_images(prepared_project, run_python_module, model):
    project = prepared_project
    params = compose([f"model={model}", *SHORT_RUN])
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("plan", "train", "evaluate"):
        run_python_module([f"stages/{stage}.py"], project)
    metrics = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert metrics["num_test_images"] == 1000
    assert metrics["accuracy"] >= 30.0, (model, metrics)  # chance is 10%
