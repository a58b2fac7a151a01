"""`cifarlab score`: a checkpoint scored on a user's own labelled folder, without
training: accuracy with its Wilson interval, per class, the confusion matrix and the gallery."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cifarlab.intervals import wilson_interval
from conftest import CLASSES, make_arrays, write_image_tree
from test_use_the_model import _checkpoint


@pytest.mark.parametrize(("correct", "total", "published"), [(81, 263, (25.53, 36.62)), (90, 100, (82.56, 94.48)),
                                                             (0, 10, (0.0, 27.75)), (10, 10, (72.25, 100.0))])
def test_the_interval_is_wilsons(correct, total, published):
    """81/263: R. G. Newcombe's worked example (Statistics in Medicine 17 (1998), 857-872), as
    quoted from memory; 90/100 worked by hand from the formula; 0/n and n/n from its closed forms,
    upper z^2 / (n + z^2) and lower n / (n + z^2)."""
    low, high = wilson_interval(correct, total)
    assert (round(low, 2), round(high, 2)) == pytest.approx(published, abs=0.011)


def _score(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifarlab.score", *args], cwd=cwd, capture_output=True, text=True)


def test_a_folder_of_own_photos_is_scored_by_class_with_bad_files_named(tmp_path):
    """Two of the model's three classes, in photos of other sizes, and a broken file: scored as
    predict sees them (the same top-1), the broken file one line, exit 1."""
    _checkpoint(tmp_path / "models" / "model.pt")
    photos = tmp_path / "photos"
    images, labels = make_arrays(per_class_train=6, seed=4)["train"]
    for index, (image, label) in enumerate(zip(images, labels)):
        if CLASSES[label] != "ship":
            (photos / CLASSES[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).resize((48, 40)).save(photos / CLASSES[label] / f"{index}.jpg", quality=95)
    (photos / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    done = _score("photos", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "photos/cat/broken.jpg" in done.stderr
    metrics = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    classes = json.loads((tmp_path / "scores" / "classes.json").read_text())
    assert metrics["num_test_images"] == 12 and classes["per_class_accuracy"]["ship"] is None  # no ship photos
    predicted = subprocess.run([sys.executable, "-m", "cifarlab.predict", "photos", "--top", "1", "--csv", "top.csv"],
                               cwd=tmp_path, capture_output=True, text=True)
    table = pd.read_csv(tmp_path / "top.csv")
    right = (table["class_1"] == table["file"].str.split("/").str[1]).sum()  # predict: no TTA
    assert predicted.returncode == 1 and metrics["accuracy_without_tta"] == pytest.approx(100 * right / 12, abs=0.01)
    assert metrics["accuracy_95"]["low"] <= metrics["accuracy"] <= metrics["accuracy_95"]["high"]
    right = (pd.read_csv(tmp_path / "scores" / "predictions.csv").eval("actual == predicted")).sum()  # with TTA
    confusion = pd.read_csv(tmp_path / "scores" / "confusion.csv", index_col="actual")
    assert list(confusion.columns) == CLASSES and confusion.loc[["bird", "cat"]].to_numpy().sum() == 12
    assert np.trace(confusion.to_numpy()) == right
    assert f"{metrics['accuracy']:.2f}% of 12 images right with flip_translate TTA" in done.stdout


def test_a_class_the_model_does_not_know_is_refused_by_name_before_anything_is_written(tmp_path):
    _checkpoint(tmp_path / "models" / "model.pt")
    (tmp_path / "mine" / "hamster").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "mine" / "hamster" / "1.png")
    (tmp_path / "mine" / "cat").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "mine" / "cat" / "1.png")
    done = _score("mine", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "classes 'hamster' are not among the model's 3 ('bird', 'cat', 'ship'; class names are" in done.stderr
    assert not (tmp_path / "scores").exists()


def _photo(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)


def test_class_folders_are_matched_as_the_download_stage_matches_them_with_photos_in_sub_folders(tmp_path):
    """Folders named by hand: another case, a trailing space, photos sorted into years. Each is
    the class a user means; none vanishes from the counts."""
    _checkpoint(tmp_path / "models" / "model.pt")
    for name in ("Bird /1.png", "Bird /2.png", "CAT/2019/1.png", "CAT/2020/summer/2.png", "ship/1.png"):
        _photo(tmp_path / "mine" / name)
    done = _score("mine", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "scores" / "predictions.csv")
    assert sorted(table["actual"]) == ["bird", "bird", "cat", "cat", "ship"]  # the model's own names
    counts = json.loads((tmp_path / "scores" / "classes.json").read_text())["per_class_accuracy"]
    assert all(counts[name] is not None for name in CLASSES)


@pytest.mark.parametrize("layout, said", [
    (["cat/1.png", "Cat/2.png"], "folders 'Cat' and 'cat' are one class (class names are matched regardless of case"),
    (["cat/1.png", "cafe\u0301/1.png"], "classes 'caf\\xe9' are not among"),  # a Mac's decomposed accent, escaped
    (["cat/1.png", "bird/notes/"], "mine/bird: a class folder without images"),
], ids=["one class twice", "unknown, shown escaped", "a class without images"])
def test_a_folder_score_cannot_read_as_meant_is_one_line_naming_it(tmp_path, layout, said):
    _checkpoint(tmp_path / "models" / "model.pt")
    for name in layout:
        if name.endswith("/"):
            (tmp_path / "mine" / name).mkdir(parents=True)
        else:
            _photo(tmp_path / "mine" / name)
    done = _score("mine", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
    assert not (tmp_path / "scores").exists()


def test_one_image_as_data_is_told_to_predict(tmp_path):
    _checkpoint(tmp_path / "models" / "model.pt")
    _photo(tmp_path / "cat.jpg")
    done = _score("cat.jpg", cwd=tmp_path)
    assert done.returncode == 2 and "cat.jpg: one file, not labelled images" in done.stderr
    assert "`cifarlab predict cat.jpg`" in done.stderr


def test_a_data_source_with_a_test_split_has_its_test_images_scored(tmp_path):
    """The forms the download stage reads (here an image tree, train/ and test/): its test split."""
    _checkpoint(tmp_path / "models" / "model.pt")
    write_image_tree(tmp_path / "tree", make_arrays(per_class_train=2, per_class_test=3))
    done = _score("tree", "--out", "tree-scores", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "tree-scores" / "metrics.json").read_text())
    assert metrics["num_test_images"] == 9


def test_the_docs_score_command_runs_verbatim(tmp_path):
    from test_pipeline import readme_commands

    (command,) = readme_commands("cifarlab score")
    _checkpoint(tmp_path / "models" / "model.pt")
    images, labels = make_arrays(per_class_train=2)["train"]
    for index, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "my-photos" / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "my-photos" / CLASSES[label] / f"{index}.png")
    done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "scores" / "metrics.json").read_text())["num_test_images"] == 6


def test_score_and_evaluate_agree_image_for_image_on_the_same_data(tmp_path, run_python):
    """One scoring path: the evaluate stage on a project's test split, and `score` on the same
    data source, give the same per-image table and the same accuracy metrics."""
    from conftest import project_on_tree

    project = project_on_tree(tmp_path, 4, 5)  # model tiny, flip + translate TTA
    assert run_python(["stages/download.py"], cwd=project).returncode == 0
    _checkpoint(project / "models" / "model.pt")
    evaluated = run_python(["stages/evaluate.py"], cwd=project)
    assert evaluated.returncode == 0, evaluated.stderr
    done = _score(str(tmp_path / "tree"), "--out", "scored", cwd=project)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_csv(project / "scored" / "predictions.csv"),
                                  pd.read_csv(project / "eval" / "predictions.csv"))
    scored = json.loads((project / "scored" / "metrics.json").read_text())
    evaluation = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert scored == {key: evaluation[key] for key in scored}
    assert json.loads((project / "scored" / "classes.json").read_text()) == json.loads(
        (project / "eval" / "classes.json").read_text())
