"""Muon (K. Jordan et al., "Muon: an optimizer for hidden layers", 2024), as the airbench94 record
uses it (github.com/KellerJordan/cifar10-airbench, airbench94_muon.py): each convolution filter
bank takes a momentum step whose matrix is orthogonalised, so every direction of the update moves
by about the same amount, and its weights are rescaled to a fixed norm first, so the step size is
a fraction of the weights whatever the gradient's scale. Every other parameter takes a plain SGD
step. One optimiser for both, so the schedule, the gradient scaler and resume see one object."""
from __future__ import annotations

import torch

# Newton-Schulz quintic coefficients chosen for a steep slope at zero: three iterations bring every
# singular value into roughly [0.5, 1.5], which trains as well as exact orthogonalisation (Jordan)
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 3


def orthogonalise(matrix: torch.Tensor) -> torch.Tensor:
    """Approximately U V^T of matrix = U S V^T, by Newton-Schulz iteration on the wide orientation."""
    a, b, c = NEWTON_SCHULZ
    tall = matrix.size(0) > matrix.size(1)
    x = matrix.T if tall else matrix
    x = x / (x.norm() + 1e-7)  # every singular value <= 1, where the iteration converges
    for _ in range(NEWTON_SCHULZ_STEPS):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Groups with orthogonalise=True take Muon steps (no weight decay: the norm is fixed instead);
    the others take PyTorch's SGD step (momentum, nesterov, weight_decay)."""

    def __init__(self, groups: list[dict], momentum: float, nesterov: bool) -> None:
        super().__init__(groups, {"momentum": momentum, "nesterov": nesterov, "weight_decay": 0.0,
                                  "orthogonalise": False})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - the Optimizer interface
        for group in self.param_groups:
            momentum, nesterov = group["momentum"], group["nesterov"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad.float()
                if not group["orthogonalise"] and group["weight_decay"]:
                    grad = grad.add(param, alpha=group["weight_decay"])
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(grad)
                buffer = state["momentum_buffer"]
                update = grad.add(buffer, alpha=momentum) if nesterov else buffer
                if group["orthogonalise"]:
                    param.mul_(len(param) ** 0.5 / param.norm())
                    update = orthogonalise(update.reshape(len(update), -1)).view_as(param)
                param.add_(update, alpha=-group["lr"])
