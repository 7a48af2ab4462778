"""A small trained MLP whose dense Hessian is cheap enough to form exactly (shared by the curvature tests).

MSE regression with N·outputs > parameters, trained with Adam to near a minimum: the Hessian is nearly
PSD with a few outliers and a bulk spanning a few decades, like a network's at the end of training.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from optbench import TaskInstance


def trained_mlp(seed: int = 0, d_in: int = 8, hidden: int = 36, d_out: int = 10, n: int = 192, steps: int = 200):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                          nn.Linear(hidden, d_out)).double()
    teacher = nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, d_out)).double()
    x = torch.randn(n, d_in, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = teacher(x)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, x, y


def dense_hessian(loss: torch.Tensor, params: list[torch.Tensor], chunk: int = 256) -> torch.Tensor:
    """The exact Hessian, one batch of double-backward rows at a time."""
    g = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([t.reshape(-1) for t in g])
    eye = torch.eye(flat.numel(), dtype=flat.dtype)
    rows = []
    for block in eye.split(chunk):
        out = torch.autograd.grad(flat, params, grad_outputs=block, retain_graph=True, is_grads_batched=True)
        rows.append(torch.cat([o.reshape(o.shape[0], -1) for o in out], 1))
    h = torch.cat(rows)
    return (h + h.T) / 2


class MLPTask(TaskInstance):
    """Just enough of a task for compute_metrics: a model and a fixed curvature batch."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = model, x, y

    def curvature_loss(self) -> torch.Tensor:
        return nn.functional.mse_loss(self.model(self.x), self.y)


@lru_cache(maxsize=1)
def mlp_eigenvalues() -> np.ndarray:
    """Dense eigvalsh of trained_mlp()'s Hessian (cached: both curvature test modules use it)."""
    model, x, y = trained_mlp()
    params = list(model.parameters())
    return np.linalg.eigvalsh(dense_hessian(nn.functional.mse_loss(model(x), y), params).numpy())
