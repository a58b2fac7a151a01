"""Model checkpoints: weights plus what is needed to rebuild the model and feed it (name,
classes, normalisation stats). Loading uses weights_only=True, so a crafted file cannot run
code while being read."""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import torch
from torch import nn

from cifarlab.core import paths
from cifarlab.core.errors import UserError
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


def save_checkpoint(path: Path, model_name: str, weights: dict, classes: list[str], stats: Stats,
                    epoch: int, chosen_by: dict, precision: str = "fp32", image_size: int = 32) -> None:
    """`network_sha256`: the digest of your network's file (nets/<name>.py) the weights belong to;
    None for the zoo's, whose code is cifarlab's own version."""
    save_torch(path, {"model": model_name, "classes": list(classes), "mean": list(stats.mean),
                      "std": list(stats.std), "epoch": epoch, "chosen_by": chosen_by, "precision": precision,
                      "image_size": image_size, "preprocessing": PREPROCESSING, "state_dict": weights,
                      "digest": weights_digest(weights), "network_sha256": source_digest(model_name)})


def load_checkpoint(path: Path, device: torch.device | str = "cpu", models: tuple[str, ...] | None = None,
                    classes: list[str] | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model in eval mode and return it with the checkpoint's metadata. Given the
    models params.yaml may train (Params.model_choices) and the prepared data's classes, a
    checkpoint left by another run (another model, another dataset) is refused before it is used."""
    if not Path(path).is_file():
        raise UserError(f"{path}: checkpoint not found; run `dvc repro train` first")
    if _is_onnx(Path(path)):
        raise UserError(f"{path}: an ONNX file, not a PyTorch checkpoint (models/model.pt); onnxruntime runs it "
                        "(README, \"Use your model\")")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        missing = sorted(CHECKPOINT_KEYS - set(ckpt)) if isinstance(ckpt, dict) else ["everything"]
        if missing:
            raise UserError(f"{path}: not a checkpoint of this version of cifarlab (it lacks {', '.join(missing)}); "
                            "rerun `dvc repro train`")
        if ckpt["digest"] != weights_digest(ckpt["state_dict"]):
            raise ValueError("the weights do not match their checksum")
        _check_fits(path, ckpt, models, classes)
        model = build_model(ckpt["model"], len(ckpt["classes"]), ckpt["image_size"])
        _load_weights(path, model, ckpt)
    except UserError:
        raise
    except Exception as err:  # a refused pickle, truncated or garbled bytes, missing keys
        raise UserError(f"{path}: refused or unreadable checkpoint ({str(err).splitlines()[0][:200]}); it is "
                        "damaged or incomplete; rerun `dvc repro train`") from None
    return model.to(device).eval(), ckpt


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


def _is_onnx(path: Path) -> bool:
    """An ONNX model by its name or its first byte (protobuf's ir_version field), where a
    checkpoint is a zip ('PK') or, from old torch versions, a pickle (0x80)."""
    with open(path, "rb") as handle:
        return path.suffix.lower() == ".onnx" or handle.read(1) == b"\x08"


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


def load_temperature(path: Path, ckpt: dict) -> tuple[float, str | None]:
    """The temperature the evaluate stage fitted to these weights (calibration.json beside the
    checkpoint, naming their digest), by which logits are divided so that probabilities match
    accuracy; without one for these weights, 1 (the model's own probabilities) and a note saying so."""
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
