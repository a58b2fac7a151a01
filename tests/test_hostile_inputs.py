"""Hostile inputs of several families get one bounded error line or come through exactly: params
files that are bombs, not UTF-8 or ask for huge images; class names that look like numbers,
missing values or math; thousands of classes; temp files of writers killed outright."""
from __future__ import annotations

import json
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
from cifarlab.core.io import read_table, write_csv, write_json
from cifarlab.evaluate.figures import confusion_figure
from cifarlab.gallery import gallery_figure
from conftest import default_params_dict
from test_pipeline import STAGES

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
    params = default_params_dict()
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
    text = yaml.safe_dump(default_params_dict()).replace("data:", "# caf\xe9\ndata:", 1)
    path = _params_file(tmp_path, text.encode("latin-1"))
    with pytest.raises(ParamsError, match=r"not UTF-8 text \(byte 0xe9"):
        load_params(path)


@pytest.mark.parametrize("size", [10000, 513])
def test_image_sizes_are_bounded(tmp_path, size):
    path = _params_file(tmp_path, yaml.safe_dump(default_params_dict(**{"data.image_size": size})))
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
    from cifarlab.gradcam.faithfulness import balanced_indices
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
    from cifarlab.core.errors import UserError
    from cifarlab.models.checkpoint import load_checkpoint, save_checkpoint
    from cifarlab.models.registry import build_model
    from cifarlab.stats import Stats
    path = tmp_path / "model.pt"
    save_checkpoint(path, "tiny", build_model("tiny", len(saved_classes)).state_dict(), saved_classes,
                    Stats([0.5] * 3, [0.2] * 3), 1, {})
    with pytest.raises(UserError, match=rf"trained on {len(saved_classes)} classes .* has {len(prepared_classes)}"):
        load_checkpoint(path, models=("tiny",), classes=prepared_classes)
    with pytest.raises(UserError, match="holds a tiny model, but params.yaml's model is s9net"):
        load_checkpoint(path, models=("s9net",), classes=saved_classes)
    load_checkpoint(path, models=("tiny",), classes=saved_classes)  # the matching run loads


