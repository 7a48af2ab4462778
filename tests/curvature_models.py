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


def small_digits_cnn() -> nn.Module:
    """2,738 parameters: two 3x3 convs (8 channels) with pooling, then 32 → 48 → 10."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 10),
    )


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled digits (real data, no download) as float32 (N, 1, 8, 8) in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    return (x - x.mean()) / x.std(), torch.from_numpy(d.target.astype(np.int64))


def trained_digits_cnn(steps: int, seed: int = 0, batch: int = 64, curvature: int = 128):
    """The small CNN after `steps` Adam steps (lr 3e-3) on digits; returns (model, curvature x, curvature y)."""
    x, y = digits_tensors()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = small_digits_cnn()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))[:curvature]
    return model, x[pick], y[pick]


class DigitsCNNTask(TaskInstance):
    """A classifier task shell around trained_digits_cnn: cross-entropy on its fixed curvature batch."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = model, x, y

    def curvature_loss(self) -> torch.Tensor:
        return nn.functional.cross_entropy(self.model(self.x), self.y)


class MatrixTask(TaskInstance):
    """0.5·xᵀAx on a parameter vector, with no exact spectrum given: the metrics take the network path
    (double-backward HVPs, Lanczos, SLQ) on a Hessian whose eigenvalues the test chose."""

    def __init__(self, matrix: torch.Tensor, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.a = matrix.to(torch.float64)
        self.x = torch.randn(matrix.shape[0], generator=gen, dtype=torch.float64, requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.x]

    def curvature_loss(self) -> torch.Tensor:
        return 0.5 * self.x @ (self.a @ self.x)


def rotated(eigenvalues: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Q diag(λ) Qᵀ for a random orthogonal Q: a dense matrix with the given spectrum."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((eigenvalues.size, eigenvalues.size)))
    return torch.from_numpy((q * eigenvalues) @ q.T)


def dense_gaps(eigenvalues: np.ndarray) -> tuple[float, float]:
    """gap_α = log n − H_α of p = |λ|/Σ|λ| (numpy, independent of optbench.curvature)."""
    a = np.abs(eigenvalues)
    p = a / a.sum()
    nz = p[p > 0]
    return float(np.log(a.size) + (nz * np.log(nz)).sum()), float(np.log(a.size) + np.log((p**2).sum()))
