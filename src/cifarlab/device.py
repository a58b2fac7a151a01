"""Where and how tensors run: the fastest available device (CUDA, then Apple MPS, then CPU),
its mixed precision and memory layout, shared by training, evaluation and the benchmark."""
from __future__ import annotations

import contextlib
import functools

import torch


def select_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


@functools.cache
def _half_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA where supported, else fp16 on CUDA; None (full precision) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device):
    """Mixed-precision autocast on CUDA; full precision elsewhere."""
    dtype = _half_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


def make_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast; a pass-through for bf16 and full precision."""
    return torch.amp.GradScaler(device.type, enabled=_half_dtype(device) == torch.float16)


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CUDA, where convolutions run faster that way."""
    return torch.channels_last if device.type == "cuda" else torch.preserve_format


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch of images in the device's layout."""
    return images.to(device, non_blocking=True, memory_format=memory_format(device))
