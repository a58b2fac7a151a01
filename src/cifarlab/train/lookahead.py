"""Lookahead on a moving average of the weights, as airbench trains (K. Jordan,
arXiv:2404.00498; after Zhang et al., "Lookahead Optimizer", 2019): every few steps the average
moves towards the weights and the weights jump back onto the average. The average's weight
grows over training as decay * progress ** power, so it is light early, when the weights move
fast, and heavy late; the last step ends on the average, so the run's final weights are it."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from cifarlab.config import LookaheadConfig


class Lookahead:
    def __init__(self, model: nn.Module, cfg: LookaheadConfig, total_steps: int) -> None:
        self.model, self.cfg, self.total_steps = model, cfg, total_steps
        self.step_count = 0
        # floating-point state only: BatchNorm's step counter is an integer and is left to the model
        self.average = {name: value.detach().clone() for name, value in model.state_dict().items()
                        if value.is_floating_point()}

    def weight(self, step: int) -> float:
        """The average's own share when it takes in the weights after `step` optimiser steps."""
        return self.cfg.decay * (step / self.total_steps) ** self.cfg.power

    @torch.no_grad()
    def after_step(self) -> None:
        self.step_count += 1
        averaging = self.step_count % self.cfg.every == 0
        last = self.step_count >= self.total_steps
        if not (averaging or last):
            return
        weights = self.model.state_dict()
        for name, average in self.average.items():
            if averaging:
                average.lerp_(weights[name], 1 - self.weight(self.step_count))
            weights[name].copy_(average)

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        for name, value in state["average"].items():
            self.average[name].copy_(value)
