"""Resume state: after every epoch the whole run (weights, optimiser, schedule, RNG, history,
best weights, LR range test) is saved, so a run cut short carries on to the same result. A
state from other params, data or model code is ignored."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cifarlab.core.io import save_torch
from cifarlab.models.checkpoint import weights_digest
from cifarlab.train.loop import EpochResult, Progress


def fingerprint(settings: list, arrays: list[np.ndarray], model: nn.Module) -> str:
    """What makes two runs the same: the settings that training reads, the data's bytes, and the
    model's initial weights, names and shapes (a changed model definition or a data-dependent
    initialisation that came out differently does not resume)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    digest.update(json.dumps([(name, list(t.shape)) for name, t in model.state_dict().items()]).encode())
    digest.update(weights_digest(model.state_dict()).encode())
    return digest.hexdigest()


def save_state(path: Path, key: str, model: nn.Module, optimizer, schedule, progress: Progress,
               extras: dict) -> None:
    save_torch(path, {
        "fingerprint": key, "epoch": len(progress.history), "extras": extras,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "progress": {**vars(progress), "history": [asdict(r) for r in progress.history]},
    })


def load_resume_state(path: Path, key: str) -> dict | None:
    """The saved state of an interrupted run with the same fingerprint, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable state is only a lost shortcut: start over
        return None
    return state if state.get("fingerprint") == key else None


def restore(state: dict, model: nn.Module, optimizer, schedule) -> Progress:
    """Put a saved run back in place; returns its progress."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    saved = state["progress"]
    return Progress(**{**saved, "history": [EpochResult(**row) for row in saved["history"]]})
