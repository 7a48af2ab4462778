"""AdaFisher (Gomes et al. 2025): momentum preconditioned by a diagonal Kronecker-factored Fisher instead of
Adam's square root of the second moment. The rule follows the official AtlasAnalyticsLab/AdaFisher code.

For every Linear / Conv2d layer, a forward hook on the model (hence `wants_model`) sees the layer input a
(rows: examples, and spatial positions for a convolution, with a trailing 1 for the bias) and, through a
tensor hook on the output, the gradient s of the loss w.r.t. the layer output. Every `t_cov` steps (the first
step included) the diagonal factors are refreshed:

  H_D = mean over rows of a^2,  S_D = mean over rows of s^2,  each min-max normalised to [0, 1]
  H <- (1 - gamma0) H + gamma1 * H_D,  S likewise            (H, S start at ones; official gammas 0.92, 0.008)

With F = kron(S, H) + lambda, i.e. F[i, j] = S[i] H[j] + lambda for W[i, j] and S[i] H[-1] + lambda for b[i]:

  g <- g + weight_decay * theta (L2, as in AdaFisher; AdaFisherW is not provided)
  m <- beta1 m + (1 - beta1) g,   theta <- theta - lr / (1 - beta1^t) * m / F     (no square root)

Parameters no hooked layer owns (norm layers, embeddings, a bare tensor) fall back to an Adam-like diagonal,
F = sqrt(v / (1 - beta2^t)) + eps with v <- beta2 v + (1 - beta2) g^2 (the official code uses F = 1 there, and
also hooks BatchNorm2d/LayerNorm; neither is reproduced). Only training-mode passes update the factors.
Defaults: lr 1e-3, beta1 0.9, gammas (0.92, 0.008), lambda 1e-3, t_cov 100.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from optbench import OptimizerSpec, hookimpl

HOOKED = (torch.nn.Linear, torch.nn.Conv2d)


def _rows_input(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-row squared layer inputs, bias column included: (rows, in [+1])."""
    if isinstance(module, torch.nn.Conv2d):
        sq = F.unfold(x * x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, C*k*k, P)
        sq = sq.transpose(1, 2).reshape(-1, sq.shape[1])
    else:
        sq = (x * x).reshape(-1, x.shape[-1])
    if module.bias is not None:
        sq = torch.cat([sq, torch.ones(sq.shape[0], 1, dtype=sq.dtype, device=sq.device)], dim=1)
    return sq


def _rows_output_grad(module: torch.nn.Module, g: torch.Tensor) -> torch.Tensor:
    if isinstance(module, torch.nn.Conv2d):
        return g.transpose(1, -1).reshape(-1, g.shape[1])  # (N*H*W, out_channels)
    return g.reshape(-1, g.shape[-1])


def _minmax(t: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return (t - t.min()) / (t.max() - t.min() + eps)


class AdaFisher(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], model: torch.nn.Module, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), gammas: tuple[float, float] = (0.92, 0.008),
                 damping: float = 1e-3, t_cov: int = 100, eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if model is None:
            raise ValueError("AdaFisher needs the model (layer hooks); the task has none")
        if t_cov < 1:
            raise ValueError(f"t_cov must be at least 1, got {t_cov}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), gammas=tuple(gammas), damping=damping, t_cov=t_cov,
                                      eps=eps, weight_decay=weight_decay))
        self._captured: dict[torch.nn.Module, dict[str, torch.Tensor]] = {}
        self._layer_of: dict[int, tuple[torch.nn.Module, str]] = {}
        self._handles = []
        mine = {id(p) for g in self.param_groups for p in g["params"]}
        for module in model.modules():
            if isinstance(module, HOOKED) and id(module.weight) in mine:
                self._layer_of[id(module.weight)] = (module, "weight")
                if module.bias is not None and id(module.bias) in mine:
                    self._layer_of[id(module.bias)] = (module, "bias")
                self._handles.append(module.register_forward_hook(self._save_input))

    def _save_input(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Keeps the input and hooks the output's gradient (a tensor hook: cheaper than a full backward hook)."""
        if module.training and torch.is_grad_enabled() and output.requires_grad:
            self._captured[module] = {"a": inputs[0].detach()}  # a gradient from an older pass no longer matches

            def save_grad(grad: torch.Tensor) -> None:
                self._captured.setdefault(module, {})["s"] = grad.detach()

            output.register_hook(save_grad)

    def _factors(self, module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
        cap = self._captured.get(module, {})
        if "a" not in cap or "s" not in cap:
            return None
        h = _rows_input(module, cap["a"]).mean(0)
        s = _rows_output_grad(module, cap["s"])
        return _minmax(h), _minmax((s * s).mean(0))

    @torch.no_grad()
    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        fresh: dict[torch.nn.Module, tuple[torch.Tensor, torch.Tensor] | None] = {}
        for group in self.param_groups:
            lr, wd, lam, eps = group["lr"], group["weight_decay"], group["damping"], group["eps"]
            beta1, beta2 = group["betas"]
            keep, add = 1 - group["gammas"][0], group["gammas"][1]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                grad = p.grad.add(p, alpha=wd) if wd else p.grad
                state["exp_avg"].lerp_(grad, 1 - beta1)
                m_hat = state["exp_avg"] / (1 - beta1**t)
                layer = self._layer_of.get(id(p))
                if layer is not None and (t - 1) % group["t_cov"] == 0:
                    module, kind = layer
                    if module not in fresh:
                        fresh[module] = self._factors(module)
                    new = fresh[module]
                    if new is not None:  # running averages of the normalised factors, starting from ones
                        for key, val in zip(("H", "S"), new, strict=True):
                            cur = state[key] if key in state else torch.ones_like(val)
                            state[key] = cur.mul_(keep).add_(val, alpha=add)
                if layer is not None and "H" in state:
                    module, kind = layer
                    h, s = state["H"], state["S"]
                    if kind == "weight":
                        fisher = torch.outer(s, h[: p[0].numel()]).view_as(p) + lam
                    else:
                        fisher = s * h[-1] + lam
                else:  # not owned by a hooked layer: Adam-like diagonal
                    if "exp_avg_sq" not in state:
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    fisher = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(eps)
                p.addcdiv_(m_hat, fisher, value=-lr)
        self._captured.clear()
        return loss


def _build(params: Iterable[Any], model: torch.nn.Module | None = None, **hp: Any) -> AdaFisher:
    return AdaFisher(params, model=model, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                     gammas=(hp["gamma0"], hp["gamma1"]), damping=hp["damping"], t_cov=hp["t_cov"], eps=hp["eps"],
                     weight_decay=hp["weight_decay"])


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="adafisher",
            build=_build,
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "gamma0": 0.92, "gamma1": 0.008, "damping": 1e-3,
                      "t_cov": 100, "eps": 1e-8, "weight_decay": 0.0},
            search_space={"lr": ("log-uniform", 1e-5, 1e-1), "damping": ("log-uniform", 1e-5, 1e-1)},
            wants_model=True,
            paper="Gomes et al. 2025, AdaFisher: Adaptive Second Order Optimization via Fisher Information, "
            "arXiv:2405.16397",
            summary="AdaFisher: Adam momentum / diagonal K-FAC Fisher from Linear/Conv2d hooks (no sqrt); Adam "
            "diagonal elsewhere",
        ),
    ]
