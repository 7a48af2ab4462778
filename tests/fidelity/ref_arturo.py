"""Reference: arTuRO as the official code computes it, transcribed in our own words for the differential test.

Source: github.com/ALRhub/arturo @ 96968a6c88c28cdc3b91c9eb8e98349107ccaa75, files arturo/arturo_optimizer.py
(Arturo.step), arturo/surrogate_fit.py (SurrogateFit, _filter_update) and arturo/dual_solver.py (DualSolver,
_primal_solution, _mahanalobis_bound). Kept deliberately close to that structure (a separate surrogate fit and
dual solver, tensor by tensor, the KL as a sum of Mahalanobis terms of the candidate mean), and independent of
optbench's plugin, which works on flat buffers and a closed form of the KL.

What is reproduced, including the official quirks:
- the mean is snapshotted when the optimizer is constructed, so the first step's weight decay reaches the filter
  (which reads the parameter) but not the first dual solve (which reads the snapshot);
- the bisection starts on [0, 1e4], or [eta_old/3, min(3 eta_old, 1e4)] once a solve has happened; it stops when
  the bracket is narrower than eta_tol or when |KL - eps| < 0.1 eps, and returns the midpoint of the bracket as
  updated by that last evaluation;
- the KL bound is the first group's lr; the weight decay is lr * weight_decay of the parameter's group.
Not reproduced: the optional variance clipping (`clip_var`, off in every published config) and the per-step eta
log (`etas`), which do not affect the update.
"""

from __future__ import annotations

from typing import Any

import torch


class _SurrogateFit:
    """Per-weight Kalman filter for the quadratic model 1/2 h theta^2 + b theta (official SurrogateFit)."""

    def __init__(self, start_cov: float, noise: float, measurement_noise: float) -> None:
        self.start_cov = start_cov
        self.q = noise
        self.r = measurement_noise
        self.st: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def update(self, p: torch.Tensor) -> None:
        if p not in self.st:
            self.st[p] = {"quad": torch.ones_like(p) * 0.1, "lin": p.grad.clone(),
                          "k00": torch.ones_like(p) * self.start_cov, "k11": torch.ones_like(p) * self.start_cov,
                          "k01": torch.zeros_like(p)}
        s = self.st[p]
        theta, y = p.data, p.grad
        # predict: P += diag(q, q), top-right noise 0
        s["k00"] = s["k00"] + self.q
        s["k11"] = s["k11"] + self.q
        s["k01"] = s["k01"] + 0.0
        # gain K = P H^T / (H P H^T + r) with H = [1, theta]
        ph0 = s["k00"] + s["k01"] * theta
        ph1 = s["k01"] + s["k11"] * theta
        innov_var = ph0 + ph1 * theta + self.r
        k0 = ph0 * (1 / innov_var)
        k1 = ph1 * (1 / innov_var)
        resid = y - theta * s["quad"] - s["lin"]
        s["lin"] = s["lin"] + k0 * resid
        s["quad"] = s["quad"] + k1 * resid
        s["k00"] = s["k00"] - k0 * (innov_var * k0)
        s["k01"] = s["k01"] - k0 * (innov_var * k1)
        s["k11"] = s["k11"] - k1 * (innov_var * k1)


class ArturoReference(torch.optim.Optimizer):
    """The official update rule; `config` uses the official key names (kl bound = lr)."""

    def __init__(self, params: Any, lr: float, reg_weight: float, prior_prec: float, measurement_noise: float,
                 dynamic_model_noise: float, start_filter_cov: float, var_init: float, nu: float,
                 eta_tol: float = 0.5, weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr))
        self.rho = reg_weight
        self.rho_lp = reg_weight * prior_prec
        self.nu = nu
        self.eta_tol = eta_tol
        self.wd = weight_decay
        self.fit = _SurrogateFit(start_filter_cov, dynamic_model_noise, measurement_noise)
        self.old_eta = -1.0
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["mean"] = p.data.clone()
                self.state[p]["prec"] = torch.ones_like(p) / var_init

    def _primal(self, p: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
        mean, prec = self.state[p]["mean"], self.state[p]["prec"]
        fit = self.fit.st[p]
        t = prec * eta
        t2 = fit["quad"] + self.rho_lp
        return (t * mean - fit["lin"]) / (t2 + t), (t2 + prec * self.nu) / (self.rho + self.nu)

    def _dual_gradient(self, eta: float) -> float:
        total = torch.zeros(1, dtype=torch.float64)
        for group in self.param_groups:
            for p in group["params"]:
                new_mean, _ = self._primal(p, eta)
                total += torch.sum((self.state[p]["mean"] - new_mean) ** 2 * self.state[p]["prec"])
        return float(total * 0.5 - self.param_groups[0]["lr"])

    def _solve(self) -> float:
        if self.old_eta >= 0.0:
            lo, hi = self.old_eta / 3, min(3 * self.old_eta, 10000.0)
        else:
            lo, hi = 0.0, 10000.0
        while hi - lo > self.eta_tol:
            mid = (hi + lo) / 2
            d = self._dual_gradient(mid)
            if d > 0.0:
                lo = mid
            else:
                hi = mid
            if abs(d) < 0.1 * self.param_groups[0]["lr"]:
                break
        self.old_eta = (hi + lo) / 2
        return self.old_eta

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if self.wd != 0:
                    p.data.sub_(p.data, alpha=group["lr"] * self.wd)
                self.fit.update(p)
        eta = self._solve()
        for group in self.param_groups:
            for p in group["params"]:
                new_mean, new_prec = self._primal(p, eta)
                self.state[p]["prec"] = new_prec
                p.data = new_mean
                self.state[p]["mean"] = p.data  # the same tensor from here on, as in the official step
