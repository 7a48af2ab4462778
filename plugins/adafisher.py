"""AdaFisher (Gomes et al., ICLR 2025, arXiv:2405.16397; official code github.com/AtlasAnalyticsLab/AdaFisher):
Adam's momentum preconditioned by a diagonal Kronecker-factored Fisher, F = kron(H, S) + lambda, instead of the
square root of a second moment.

The update rule, the per-layer factor formulas (Linear, Conv2d including grouped convolutions, BatchNorm2d,
LayerNorm), the defaults and every deviation are in docs/optimizers.md (section AdaFisher);
tests/fidelity/test_fid_adafisher.py checks this plugin against a transcription of the official code.

Why hooks: the factors need each layer's input and the gradient at its output, which only the model sees, so the
optimizer registers a forward hook per supported layer (hence `wants_model`) and a tensor hook on the layer's
output. It keeps the captured tensors of the latest training-mode pass and turns them into factors at `step`,
only on the steps that refresh the factors (every `t_cov` steps, the first included).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from optbench import OptimizerSpec, hookimpl

HOOKED = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.LayerNorm)
UNHOOKED_RULES = ("identity", "adam")


def _sq(rows: torch.Tensor) -> torch.Tensor:
    """Column sums of squares, computed as the official einsum('ij,ij->j') (same reduction, same rounding)."""
    return torch.einsum("ij,ij->j", rows, rows)


def _input_factor(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The diagonal activation factor H_D of the official Compute_H_D, per layer type."""
    if isinstance(module, torch.nn.Linear):
        rows = x.reshape(-1, x.shape[-1])
        if module.bias is not None:
            rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)
        return _sq(rows) / rows.shape[0]
    if isinstance(module, torch.nn.Conv2d):
        batch, groups = x.shape[0], module.groups
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (B, C k k, P)
        positions = cols.shape[2]
        per_group = cols.shape[1] // groups  # D = C/groups * k * k, the weight's row length
        rows = cols.view(batch, groups, per_group, positions).permute(0, 1, 3, 2).reshape(-1, per_group)
        if module.bias is not None:
            rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)
        # the official divides by batch * positions * D (its "spatial size" includes the patch length)
        return _sq(rows) / (batch * positions * per_group)
    if isinstance(module, torch.nn.BatchNorm2d):
        batch, positions = x.shape[0], x.shape[2] * x.shape[3]
        sums = x.sum(dim=(0, 2, 3)).unsqueeze(1) / positions**2
        return _sq(torch.cat([sums, torch.ones_like(sums)], dim=1)) / batch**2  # [weight, bias]
    # LayerNorm: the official reduces every dimension except dim 1
    dims = [d for d in range(x.ndim) if d != 1]
    norm = math.prod(x.shape[d] for d in dims if d != 0)
    sums = x.sum(dim=dims).unsqueeze(1) / norm**2
    return _sq(torch.cat([sums, torch.ones_like(sums)], dim=1)) / x.shape[0] ** 2


def _output_factor(module: torch.nn.Module, s: torch.Tensor) -> torch.Tensor:
    """The diagonal gradient factor S_D of the official Compute_S_D, per layer type."""
    if isinstance(module, torch.nn.Linear):
        rows = s.reshape(-1, s.shape[-1])
        return _sq(rows) / rows.shape[0]
    if isinstance(module, torch.nn.Conv2d):
        rows = s.permute(0, 2, 3, 1).reshape(-1, s.shape[1])
        return _sq(rows) / (s.shape[0] * s.shape[2] * s.shape[3])
    if isinstance(module, torch.nn.BatchNorm2d):
        sums = s.sum(dim=(0, 2, 3))
        return sums * sums / s.shape[0]
    sums = s.sum(dim=tuple(range(s.ndim - 1)))  # LayerNorm
    return sums * sums / s.shape[0]


