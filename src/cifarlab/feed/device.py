"""Where and how tensors run: the fastest available device (CUDA, then Apple MPS, then CPU),
its precision (train.precision) and memory layout, shared by training, the LR range test,
evaluation and the benchmark. GradCAM attributions stay in fp32: they are computed for a few
hundred images, so bf16 would buy no speed that matters."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from cifarlab.core.errors import UserError


def select_device(gpu: int = 0) -> torch.device:
    """The fastest device; `gpu` picks the CUDA device of a data-parallel process."""
    if torch.cuda.is_available():
        return torch.device("cuda", gpu)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read, which means fp32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(word for line in text.splitlines() if line.startswith("flags") for word in line.split())


def native_bf16(device: torch.device) -> bool:
    """bf16 runs in hardware: CUDA with bf16 support, or a CPU with AVX512-BF16 or AMX-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def resolve_precision(requested: str, device: torch.device) -> str:
    """A precision params.yaml or the plan (plan/choice.json) names, checked against this device:
    bf16 needs it natively, fp16 a CUDA GPU. The pipeline never passes `auto` here (the plan stage
    measures which is faster: cifarlab.plan.choose.precisions); a direct library call that does gets
    the hardware's native choice, bf16 where it exists (fp16 on a CUDA GPU without it), else fp32."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if native_bf16(device) else "fp16"
        return "bf16" if native_bf16(device) else "fp32"
    if requested == "bf16" and not native_bf16(device):
        raise UserError(f"params.yaml: train.precision = bf16 needs native bf16, which {device.type} here lacks "
                        "(CUDA with bf16, or a CPU with AVX512-BF16/AMX); use auto or fp32")
    if requested == "fp16" and device.type != "cuda":
        raise UserError(f"fp16 training needs a CUDA GPU, which {device.type} is not; rerun `dvc repro plan`")
    return requested


def usable_precision(precision: str, device: torch.device) -> str:
    """The precision a model trained in `precision` is scored in here: the same where this device
    runs it natively (evaluation then sees the numbers training saw), else fp32."""
    native = {"fp32": True, "bf16": native_bf16(device), "fp16": device.type == "cuda"}
    return precision if native[precision] else "fp32"


def autocast(device: torch.device, precision: str = "fp32"):
    """Mixed-precision autocast for bf16/fp16; full precision for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def make_scaler(device: torch.device, precision: str = "fp32") -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast; a pass-through for bf16 and fp32."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CUDA and CPU, where convolutions run faster that way (measured in
    docs/speed.md); MPS keeps the default layout."""
    return torch.channels_last if device.type in ("cuda", "cpu") else torch.preserve_format


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch of images (N, C, H, W) in the device's layout; other tensors as they are."""
    layout = memory_format(device) if images.dim() == 4 else torch.preserve_format
    return images.to(device, non_blocking=True, memory_format=layout)
