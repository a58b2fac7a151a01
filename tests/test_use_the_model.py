"""Using the trained model outside the pipeline: `cifarlab predict` on a user's own
images (every format the data sources read, bad files one line each), GradCAM overlays, and the
ONNX export, which onnxruntime runs to PyTorch's logits."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from PIL import Image

from cifarlab.commands.predict import probabilities, read_inputs
from cifarlab.download.filetree import open_tree
from cifarlab.download.imagefolder import load_image_tree
from cifarlab.export.onnx import describe, onnx_bytes
from cifarlab.feed.batches import eval_batches
from cifarlab.feed.inference import predict
from cifarlab.model_input import PREPROCESSING
from cifarlab.models import ZOO
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint, save_checkpoint
from cifarlab.models.registry import build_model
from cifarlab.stats import Stats, normalised
from conftest import CLASSES, ROOT, make_arrays

STATS = Stats([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])


def _checkpoint(path: Path, name: str = "tiny", classes=CLASSES) -> dict:
    """A checkpoint of an untrained `name` whose normalisation layers have seen the generated images
    (one forward pass in training mode sets their running statistics), so that its outputs differ
    from image to image as a trained model's do."""
    torch.manual_seed(0)
    model = build_model(name, len(classes))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # a plain average of what it sees
    images, _ = make_arrays(per_class_train=16)["train"]
    with torch.no_grad():
        model.train()(normalised(list(images), STATS))
    save_checkpoint(path, name, model.state_dict(), classes, STATS, 0, {}, "fp32", 32)
    return torch.load(path, weights_only=True)


def _user_images(folder: Path) -> None:
    """A user's folder: five images in the forms a phone or a tool writes, two bad files, and the
    .DS_Store a Mac leaves."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / "plain.png")
    photo = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = photo.getexif()
    exif[0x0112] = 6  # stored sideways, shown upright
    photo.save(folder / "phone.jpg", exif=exif, quality=95)
    Image.fromarray(rng.integers(0, 65535, (32, 32), dtype=np.uint16)).save(folder / "deep16.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(folder / "large.jpg", quality=85)
    (folder / "broken.jpg").write_bytes((folder / "phone.jpg").read_bytes()[:300])
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0")


def _predict(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifarlab.predict", *args], cwd=cwd, capture_output=True, text=True)


def test_predict_reads_every_kind_of_user_image_names_each_bad_file_and_explains(tmp_path):
    _checkpoint(tmp_path / "models" / "model.pt")
    _user_images(tmp_path / "mine")
    done = _predict("mine", "--csv", "top.csv", "--explain", "gradcam", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # some files could not be read
    errors = [line for line in done.stderr.strip().splitlines() if not line.startswith("note: ")]
    assert len(errors) == 2 and all(line.startswith("error: mine/") for line in errors), errors
    assert "probabilities are not calibrated" in done.stderr  # no calibration.json beside this model
    assert any("broken.jpg" in line for line in errors) and any("notes.txt" in line for line in errors)
    table = pd.read_csv(tmp_path / "top.csv")
    assert sorted(Path(f).name for f in table["file"]) == ["alpha.png", "deep16.png", "large.jpg", "phone.jpg",
                                                           "plain.png"]
    assert list(table.columns) == ["file", "class_1", "probability_1", "class_2", "probability_2", "class_3",
                                   "probability_3"]
    probabilities = table[["probability_1", "probability_2", "probability_3"]]
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-3) and (probabilities.diff(axis=1).iloc[:, 1:] <= 0).all(
        axis=None)  # the top classes, likeliest first
    printed = [line for line in done.stdout.splitlines() if line.startswith("mine/")]
    assert len(printed) == 5 and re.fullmatch(r"mine/\S+: \w+ [01]\.\d\d, \w+ [01]\.\d\d, \w+ [01]\.\d\d", printed[0])
    overlays = sorted((tmp_path / "gradcam").glob("*.png"))
    assert len(overlays) == 5 and all(Image.open(path).size[0] > 100 for path in overlays)


def test_the_model_sees_each_image_upright_at_full_range_and_centre_cropped(tmp_path):
    """What predict feeds the model: EXIF orientation applied, 16-bit scaled from its full range,
    alpha dropped, and a 4:3 photo's short side resized to 32 with the centre kept."""
    layout = np.zeros((30, 40, 3), np.uint8)
    layout[:15] = (250, 0, 0)  # top half red, bottom half blue, when upright
    layout[15:] = (0, 0, 250)
    sideways = Image.fromarray(layout).transpose(Image.Transpose.ROTATE_90)  # as a phone stores it
    exif = sideways.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show"
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    deep = np.full((32, 32), 65535 // 2, np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep16.png")
    wide = np.zeros((300, 400, 3), np.uint8)
    wide[:, 40:360] = 200  # grey a little beyond the centre 300x300, black at the sides
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(np.dstack([wide[:32, 50:82], np.zeros((32, 32), np.uint8)]), "RGBA").save(tmp_path / "alpha.png")
    files, images, errors = read_inputs([tmp_path / name for name in ("phone.jpg", "deep16.png", "wide.png",
                                                                        "alpha.png")], 32)
    assert not errors and [image.shape for image in images] == [(32, 32, 3)] * 4
    phone, deep16, centre, alpha = images
    assert phone[:12, :, 0].mean() > 200 and phone[20:, :, 2].mean() > 200  # red on top: upright
    assert abs(int(deep16.mean()) - 127) <= 1  # half of 16-bit's range is half of 8-bit's
    assert centre.min() >= 195  # only the grey centre, no black side
    assert (alpha == 200).all()  # transparent pixels keep their colour: alpha is dropped, not blended


def test_predict_gives_evaluates_plain_prediction_for_every_test_image_of_a_tree_of_photos(tmp_path):
    """A tree of photos in other sizes and shapes: predict, on the test/ files, sees the very
    pixels the download stage prepared for evaluate, and gives its plain probabilities (so its
    top-1) image for image."""
    rng = np.random.default_rng(3)
    shapes = [(48, 64), (64, 40), (33, 33), (32, 32), (90, 30), (31, 200)]
    for split, count in (("train", 1), ("test", 6)):
        for name in CLASSES:
            (tmp_path / "tree" / split / name).mkdir(parents=True)
            for number in range(count):
                height, width = shapes[rng.integers(len(shapes))]
                Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
                    tmp_path / "tree" / split / name / f"{number}.png")
    with open_tree(tmp_path / "tree") as tree:
        data = load_image_tree(tree, "", 32, {"train": 0, "test": 0}, 0, seed=0)
    _checkpoint(tmp_path / "model.pt")
    model, ckpt = load_checkpoint(tmp_path / "model.pt")
    batches = eval_batches(data.x_test, data.y_test, checkpoint_stats(ckpt), 7, torch.device("cpu"), "device")
    evaluated = torch.softmax(predict(model, batches, torch.device("cpu"))[0], dim=1)
    row_of = {image.tobytes(): row for row, image in enumerate(data.x_test)}
    files, images, errors = read_inputs(sorted((tmp_path / "tree" / "test").rglob("*.png")), ckpt["image_size"])
    assert not errors and len(files) == len(row_of) == 6 * len(CLASSES)
    rows = [row_of.get(image.tobytes()) for image in images]  # the prepared test image with the same pixels
    assert None not in rows, "predict prepared some image otherwise than the download stage"
    predicted = probabilities(model, images, checkpoint_stats(ckpt))
    assert torch.allclose(predicted, evaluated[rows], atol=1e-5)
    assert predicted.argmax(1).tolist() == evaluated[rows].argmax(1).tolist()