def minmax_normalise(t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The official MinMaxNormalization: +inf -> 1, -inf -> 0, then (t - min) / (max - min + eps)."""
    t = t.clone()
    t[t == math.inf] = 1.0
    t[t == -math.inf] = 0.0
    lo, hi = t.min(), t.max()
    return t.add_(-lo).div_(hi - lo + eps)


class AdaFisher(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], model: torch.nn.Module, lr: float = 1e-3, beta: float = 0.9,
                 gamma: float = 0.8, damping: float = 1e-3, t_cov: int = 100, weight_decay: float = 5e-4,
                 unhooked: str = "identity", beta2: float = 0.999, eps: float = 1e-8, minmax_eps: float = 1e-6) -> None:
        if model is None:
            raise ValueError("AdaFisher needs the model (layer hooks); the task has none")
        if t_cov < 1:
            raise ValueError(f"t_cov must be at least 1, got {t_cov}")
        if unhooked not in UNHOOKED_RULES:
            raise ValueError(f"unhooked must be one of {UNHOOKED_RULES}, got {unhooked!r}")
        if not 0.0 <= beta < 1.0 or not 0.0 <= gamma < 1.0:
            raise ValueError("beta and gamma must be in [0, 1)")
        super().__init__(params, dict(lr=lr, beta=beta, weight_decay=weight_decay, beta2=beta2, eps=eps))
        self.gamma = gamma
        self.damping = damping
        self.t_cov = t_cov
        self.unhooked = unhooked
        self.minmax_eps = minmax_eps
        self.steps = 0  # completed steps: the factors refresh when steps % t_cov == 0, as in the official code
        self.factors: dict[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self._captured: dict[torch.nn.Module, dict[str, torch.Tensor]] = {}
        self._layer_of: dict[int, tuple[torch.nn.Module, int]] = {}
        mine = {id(p) for g in self.param_groups for p in g["params"]}
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not isinstance(module, HOOKED) or weight is None or id(weight) not in mine:
                continue
            self._layer_of[id(module.weight)] = (module, 0)
            if module.bias is not None and id(module.bias) in mine:
                self._layer_of[id(module.bias)] = (module, 1)
            module.register_forward_hook(self._save_input)

    def _save_input(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Keeps the input and hooks the output's gradient, on factor-refresh steps of training-mode passes."""
        if self.steps % self.t_cov or not (module.training and torch.is_grad_enabled() and output.requires_grad):
            return
        self._captured[module] = {"a": inputs[0].detach()}  # a gradient from an older pass no longer matches

        def save_grad(grad: torch.Tensor) -> None:
            self._captured.setdefault(module, {})["s"] = grad.detach()

        output.register_hook(save_grad)

    def _refresh(self, module: torch.nn.Module) -> None:
        cap = self._captured.get(module, {})
        if "a" not in cap or "s" not in cap:
            return
        new = (minmax_normalise(_input_factor(module, cap["a"]), self.minmax_eps),
               minmax_normalise(_output_factor(module, cap["s"]), self.minmax_eps))
        old = self.factors.get(module) or (torch.ones_like(new[0]), torch.ones_like(new[1]))
        keep, add = self.gamma * 1e-1, self.gamma * 1e-2  # the official update_running_avg
        self.factors[module] = tuple(cur.mul_(keep).add_(add * val) for cur, val in zip(old, new, strict=True))

    def _fisher(self, p: torch.Tensor) -> torch.Tensor | None:
        layer = self._layer_of.get(id(p))
        if layer is None or layer[0] not in self.factors:
            return None
        module, which = layer
        h, s = self.factors[module]
        full = torch.kron(h.unsqueeze(1), s.unsqueeze(0)).t() + self.damping  # F[i, j] = H[j] S[i] + lambda
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.LayerNorm):
            return full[:, which].reshape(p.shape)
        if module.bias is None:
            return full.reshape(p.shape)
        return (full[:, :-1] if which == 0 else full[:, -1]).reshape(p.shape)

    @torch.no_grad()
    def step(self, closure: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.steps % self.t_cov == 0:
            for module in {m for m, _ in self._layer_of.values()}:
                self._refresh(module)
        for group in self.param_groups:
            lr, wd, beta = group["lr"], group["weight_decay"], group["beta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                grad = p.grad.add(p, alpha=wd) if wd != 0 else p.grad
                state["exp_avg"].mul_(beta).add_(grad, alpha=1 - beta)
                step_size = lr / (1 - beta**t)
                fisher = self._fisher(p)
                if fisher is None and self.unhooked == "adam":  # named deviation: Adam's diagonal off the hooks
                    if "exp_avg_sq" not in state:
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    state["exp_avg_sq"].mul_(group["beta2"]).addcmul_(grad, grad, value=1 - group["beta2"])
                    fisher = (state["exp_avg_sq"] / (1 - group["beta2"] ** t)).sqrt_().add_(group["eps"])
                if fisher is None:  # the official F = 1 for parameters of layers it has no factors for
                    p.add_(state["exp_avg"], alpha=-step_size)
                else:
                    p.addcdiv_(state["exp_avg"], fisher, value=-step_size)
        self.steps += 1
        self._captured.clear()
        return loss

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        order = list(dict.fromkeys(m for m, _ in self._layer_of.values()))
        sd["factors"] = [list(self.factors[m]) if m in self.factors else None for m in order]
        sd["steps"] = self.steps
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("factors", [])
        self.steps = state_dict.pop("steps", 0)
        super().load_state_dict(state_dict)
        order = list(dict.fromkeys(m for m, _ in self._layer_of.values()))
        self.factors = {m: (f[0].clone(), f[1].clone()) for m, f in zip(order, saved, strict=False) if f is not None}


def _build(params: Iterable[Any], model: torch.nn.Module | None = None, **hp: Any) -> AdaFisher:
    return AdaFisher(params, model=model, **hp)


# lr, gamma, Lambda and weight decay: the official Image_Classification/configs/AdaFisherCNN.yaml (CIFAR-10 ResNet-18);
# beta 0.9 and TCov 100: the official class defaults (no published config overrides them).
DEFAULTS = {"lr": 1e-3, "beta": 0.9, "gamma": 0.8, "damping": 1e-3, "t_cov": 100, "weight_decay": 5e-4,
            "unhooked": "identity", "beta2": 0.999, "eps": 1e-8, "minmax_eps": 1e-6}


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="adafisher",
            build=_build,
            defaults=DEFAULTS,
            search_space={"lr": ("log-uniform", 1e-5, 1e-1), "damping": ("log-uniform", 1e-5, 1e-1),
                          "weight_decay": ("log-uniform", 1e-6, 1e-2)},
            wants_model=True,
            paper="Gomes et al. 2025, AdaFisher: Adaptive Second Order Optimization via Fisher Information, "
            "arXiv:2405.16397 (code: AtlasAnalyticsLab/AdaFisher)",
            summary="AdaFisher: Adam momentum / diagonal K-FAC Fisher from Linear/Conv2d/BatchNorm/LayerNorm hooks "
            "(no sqrt)",
        ),
    ]
