"""Hostile inputs of several families get one bounded error line or come through exactly: params
files that are bombs, not UTF-8 or ask for huge images; class names that look like numbers,
missing values or math; thousands of classes; temp files of writers killed outright."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
import yaml

from cifarlab.config import ParamsError, load_params
from cifarlab.io import read_table, write_csv, write_json
from cifarlab.report.plots import confusion_figure, gallery_figure
from conftest import committed_params_dict

ALIAS_BOMB = textwrap.dedent("""
    a: &a [x, x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
""")


def _params_file(tmp_path, text: str | bytes):
    path = tmp_path / "params.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("key", ["model", "data.source", "train.epochs", "gradcam.layers"])
def test_an_alias_bomb_under_a_known_key_is_one_short_line(tmp_path, key):
    """10^8 elements when expanded: the check runs in a capped subprocess and must answer quickly."""
    params = committed_params_dict()
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = "BOMB"
    text = ALIAS_BOMB + yaml.safe_dump(params).replace("BOMB", "*h")
    path = _params_file(tmp_path, text)
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from cifarlab.config import ParamsError, load_params
        try:
            load_params({str(path)!r})
        except ParamsError as err:
            print(err)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400 and key.split(".")[0] in lines[0], out.stdout[:500]


def test_a_params_file_that_is_not_utf8_is_one_line(tmp_path):
    text = yaml.safe_dump(committed_params_dict()).replace("data:", "# caf\xe9\ndata:", 1)
    path = _params_file(tmp_path, text.encode("latin-1"))
    with pytest.raises(ParamsError, match=r"not UTF-8 text \(byte 0xe9"):
        load_params(path)


@pytest.mark.parametrize("size", [10000, 513])
def test_image_sizes_are_bounded(tmp_path, size):
    path = _params_file(tmp_path, yaml.safe_dump(committed_params_dict(**{"data.image_size": size})))
    expected = rf"data.image_size = {size} is not allowed; expected an integer >= 8 and <= 512"
    with pytest.raises(ParamsError, match=expected):
        load_params(path)


TRICKY_NAMES = ["None", "NA", "1", "01", "1.0", "nan", "$x$", "caf\u00e9", " spaced ", "a,b"]


def test_class_names_round_trip_through_the_tables_as_written(tmp_path):
    table = pd.DataFrame({"index": range(len(TRICKY_NAMES)), "actual": TRICKY_NAMES,
                          "predicted": TRICKY_NAMES[::-1], "actual_id": range(len(TRICKY_NAMES)),
                          "predicted_id": range(len(TRICKY_NAMES)), "confidence": np.linspace(0.1, 0.9, 10)})
    path = tmp_path / "predictions.csv"
    write_csv(path, table)
    back = read_table(path, list(table.columns), rows=len(table))
    assert list(back["actual"]) == TRICKY_NAMES and list(back["predicted"]) == TRICKY_NAMES[::-1]
    assert back["confidence"].tolist() == pytest.approx(table["confidence"].tolist())


def test_dollar_signs_in_captions_and_class_names_are_drawn_as_written():
    fig = gallery_figure([np.zeros((4, 4, 3), np.uint8)], ["$x$ (0.90) / $5 note"])
    fig.canvas.draw()  # a caption parsed as math would fail here or lose its dollars
    titles = [text.get_text() for text in fig.findobj(matplotlib.text.Text) if "note" in text.get_text()]
    assert titles and all("$" in t for t in titles)
    names = ["$x$", "$5", "plain"]
    confusion_figure(np.eye(3, dtype=int), names).canvas.draw()


def test_a_thousand_class_confusion_figure_stays_small_and_says_where_the_counts_are():
    classes = [f"class{i}" for i in range(1000)]
    fig = confusion_figure(np.random.default_rng(0).integers(0, 5, (1000, 1000)), classes)
    texts = fig.findobj(matplotlib.text.Text)
    assert len(texts) < 100  # not one text per cell
    assert max(fig.get_size_inches()) < 25
    assert any("plots/confusion.csv" in t.get_text() for t in texts)


def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "metrics.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".metrics.json.{dead.stdout.strip()}.tmp"
    orphan.write_bytes(b"half-written")
    live = tmp_path / f".metrics.json.{os.getppid()}.tmp"  # a writer still running keeps its file
    live.write_bytes(b"in progress")
    other = tmp_path / ".other.json.1.tmp"
    other.write_bytes(b"someone else's")
    write_json(target, {"ok": 1})
    assert not orphan.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])


def test_temp_files_are_ignored_by_git():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checked = subprocess.run(["git", "check-ignore", "-q", "data/.prepared.npz.123.tmp"], cwd=root)
    assert checked.returncode == 0


def test_the_faithfulness_sample_takes_every_class_in_turn():
    from cifarlab.explain.faithfulness import balanced_indices
    stored_class_by_class = np.repeat([0, 1, 2], [5, 2, 5])
    picked = balanced_indices(stored_class_by_class, 8)
    assert picked.tolist() == [0, 5, 7, 1, 6, 8, 2, 9]
    assert sorted(balanced_indices(stored_class_by_class, 100).tolist()) == list(range(12))


@pytest.mark.parametrize("saved_classes, prepared_classes", [
    ([f"c{i}" for i in range(10)], ["bird", "cat", "ship"]),  # another dataset, more classes
    (["bird", "cat", "ship"], [f"c{i}" for i in range(10)]),  # fewer classes
    (["bird", "cat", "ship"], ["bird", "ship", "cat"]),  # same names, another order
])
def test_a_checkpoint_from_another_dataset_is_refused_in_one_line(tmp_path, saved_classes, prepared_classes):
    from cifarlab.data.stats import Stats
    from cifarlab.errors import UserError
    from cifarlab.models.checkpoint import load_checkpoint, save_checkpoint
    from cifarlab.models.registry import build_model
    path = tmp_path / "model.pt"
    save_checkpoint(path, "tiny", build_model("tiny", len(saved_classes)).state_dict(), saved_classes,
                    Stats([0.5] * 3, [0.2] * 3), 1, {})
    with pytest.raises(UserError, match=rf"trained on {len(saved_classes)} classes .* has {len(prepared_classes)}"):
        load_checkpoint(path, model_name="tiny", classes=prepared_classes)
    with pytest.raises(UserError, match="holds a tiny model, but params.yaml's model is s9net"):
        load_checkpoint(path, model_name="s9net", classes=saved_classes)
    load_checkpoint(path, model_name="tiny", classes=saved_classes)  # the matching run loads


@pytest.mark.parametrize("junk", ["Thumbs.db", "desktop.ini", ".DS_Store", "ehthumbs.db"])
def test_operating_system_junk_files_in_an_image_tree_are_skipped(tmp_path, junk):
    from cifarlab.data.sources import prepare
    from conftest import CLASSES, make_arrays, write_image_tree
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=4, per_class_test=2))
    for folder in [tree / "train", *(tree / "train").iterdir(), tree / "test" / CLASSES[0]]:
        (folder / junk).write_bytes(b"\x00 not an image")
    data = prepare(str(tree), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")
    assert data.classes == CLASSES and len(data.y_train) == 12 and len(data.y_test) == 6