@pytest.mark.parametrize("junk", ["Thumbs.db", "desktop.ini", ".DS_Store", "ehthumbs.db"])
def test_operating_system_junk_files_in_an_image_tree_are_skipped(tmp_path, junk):
    from cifarlab.download.sources import prepare
    from conftest import CLASSES, make_arrays, write_image_tree
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=4, per_class_test=2))
    for folder in [tree / "train", *(tree / "train").iterdir(), tree / "test" / CLASSES[0]]:
        (folder / junk).write_bytes(b"\x00 not an image")
    data = prepare(str(tree), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")
    assert data.classes == CLASSES and len(data.y_train) == 12 and len(data.y_test) == 6


def _encoded(image, fmt: str, **save) -> bytes:
    from io import BytesIO

    from PIL import Image
    buffer = BytesIO()
    Image.fromarray(image).save(buffer, fmt, **save)
    return buffer.getvalue()


RAMP16 = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
RAMP_FLOAT = np.linspace(0, 1, 64 * 64).reshape(64, 64).astype(np.float32)


@pytest.mark.parametrize("image, fmt", [(RAMP16, "PNG"), (RAMP16, "TIFF"), (RAMP_FLOAT, "TIFF"),
                                        ((RAMP16 >> 8).astype(np.uint8), "PNG")])
def test_deep_and_float_pixels_are_scaled_to_8_bits_not_clipped(image, fmt):
    from cifarlab.download.imagefolder import decode_image
    decoded = decode_image(_encoded(image, fmt), "ramp", 32)
    assert decoded.dtype == np.uint8 and decoded.shape == (32, 32, 3)
    assert decoded.min() <= 3 and decoded.max() >= 250 and abs(decoded.mean() - 127.5) < 3


@pytest.mark.parametrize("values", [RAMP_FLOAT * 255, RAMP_FLOAT - 0.5, np.full((8, 8), np.nan, np.float32)])
def test_float_pixels_outside_0_to_1_are_refused_in_one_line(values):
    from cifarlab.core.errors import UserError
    from cifarlab.download.imagefolder import decode_image
    with pytest.raises(UserError, match=r"^odd.tif: a floating-point image with values outside 0\.\.1") as err:
        decode_image(_encoded(values.astype(np.float32), "TIFF"), "odd.tif", 32)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("orientation, expected_corner", [(1, (0, 0)), (3, (-1, -1)), (6, (0, -1))])
def test_exif_orientation_is_applied_so_phone_photos_load_upright(orientation, expected_corner):
    """A red top-left corner as stored; EXIF 3 turns it 180 degrees, 6 a quarter turn clockwise."""
    from PIL import Image

    from cifarlab.download.imagefolder import decode_image
    stored = np.zeros((32, 32, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(_encoded(stored, "JPEG", exif=exif, quality=95), "photo.jpg", 32)
    row, col = expected_corner
    corner = decoded[:4, :4] if (row, col) == (0, 0) else decoded[-4:, -4:] if row else decoded[:4, -4:]
    assert corner[..., 0].mean() > 200 and corner[..., 1].mean() < 60


def test_class_names_in_two_unicode_forms_are_one_class(tmp_path):
    import unicodedata

    from cifarlab.core.errors import UserError
    from cifarlab.download.sources import prepare
    from conftest import make_arrays, write_image_tree
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=3, per_class_test=2))
    composed, decomposed = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    (tree / "train" / "cat").rename(tree / "train" / composed)  # Linux zip
    (tree / "test" / "cat").rename(tree / "test" / decomposed)  # Mac zip
    data = prepare(str(tree), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")
    assert data.classes == ["bird", composed, "ship"] and sorted(np.bincount(data.y_test)) == [2, 2, 2]
    (tree / "train" / "bird").rename(tree / "train" / decomposed)
    with pytest.raises(UserError, match=r"folders 'cafe\\u0301' and 'caf\\xe9' are one class \(class names"):
        prepare(str(tree), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")


def test_listing_classes_reads_each_name_once_however_many_classes(monkeypatch):
    """Thousands of class folders: each folder's listing must not rescan the whole tree."""
    from cifarlab.download import filetree, imagefolder
    checks = []
    real = filetree._visible
    monkeypatch.setattr(filetree, "_visible", lambda name: checks.append(name) or real(name))
    classes = [f"class{i:04d}" for i in range(2000)]
    files = [f"{split}/{name}/0.png" for split in ("train", "test") for name in classes]
    tree = filetree.FileTree(files, [])
    names, listing = imagefolder._scan(tree, "")
    assert names == classes and len(listing["test"][0]) == 2000
    assert len(checks) <= len(tree.files) + len(tree.dirs)  # linear: once per name


@pytest.mark.parametrize("val, subset", [(4, 0), (0, 2)])
def test_a_split_that_leaves_a_class_without_training_images_is_one_line(val, subset):
    from cifarlab.core.errors import UserError
    from cifarlab.prepared import split_indices
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])  # class 2 has two images
    if val:
        labels = np.array([0, 0, 0, 1, 1, 1, 2])  # one image of class 2: a 4-image split takes it
    with pytest.raises(UserError, match=r"leave class '(c2|c[0-2])' .* without a training image"):
        split_indices(labels, labels, {"train": subset, "test": 0}, val, 0, ["c0", "c1", "c2"])
    assert len(split_indices(labels, labels, {"train": 0, "test": 0}, 0, 0, ["c0", "c1", "c2"])["train"]) == len(labels)


def test_an_image_tree_is_stored_shuffled_so_first_images_are_not_one_class(tmp_path):
    from cifarlab.download.sources import prepare
    from conftest import make_arrays, write_image_tree
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=10, per_class_test=10))
    first = prepare(str(tree), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")
    assert len(set(first.y_test[:6].tolist())) > 1 and len(set(first.y_train[:6].tolist())) > 1
    again = prepare(str(tree), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")
    assert np.array_equal(first.y_test, again.y_test) and np.array_equal(first.x_test, again.x_test)
    pairs = {(int(label), image.tobytes()) for image, label in zip(first.x_test, first.y_test)}
    assert len(pairs) == 30  # every image kept with its own label


def _zip_with(tmp_path, flag_bits: int = 0, method: int | None = None):
    """A valid zip of an image tree, its headers then patched: encrypted flag or compression method."""
    import struct
    import zipfile

    from conftest import make_arrays, write_image_tree
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=2, per_class_test=1))
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(tree.rglob("*.png")):
            out.write(path, path.relative_to(tree).as_posix())
    raw = bytearray(archive.read_bytes())
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = raw.find(signature)
        while start >= 0:
            flags = struct.unpack_from("<H", raw, start + flag_at)[0] | flag_bits
            struct.pack_into("<H", raw, start + flag_at, flags)
            if method is not None:
                struct.pack_into("<H", raw, start + method_at, method)
            start = raw.find(signature, start + 4)
    archive.write_bytes(bytes(raw))
    return archive


