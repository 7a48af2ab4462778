"""Quadratics with a known spectrum: f(x) = 1/2 (x - x*)^T A (x - x*), A = Q diag(lam) Q^T.

They are the one place where every geometry metric has an exact answer, and where time-to-target is
cheap to measure. The problem (Q, lam, x*) is fixed per task and preset so that seeds vary only the
starting point and the gradient noise: the spread over seeds is the optimizer's, not the problem's.

Q is a seeded random orthogonal matrix (a rotated quadratic; an axis-aligned one would flatter diagonal
preconditioners). For the full preset (n = 10,000) Q is a Kronecker product of two 100 x 100 random
orthogonal factors, so a product costs 2 * 100^3 flops instead of a dense 10^4 x 10^4 matvec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optbench import Preset, Target, TaskInstance, TaskSpec, hookimpl

PROBLEM_SEED = 20250228  # fixes (Q, lam, x*) for every trial of a task


@dataclass(frozen=True)
class QuadraticConfig:
    n: int
    budget: int
    eval_every: int
    noise: float  # std of the additive Gaussian gradient noise (0 = deterministic)
    init_scale: float  # x0 - x* ~ N(0, init_scale^2 I)


def _random_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


def spectrum_well_conditioned(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.linspace(1.0, 10.0, n)


def spectrum_ill_conditioned(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.logspace(-3.0, 1.0, n)  # condition number 1e4, log-spaced


def spectrum_deep(n: int, rng: np.random.Generator) -> np.ndarray:
    """DeepOBS quadratic_deep: 90% of eigenvalues uniform in [0, 1], 10% in [30, 60]."""
    n_big = max(1, n // 10)
    return np.sort(np.concatenate([rng.uniform(0.0, 1.0, n - n_big), rng.uniform(30.0, 60.0, n_big)]))


class Quadratic(TaskInstance):
    def __init__(
        self,
        eigenvalues: np.ndarray,
        cfg: QuadraticConfig,
        seed: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        n = cfg.n
        gen = torch.Generator().manual_seed(PROBLEM_SEED + n)
        self.cfg = cfg
        self.device = device
        self.dtype = dtype
        self.lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
        self._lam = self.lam.to(device=device, dtype=dtype)
        side = math.isqrt(n)
        self._kron = n > 2048 and side * side == n
        if self._kron:
            self._q1 = _random_orthogonal(side, gen).to(device, dtype)
            self._q2 = _random_orthogonal(side, gen).to(device, dtype)
        else:
            self._q = _random_orthogonal(n, gen).to(device, dtype)
        self.x_star = torch.randn(n, generator=gen, dtype=torch.float64).to(device, dtype)
        trial_gen = torch.Generator().manual_seed(seed)
        x0 = self.x_star + cfg.init_scale * torch.randn(n, generator=trial_gen, dtype=torch.float64).to(device, dtype)
        self.x = x0.clone().requires_grad_(True)
        self._noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self._label_gen = torch.Generator(device=device).manual_seed(seed + 2)  # Sophia-G's sampled labels
        self.budget = cfg.budget
        self.eval_every = cfg.eval_every
        self.batch_size = 1
        self.dataset = "synthetic-quadratic" if cfg.noise == 0 else "synthetic-quadratic-noisy"
        with torch.no_grad():
            self.f0 = float(self.objective(self.x))
        self.target = Target("val_loss", 1e-3 * self.f0, "min")

    # Q^T d and its adjoint, without ever forming a dense 10^4 x 10^4 product.
    def _rotate_in(self, d: torch.Tensor) -> torch.Tensor:
        if self._kron:
            side = self._q1.shape[0]
            return (self._q1.T @ d.view(side, side) @ self._q2).reshape(-1)
        return self._q.T @ d

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        z = self._rotate_in(x - self.x_star)
        return 0.5 * (self._lam * z * z).sum()

    def parameters(self) -> list[torch.Tensor]:
        return [self.x]

    def batches(self) -> Iterator[torch.Tensor | None]:
        while True:
            if self.cfg.noise == 0:
                yield None
            else:
                yield self.cfg.noise * torch.randn(
                    self.cfg.n, generator=self._noise_gen, device=self.device, dtype=self.dtype
                )

    def loss(self, batch: Any) -> torch.Tensor:
        f = self.objective(self.x)
        if batch is None:
            return f
        return f + (batch * (self.x - self.x_star)).sum()  # gradient A(x - x*) + noise, mean f

    def sampled_loss(self, batch: Any) -> torch.Tensor:
        """Gaussian-likelihood reading: f = 1/2 ||sqrt(lam) * z||^2 is a regression with prediction
        sqrt(lam) * z (z = Q^T (x - x*)) and target 0. Labels sampled from the model are y = pred + e with
        e ~ N(0, I), and the loss on them is 1/2 ||pred - y||^2 (a sum: B = 1). Its gradient is
        g = -Q diag(sqrt(lam)) e, so E[g g^T] = Q diag(lam) Q^T = A and E[g^2] = diag(A): the Gauss-Newton-Bartlett
        estimate is unbiased for the exact Hessian diagonal. The additive gradient noise of noisy presets is not
        part of the model and is left out."""
        pred = self._lam.sqrt() * self._rotate_in(self.x - self.x_star)
        noise = torch.randn(pred.shape, generator=self._label_gen, device=self.device, dtype=self.dtype)
        y = pred.detach() + noise
        return 0.5 * (pred - y).square().sum()

    def evaluate(self) -> dict[str, float]:
        """f - f* (f* = 0). A quadratic has no data to hold out, so validation and test are the same number."""
        with torch.no_grad():
            gap = float(self.objective(self.x))
        return {"val_loss": gap, "test_loss": gap}

    def curvature_loss(self) -> torch.Tensor:
        return self.objective(self.x)

    def exact_hessian_eigenvalues(self) -> torch.Tensor:
        return self.lam.clone()


SMOKE = QuadraticConfig(n=200, budget=1000, eval_every=10, noise=0.0, init_scale=0.01)
FULL = QuadraticConfig(n=10_000, budget=5000, eval_every=50, noise=0.0, init_scale=0.01)
PRESETS = {
    "smoke": Preset("n = 200, 1,000 steps: about a second on a CPU"),
    "full": Preset("n = 10,000 (Kronecker-structured rotation), 5,000 steps", wants_gpu=True),
}


def _spec(name: str, spectrum: Callable[[int, np.random.Generator], np.ndarray], summary: str,
          noise: float = 0.0) -> TaskSpec:
    def build(preset: str, seed: int, device: torch.device, data_dir: Any = None, **options: Any) -> Quadratic:
        base = {"smoke": SMOKE, "full": FULL}[preset]
        cfg = QuadraticConfig(base.n, base.budget, base.eval_every, noise, base.init_scale)
        eig = spectrum(cfg.n, np.random.default_rng(PROBLEM_SEED))
        return Quadratic(eig, cfg, seed, torch.device(device))

    # noise-free ones are "deterministic": results made on another machine are a quality reference for them
    suites = ("diagnostics", "gate", *(("deterministic",) if noise == 0 else ()))
    return TaskSpec(name=name, build=build, presets=PRESETS, summary=summary, suites=suites,
                    paper="DeepOBS (Schneider et al. 2019) for quadratic-deep")


@hookimpl
def optbench_register_tasks() -> list[TaskSpec]:
    return [
        _spec("quadratic-well-conditioned", spectrum_well_conditioned,
              "Rotated quadratic, eigenvalues linear in [1, 10] (condition number 10)"),
        _spec("quadratic-ill-conditioned", spectrum_ill_conditioned,
              "Rotated quadratic, eigenvalues log-spaced in [1e-3, 10] (condition number 1e4)"),
        _spec("quadratic-deep", spectrum_deep,
              "DeepOBS-like rotated quadratic: 90% of eigenvalues in [0, 1], 10% in [30, 60]"),
        _spec("quadratic-noisy", spectrum_well_conditioned,
              "quadratic-well-conditioned with additive Gaussian gradient noise (std 0.01)", noise=0.01),
    ]
