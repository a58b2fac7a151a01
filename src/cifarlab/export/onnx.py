"""The trained model out of PyTorch: models/model.onnx, with the normalisation inside the graph, so
its input is what a user has (float32 RGB in 0..1, NCHW, any batch size) and its output the
logits; the class names travel in the model's metadata, and models/model.onnx.json says it all
in a few lines for a reader."""
from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from cifarlab.core.io import atomic_open, write_json

OPSET = 17  # onnxruntime 1.14+ and every current runtime read it; it has GELU's parts and LayerNorm
INPUT, OUTPUT = "images", "logits"


class Normalised(nn.Module):
    """The model behind its own input normalisation: (x - mean) / std per channel."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


def onnx_bytes(model: nn.Module, ckpt: dict, temperature: float = 1.0) -> bytes:
    """The checkpoint's model as an ONNX graph (fp32, eval mode) with the class names and how the
    input is meant in its metadata."""
    import onnx

    # a copy, in eval mode before export: the exporter restores the mode it found, recursively
    inner = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format)
    wrapped = Normalised(inner, ckpt["mean"], ckpt["std"]).eval()
    size = ckpt["image_size"]
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch's TorchScript exporter: stable, and needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.rand(2, 3, size, size),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in describe(ckpt, temperature).items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    return graph.SerializeToString()


def describe(ckpt: dict, temperature: float = 1.0) -> dict:
    """What a user of the ONNX file needs to know, also written beside it as JSON; `temperature`
    is the evaluate stage's, which makes softmax(logits / temperature) calibrated."""
    size = ckpt["image_size"]
    return {"model": ckpt["model"], "classes": list(ckpt["classes"]), "opset": OPSET,
            "input": {"name": INPUT, "shape": ["batch", 3, size, size], "type": "float32",
                      "values": "RGB in 0..1 (uint8 pixels / 255); normalisation is inside the graph",
                      "preprocessing": ckpt["preprocessing"]},
            "output": {"name": OUTPUT, "shape": ["batch", len(ckpt["classes"])], "type": "float32",
                       "values": "logits, in the order of classes; softmax(logits / temperature) gives "
                                 "calibrated probabilities", "temperature": temperature}}


def write_onnx(path: Path, card: Path, model: nn.Module, ckpt: dict, temperature: float = 1.0) -> None:
    """The ONNX file and its card (describe() as JSON)."""
    with atomic_open(path) as file:
        file.write(onnx_bytes(model, ckpt, temperature))
    write_json(card, describe(ckpt, temperature))
