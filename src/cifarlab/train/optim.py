"""Optimisers by name, from train.optimizer, with a separate LR for normalisation biases and the
decoupled units of D. Page ("How to train your ResNet", Myrtle.ai, 2018) and K. Jordan's airbench
(arXiv:2404.00498) translated exactly into PyTorch's SGD."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from cifarlab.train.muon import Muon

if TYPE_CHECKING:
    from cifarlab.config import OptimizerConfig

DECOUPLED_IMAGES = 1024  # decoupled lr and weight_decay are per this many images

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def norm_biases(model: nn.Module) -> list[nn.Parameter]:
    """The trainable biases of the model's normalisation layers."""
    return [module.bias for module in model.modules()
            if isinstance(module, _NORMS) and module.bias is not None and module.bias.requires_grad]


def plain_sgd_units(cfg: OptimizerConfig, batch_size: int) -> tuple[float, float]:
    """(lr, weight_decay) for PyTorch's SGD on a batch-mean loss that take the same steps as the
    decoupled units: a step of lr per 1,024 images of summed loss, with Nesterov/heavy-ball
    momentum's long-run gain of 1 + 1 / (1 - momentum) divided out, and a weight decay of
    weight_decay per 1,024 images whatever the LR (PyTorch multiplies its decay by the LR)."""
    if not cfg.decoupled:
        return cfg.lr, cfg.weight_decay
    gain = 1 + 1 / (1 - cfg.momentum)
    lr = cfg.lr * batch_size / (DECOUPLED_IMAGES * gain)
    return lr, cfg.weight_decay / cfg.lr


def conv_filters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable convolution filter banks (4-D weights): what Muon steps."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim == 4]


def make_optimizer(model: nn.Module, cfg: OptimizerConfig, batch_size: int) -> torch.optim.Optimizer:
    """The optimiser over every trainable parameter, normalisation biases in a group of their own
    whose LR is norm_bias_lr_scale times the rest and whose decay per step stays the same; with
    muon, the convolution filters in a third group that Muon steps."""
    lr, weight_decay = plain_sgd_units(cfg, batch_size)
    biases = norm_biases(model)
    filters = conv_filters(model) if cfg.name == "muon" else []
    own_group = {id(p) for p in biases + filters}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in own_group]
    scale = cfg.norm_bias_lr_scale
    # lr_scale: a schedule that sets one LR for all groups (OneCycle, the range test) multiplies it by this
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay, "lr_scale": 1.0},
              {"params": biases, "lr": lr * scale,
               "weight_decay": weight_decay / scale, "lr_scale": scale},
              {"params": filters, "lr": cfg.muon.lr, "momentum": cfg.muon.momentum, "orthogonalise": True,
               "lr_scale": cfg.muon.lr / lr}]
    groups = [group for group in groups if group["params"]]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "muon":
        return Muon(groups, momentum=cfg.momentum, nesterov=cfg.nesterov)
    optimizer = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=lr)
