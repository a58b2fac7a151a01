"""Model checkpoints: weights plus what is needed to rebuild the model and feed it (name,
classes, normalisation stats). Loading uses weights_only=True, so a crafted file cannot run
code while being read."""
from __future__ import annotations

import hashlib
import json
import math
import pickle
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

from cifarlab.core import paths
from cifarlab.core.errors import LR_TOO_HIGH, UserError, first_line
from cifarlab.core.io import save_torch
from cifarlab.model_input import PREPROCESSING
from cifarlab.models import source_digest, source_file
from cifarlab.models.registry import build_model
from cifarlab.stats import Stats


def weights_digest(weights: dict) -> str:
    """SHA-256 of every tensor's bytes, in order: torch.load does not check the zip's CRCs, so a
    flipped byte in the weights would otherwise load as a silently different model."""
    digest = hashlib.sha256()
    for name, tensor in weights.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


CHECKPOINT_KEYS = {"model", "classes", "mean", "std", "epoch", "chosen_by", "precision", "image_size", "preprocessing",
                   "state_dict", "digest"}


def non_finite(weights: dict) -> str | None:
    """The first tensor holding NaN or infinity, by name; None when every one is finite. A
    BatchNorm running variance can go NaN while the loss stays finite (training normalises by
    each batch's own statistics), and only evaluation would see it, as 10% accuracy."""
    return next((name for name, tensor in weights.items()
                 if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)


def save_checkpoint(path: Path, model_name: str, weights: dict, classes: list[str], stats: Stats,
                    epoch: int, chosen_by: dict, precision: str = "fp32", image_size: int = 32) -> None:
    """`network_sha256`: the digest of your network's file (nets/<name>.py) the weights belong to;
    None for the zoo's, whose code is cifarlab's own version. Weights that are not all numbers
    are refused before anything is written."""
    bad = non_finite(weights)
    if bad:
        raise UserError(f"training ended with weights that are not numbers (NaN or infinite in {bad}), so no "
                        f"checkpoint was written; {LR_TOO_HIGH}")
    save_torch(path, {"model": model_name, "classes": list(classes), "mean": list(stats.mean),
                      "std": list(stats.std), "epoch": epoch, "chosen_by": chosen_by, "precision": precision,
                      "image_size": image_size, "preprocessing": PREPROCESSING, "state_dict": weights,
                      "digest": weights_digest(weights), "network_sha256": source_digest(model_name)})


def load_checkpoint(path: Path, device: torch.device | str = "cpu", models: tuple[str, ...] | None = None,
                    classes: list[str] | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model in eval mode and return it with the checkpoint's metadata. Given the
    models params.yaml may train (Params.model_choices) and the prepared data's classes, a
    checkpoint left by another run (another model, another dataset) is refused before it is used.
    Every command and stage reads model files here, so any file that is not one is one line saying
    what it is, and never advice to load it unsafely."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; run `dvc repro train` first")
    not_one = _not_a_checkpoint(path)
    if not_one:
        raise UserError(f"{path}: {not_one}, not a cifarlab checkpoint (models/model.pt); {_what_to_do(path)}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused an object: loading it could run code
        raise UserError(f"{path}: refused: it holds Python objects besides tensors and plain values, which could run "
                        f"code when loaded (a cifarlab checkpoint holds none); {_what_to_do(path)}") from None
    except Exception as err:  # truncated or garbled bytes
        raise UserError(f"{path}: unreadable checkpoint ({first_line(err)}): damaged or incomplete; "
                        f"{_what_to_do(path)}") from None
    try:
        missing = sorted(CHECKPOINT_KEYS - set(ckpt)) if isinstance(ckpt, dict) else ["everything"]
        if missing:
            raise UserError(f"{path}: not a checkpoint of this version of cifarlab (it lacks {', '.join(missing)}); "
                            f"{_what_to_do(path)}")
        if ckpt["digest"] != weights_digest(ckpt["state_dict"]):
            raise UserError(f"{path}: its weights do not match their checksum: damaged; {_what_to_do(path)}")
        bad = non_finite(ckpt["state_dict"])
        if bad:
            raise UserError(f"{path}: its weights are not all numbers (NaN or infinite in {bad}), so nothing it "
                            f"predicts means anything; {_what_to_do(path)}")
        _check_fits(path, ckpt, models, classes)
        model = build_model(ckpt["model"], len(ckpt["classes"]), ckpt["image_size"])
        _load_weights(path, model, ckpt)
    except UserError:
        raise
    except Exception as err:  # keys of the wrong type or shape
        raise UserError(f"{path}: an unusable checkpoint ({first_line(err)}); {_what_to_do(path)}") from None
    return model.to(device).eval(), ckpt


def _what_to_do(path: Path) -> str:
    """The train stage's own output is remade by rerunning it; any other file is the user's to replace."""
    if path.resolve() == paths.MODEL.resolve():
        return "rerun `dvc repro train`"
    return f"name a checkpoint a cifarlab run wrote (its models/model.pt, or a copy of it) instead of {path.name}"


def _not_a_checkpoint(path: Path) -> str | None:
    """What the file is, by its first bytes, when that is plainly not a PyTorch checkpoint (a zip
    holding data.pkl); None when it may be one."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        return "an empty file (0 bytes)"
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":  # protobuf's ir_version field
        return "an ONNX model (onnxruntime runs it: README, \"Use your model\")"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON file" + (" (the ONNX model's card)" if path.name.endswith(".onnx.json") else "")
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None  # a damaged checkpoint: torch.load says how
        if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
            return "a zip archive without a PyTorch checkpoint in it"
        return None
    if head[:1] == b"\x80":  # a pickle, as torch wrote before its zip format
        return None
    return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"


def _load_weights(path: Path, model: nn.Module, ckpt: dict) -> None:
    """The weights into the network as its file reads now. Where your network's file changed since
    they were trained, weights that no longer fit are one line naming the file, and weights that
    still fit load with a note (the code they run through is not the code they were trained in)."""
    trained, now = ckpt.get("network_sha256"), source_digest(ckpt["model"])
    if trained is None or trained == now:
        model.load_state_dict(ckpt["state_dict"])
        return
    changed = f"{source_file(ckpt['model'])} changed since {path} was trained"
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise UserError(f"{changed}, and the weights no longer fit its layers; retrain it (`dvc repro`) or put the "
                        "file back as it was (git restore / git checkout)") from None
    print(f"note: {changed}; its weights still fit, but run through the new code", file=sys.stderr)


def _check_fits(path: Path, ckpt: dict, models: tuple[str, ...] | None, classes: list[str] | None) -> None:
    if ckpt["preprocessing"] != PREPROCESSING:
        raise UserError(f"{path} was trained on images prepared another way ({ckpt['preprocessing']!r}) than this "
                        "version prepares them; rerun `dvc repro`")
    if models is not None and ckpt["model"] not in models:
        raise UserError(f"{path} holds a {ckpt['model']} model, but params.yaml's model is {' or '.join(models)}; "
                        "rerun `dvc repro train`")
    if classes is not None and list(ckpt["classes"]) != list(classes):
        saved = list(ckpt["classes"])
        raise UserError(f"{path} was trained on {len(saved)} classes ({_names(saved)}), but data/prepared.npz "
                        f"has {len(classes)} ({_names(classes)}); rerun `dvc repro train`")


def _names(classes: list[str], shown: int = 5) -> str:
    return ", ".join(map(str, classes[:shown])) + (", ..." if len(classes) > shown else "")


def checkpoint_stats(ckpt: dict) -> Stats:
    return Stats(ckpt["mean"], ckpt["std"])


def save_release(path: Path, ckpt: dict, temperature: float, fitted_on: str) -> None:
    """The checkpoint with the evaluate stage's temperature inside it (the registry's cifar10-model):
    whoever fetches that one file predicts calibrated probabilities, with nothing to carry beside it."""
    save_torch(path, {**ckpt, "temperature": temperature, "temperature_fitted_on": fitted_on})


def load_temperature(path: Path, ckpt: dict) -> tuple[float, str | None]:
    """The temperature the evaluate stage fitted to these weights, by which logits are divided so
    that probabilities match accuracy: inside the checkpoint (the export stage's release), else in
    calibration.json beside it, naming their digest; without one for these weights, 1 (the
    model's own probabilities) and a note saying so."""
    if "temperature" in ckpt:
        inside = ckpt["temperature"]
        if isinstance(inside, float) and math.isfinite(inside) and inside > 0:
            return inside, None
        return 1.0, f"{path}: its temperature ({inside!r}) is not a positive number; probabilities are not calibrated"
    file = Path(path).parent / paths.CALIBRATION.name
    try:
        facts = json.loads(file.read_text())
        temperature = float(facts["temperature"])
        if facts["weights_sha256"] != ckpt["digest"]:
            return 1.0, f"{file} belongs to other weights than {path}; probabilities are not calibrated"
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature {temperature}")
    except FileNotFoundError:
        return 1.0, f"no {file} beside {path}; probabilities are not calibrated (the evaluate stage writes it)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return 1.0, f"{file}: unreadable ({str(err)[:100]}); probabilities are not calibrated"
    return temperature, None