def test_predict_without_a_checkpoint_or_with_a_foreign_one_says_what_to_run(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    done = _predict("a.png", cwd=tmp_path)
    assert done.returncode == 2 and "checkpoint not found; run `dvc repro train`" in done.stderr
    (tmp_path / "models").mkdir()
    torch.save({"state_dict": {}}, tmp_path / "models" / "model.pt")  # another program's, or an older version's
    done = _predict("a.png", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "not a checkpoint of this version of cifarlab" in done.stderr and "dvc repro train" in done.stderr


def _test_images(count: int = 256) -> np.ndarray:
    images, _ = make_arrays(per_class_train=1, per_class_test=-(-count // len(CLASSES)))["test"]
    return images[:count]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_onnxruntime_runs_the_exported_model_to_pytorchs_logits(tmp_path, name):
    """The graph, not the training, is what is tested: each model untrained."""
    ckpt = _checkpoint(tmp_path / "model.pt", name)
    model = build_model(name, len(CLASSES))
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"])
    model.eval()
    graph = onnx_bytes(model, ckpt)
    images = _test_images()
    inputs = images.transpose(0, 3, 1, 2).astype(np.float32) / 255  # what a user has: RGB in 0..1, NCHW
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"images": inputs})[0]
    with torch.no_grad():
        mean, std = torch.tensor(STATS.mean).view(1, 3, 1, 1), torch.tensor(STATS.std).view(1, 3, 1, 1)
        ours = model((torch.from_numpy(inputs) - mean) / std).numpy()
    assert theirs.shape == (256, len(CLASSES))
    assert np.abs(theirs - ours).max() <= 1e-4, np.abs(theirs - ours).max()
    assert (theirs.argmax(1) == ours.argmax(1)).all()
    metadata = {entry.key: entry.value for entry in onnx.load_from_string(graph).metadata_props}
    assert json.loads(metadata["classes"]) == CLASSES and metadata["model"] == name


def test_following_the_onnx_card_gives_predicts_probabilities(tmp_path):
    """A user with only model.onnx and its card: preparing a photo as the card says (its stated
    preprocessing, then its input values and shape) and applying softmax to the output gives the
    probabilities predict prints for the same file."""
    ckpt = _checkpoint(tmp_path / "model.pt", "tiny")
    model = build_model("tiny", len(CLASSES))
    model.load_state_dict(ckpt["state_dict"])
    card = describe(ckpt)
    assert card["input"]["preprocessing"] == PREPROCESSING and card["classes"] == CLASSES
    photo = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (40, 90, 3), dtype=np.uint8)).save(photo)
    centre = Image.open(photo).convert("RGB").crop((25, 0, 65, 40)).resize((32, 32), Image.BILINEAR)  # as stated
    pixels = np.asarray(centre, dtype=np.float32).transpose(2, 0, 1)[None] / 255
    assert list(pixels.shape[1:]) == card["input"]["shape"][1:]
    session = ort.InferenceSession(onnx_bytes(model.eval(), ckpt), providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run([card["output"]["name"]], {card["input"]["name"]: pixels})[0])
    _, images, _ = read_inputs([photo], 32)
    theirs = probabilities(model, images, Stats(ckpt["mean"], ckpt["std"]))
    assert torch.allclose(torch.softmax(logits, dim=1), theirs, atol=1e-5)