@pytest.mark.parametrize("flag_bits, method, message", [
    (0x1, None, "is password-protected; extract the archive yourself"),
    (0, 9, "is compressed with Deflate64, which cannot be read here"),
    (0, 99, "is compressed with method 99"),
])
def test_zips_python_cannot_read_are_refused_before_reading(tmp_path, flag_bits, method, message):
    from cifarlab.core.errors import UserError
    from cifarlab.download.sources import prepare
    archive = _zip_with(tmp_path, flag_bits, method)
    with pytest.raises(UserError, match=message) as err:
        prepare(str(archive), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")
    assert "\n" not in str(err.value)


def test_archives_are_recognised_by_content_and_garbage_is_one_line(tmp_path):
    from cifarlab.core.errors import UserError
    from cifarlab.download.sources import prepare
    misnamed = tmp_path / "data.tar.gz"
    _zip_with(tmp_path).rename(misnamed)
    assert len(prepare(str(misnamed), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw").y_train) == 6
    for name, content in (("junk.tar.gz", b"\x1f\x8b\x08\x00 not really gzip" * 10), ("junk.zip", b"PK nothing"),
                          ("junk.tar", os.urandom(2048))):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError) as err:
            prepare(str(tmp_path / name), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")
        assert f"{name}: " in str(err.value) and "\n" not in str(err.value), str(err.value)


def _cifar_folder(tmp_path, damage):
    import pickle

    from conftest import make_arrays, write_cifar_batches
    folder = write_cifar_batches(tmp_path / "cifar-10-batches-py", make_arrays(per_class_train=5, per_class_test=2))
    batch = pickle.loads((folder / "data_batch_1").read_bytes())
    (folder / "data_batch_1").write_bytes(pickle.dumps(damage(batch)))
    return folder


@pytest.mark.parametrize("damage, message", [
    (lambda b: {**b, b"data": b[b"data"][:, :3000]}, r"data is uint8 of shape \(3, 3000\); a CIFAR batch holds"),
    (lambda b: {**b, b"data": np.tile(b[b"data"], 4)}, r"shape \(3, 12288\)"),  # 64x64 rows
    (lambda b: {**b, b"labels": [0, 7, 1]}, r"labels run from 0 to 7; batches.meta names 3 classes"),
    (lambda b: {**b, b"labels": [-1, 0, 1]}, r"labels run from -1 to 1"),
    (lambda b: {**b, b"labels": b[b"labels"][:2]}, r"2 labels of type int64 for 3 images"),
    (lambda b: {**b, b"data": b[b"data"].astype(np.int64) * 2}, r"pixel values run from 0 to \d+; expected 0 to 255"),
    (lambda b: [b[b"data"], b[b"labels"]], r"not a CIFAR batch \(found a pickled list"),
    (lambda b: {b"images": b[b"data"]}, r"not a CIFAR batch \(found keys"),
])
def test_malformed_cifar_batches_are_refused_at_download_in_one_line(tmp_path, damage, message):
    from cifarlab.core.errors import UserError
    from cifarlab.download.sources import prepare
    folder = _cifar_folder(tmp_path, damage)
    with pytest.raises(UserError, match=message) as err:
        prepare(str(folder), 32, {"train": 0, "test": 0}, 0, tmp_path / "raw")
    assert str(err.value).startswith(f"{folder / 'data_batch_1'}: ") and "\n" not in str(err.value)


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB filesystem: a real ENOSPC, not a simulated one (needs root to mount)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_keeps_the_previous_file_for_every_writer_including_torch(full_disk):
    import torch

    from cifarlab.core.errors import UserError
    from cifarlab.core.io import save_arrays, save_torch
    state = full_disk / "state.pt"
    save_torch(state, {"weights": torch.zeros(10)})
    before = state.read_bytes()
    for write in (lambda: save_torch(state, {"weights": torch.zeros(2**19)}),  # 2 MiB
                  lambda: save_arrays(state, x=np.zeros(2**19))):
        with pytest.raises(UserError, match=r"state.pt: could not write it \(.*\); its previous version") as err:
            write()
        assert "\n" not in str(err.value)
        assert state.read_bytes() == before and [p.name for p in full_disk.iterdir()] == ["state.pt"]


def test_a_stage_replaces_its_outputs_all_together_or_not_at_all(tmp_path):
    from cifarlab.core.errors import UserError
    from cifarlab.core.io import immediately, together, write_json
    predictions, metrics, state = tmp_path / "predictions.json", tmp_path / "metrics.json", tmp_path / "state.json"
    for path in (predictions, metrics, state):
        write_json(path, "old")
    with pytest.raises(UserError, match="metrics"):
        with together():
            write_json(predictions, "new")
            with immediately():
                write_json(state, "new")  # a resume state survives the failed stage
            raise UserError("metrics.json: could not write it")
    assert [json_text(p) for p in (predictions, metrics, state)] == ['"old"', '"old"', '"new"']
    with together():
        write_json(predictions, "new")
        write_json(metrics, "new")
        assert json_text(predictions) == '"old"'  # nothing replaced before the stage ends
    assert [json_text(p) for p in (predictions, metrics)] == ['"new"', '"new"']
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "predictions.json", "state.json"]


def json_text(path) -> str:
    return path.read_text().strip()




def test_a_one_class_dataset_runs_every_stage_and_says_there_are_no_mistakes(tmp_path, run_python):
    """Legal but degenerate: a single class can have no misclassified images at all."""
    import shutil

    from conftest import CLASSES, project_on_tree
    project = project_on_tree(tmp_path, per_class_train=6, per_class_test=3, **{
        "train.epochs": 1, "train.batch_size": 8, "gradcam.faithfulness.images": 3,
        "gradcam.faithfulness.fractions": [0.5], "train.optimizer.name": "sgd", "misclassify.count": 3})
    for split in ("train", "test"):
        for name in CLASSES[1:]:
            shutil.rmtree(tmp_path / "tree" / split / name)
    for stage in STAGES:
        done = run_python([f"stages/{stage}.py"], cwd=project)
        assert done.returncode == 0, (stage, done.stderr)
    assert "chose 0 of 3 requested" in run_python(["stages/misclassify.py"], cwd=project).stdout
    assert (project / "plots" / "5-misclassify" / "misclassified.png").is_file()
    assert json.loads((project / "metrics" / "gradcam.json").read_text())["explained_images"] == 0