def test_readme_onnxruntime_snippet_runs_verbatim(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Use your model\n(.*?)(?=^## )", text, flags=re.S | re.M).group(1)
    (snippet,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(snippet.strip().splitlines()) <= 3
    ckpt = _checkpoint(tmp_path / "model.pt")
    model = build_model("tiny", len(CLASSES))
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"])
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.onnx").write_bytes(onnx_bytes(model.eval(), ckpt))
    done = subprocess.run([sys.executable, "-c", snippet + "\nprint(logits.shape)"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f", {len(CLASSES)})"), done.stdout


def test_readme_predict_commands_run_verbatim(tmp_path):
    """The three predict lines of the README's "Use your model", as written, on a photo and a folder."""
    from test_pipeline import readme_commands
    commands = readme_commands("cifarlab predict", section="Use your model")
    assert len(commands) == 3, commands
    _checkpoint(tmp_path / "models" / "model.pt")
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(tmp_path / "cat.jpg")
    (tmp_path / "photos").mkdir()
    for number in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{number}.png")
    for command in commands:
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is this interpreter
        done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PATH": path})
        assert done.returncode == 0, (command, done.stderr)
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 3
    assert len(list((tmp_path / "gradcam").glob("*.png"))) == 3


def test_nothing_to_predict_or_an_output_in_the_wrong_place_is_one_line_before_any_work(tmp_path):
    """An empty folder is not an empty success; --csv onto a folder and --explain onto a file are
    refused before the model is even loaded, and nothing is written."""
    _checkpoint(tmp_path / "models" / "model.pt")
    (tmp_path / "empty").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "one.png")
    (tmp_path / "taken.txt").write_text("mine")
    for args, message in ((["empty"], "no files in empty; nothing to predict"),
                          (["one.png", "--csv", "empty"], "--csv empty: is a folder"),
                          (["one.png", "--explain", "taken.txt"], "--explain taken.txt: is a file")):
        done = _predict(*args, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, (args, done.stderr)
        assert done.stdout == ""
    assert (tmp_path / "taken.txt").read_text() == "mine" and not any((tmp_path / "empty").iterdir())


def test_predict_shows_probabilities_calibrated_by_the_temperature_of_these_weights(tmp_path):
    """calibration.json beside the checkpoint, naming its weights: predict's probabilities are
    softmax(logits / temperature), not the model's own."""
    ckpt = _checkpoint(tmp_path / "models" / "model.pt")
    (tmp_path / "models" / "calibration.json").write_text(json.dumps({"temperature": 2.5,
                                                                       "weights_sha256": ckpt["digest"]}))
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    done = _predict("a.png", "--csv", "top.csv", cwd=tmp_path)
    assert done.returncode == 0 and "not calibrated" not in done.stderr, done.stderr
    model = build_model("tiny", len(CLASSES))
    model.load_state_dict(ckpt["state_dict"])
    _, images, _ = read_inputs([tmp_path / "a.png"], 32)
    with torch.no_grad():
        logits = model.eval()(normalised(images, STATS))
    expected = torch.softmax(logits / 2.5, dim=1).sort(descending=True).values[0]
    shown = pd.read_csv(tmp_path / "top.csv")[["probability_1", "probability_2", "probability_3"]].iloc[0]
    assert np.allclose(shown.to_numpy(), expected.numpy(), atol=1e-4)
    assert not np.allclose(shown.to_numpy(), torch.softmax(logits, 1).sort(descending=True).values[0].numpy(),
                           atol=1e-3)
