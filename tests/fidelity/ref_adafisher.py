"""Reference: AdaFisher as the official code computes it, transcribed in our own words for the differential test.

Source: github.com/AtlasAnalyticsLab/AdaFisher @ eb858c60e4b8aa4f7c9dcbb8ff6dba0b0e155435, optimizers/AdaFisher.py
(MinMaxNormalization with epsilon 1e-6 and +-inf handling, update_running_avg, _extract_patches, Compute_H_D and
Compute_S_D for Linear/Conv2d/BatchNorm2d/LayerNorm, AdaFisherBackBone's forward hook and full backward hook gated
by steps % TCov == 0, _get_F_tilde = kron(H, S)^T + Lambda split into weight and bias, AdaFisher._step: L2 weight
decay, momentum, lr / (1 - beta^t), division by F with no square root).

Kept close to the official structure: hooks compute and fold the factors during the forward and backward passes
(a forward hook for H, a full backward hook for S), patches are extracted by padding, grouping and unfolding the
input as the official does. Simplified: the official walks the parameter list and the module list in lock step to
pair each parameter with its layer (and falls back to F = 1 when the shapes do not match); here the pairing is by
identity, which is the same for networks whose parameters all belong to supported layers (the test networks).
Not reproduced: distributed factor averaging, state_dict of the factors.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.LayerNorm)


def _minmax(t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    t = t.clone()
    t[t == math.inf] = 1.0
    t[t == -math.inf] = 0.0
    lo, hi = t.min(), t.max()
    return t.add_(-lo).div_(hi - lo + eps)


def _running_avg(new: torch.Tensor, cur: torch.Tensor, gamma: float) -> None:
    cur *= gamma * 1e-1
    cur += (gamma * 1e-2) * new


def _patches(x: torch.Tensor, k: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
             groups: int) -> torch.Tensor:
    if pad[0] + pad[1] > 0:
        x = F.pad(x, (pad[1], pad[1], pad[0], pad[0]))
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).unfold(3, k[0], stride[0]).unfold(4, k[1], stride[1])
    x = x.permute(0, 1, 3, 4, 2, 5, 6).contiguous()
    return x.view(b, groups, -1, c // groups * k[0] * k[1])


def _with_ones(rows: torch.Tensor) -> torch.Tensor:
    return torch.cat([rows, rows.new(rows.size(0), 1).fill_(1)], 1)


def h_factor(h: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        if h.ndim > 2:
            h = h.reshape(-1, h.shape[-1])
        hb = _with_ones(h) if layer.bias is not None else h
        return torch.einsum("ij,ij->j", hb, hb) / h.size(0)
    if isinstance(layer, nn.Conv2d):
        b = h.size(0)
        h = _patches(h, layer.kernel_size, layer.stride, layer.padding, layer.groups)
        spatial = h.size(2) * h.size(3)  # positions times the patch length, as the official
        h = h.reshape(-1, h.size(-1))
        hb = _with_ones(h) if layer.bias is not None else h
        return torch.einsum("ij,ij->j", hb, hb) / (b * spatial)
    if isinstance(layer, nn.BatchNorm2d):
        b, spatial = h.size(0), h.size(2) * h.size(3)
        s = torch.sum(h, dim=(0, 2, 3)).unsqueeze(1) / spatial**2
        hb = _with_ones(s)
        return torch.einsum("ij,ij->j", hb, hb) / b**2
    dims = [d for d in range(h.ndim) if d != 1]
    b, norm = h.shape[0], math.prod(h.shape[d] for d in dims if d != 0)
    s = torch.sum(h, dim=dims).unsqueeze(1) / norm**2
    hb = _with_ones(s)
    return torch.einsum("ij,ij->j", hb, hb) / b**2


def s_factor(s: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, nn.Conv2d):
        b, spatial = s.shape[0], s.size(2) * s.size(3)
        s = s.transpose(1, 2).transpose(2, 3).reshape(-1, s.size(1))
        return torch.einsum("ij,ij->j", s, s) / (b * spatial)
    if isinstance(layer, nn.Linear):
        if s.ndim > 2:
            s = s.reshape(-1, s.shape[-1])
        return torch.einsum("ij,ij->j", s, s) / s.size(0)
    if isinstance(layer, nn.BatchNorm2d):
        total = torch.sum(s, dim=(0, 2, 3))
        return torch.einsum("i,i->i", total, total) / s.size(0)
    total = torch.sum(s, dim=tuple(range(s.ndim - 1)))
    return torch.einsum("i,i->i", total, total) / s.size(0)


class AdaFisherReference(torch.optim.Optimizer):
    def __init__(self, model: nn.Module, lr: float = 1e-3, beta: float = 0.9, Lambda: float = 1e-3,
                 gamma: float = 0.8, TCov: int = 100, weight_decay: float = 0.0) -> None:
        self.gamma, self.Lambda, self.TCov, self.steps = gamma, Lambda, TCov, 0
        self.H: dict[nn.Module, torch.Tensor] = {}
        self.S: dict[nn.Module, torch.Tensor] = {}
        self.layers = [m for m in model.modules() if isinstance(m, SUPPORTED)]
        for m in self.layers:
            m.register_forward_hook(self._forward_hook)
            m.register_full_backward_hook(self._backward_hook)
        super().__init__(model.parameters(), dict(lr=lr, beta=beta, weight_decay=weight_decay))
        self.owner = {}
        for m in self.layers:
            self.owner[m.weight] = (m, 0)
            if m.bias is not None:
                self.owner[m.bias] = (m, 1)

    def _forward_hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if torch.is_grad_enabled() and self.steps % self.TCov == 0:
            new = h_factor(inputs[0].data, module)
            if self.steps == 0:
                self.H[module] = new.new(new.size(0)).fill_(1)
            _running_avg(_minmax(new), self.H[module], self.gamma)

    def _backward_hook(self, module: nn.Module, grad_in: Any, grad_out: Any) -> None:
        if self.steps % self.TCov == 0:
            new = s_factor(grad_out[0].data, module)
            if self.steps == 0:
                self.S[module] = new.new(new.size(0)).fill_(1)
            _running_avg(_minmax(new), self.S[module], self.gamma)

    def _f_tilde(self, p: torch.Tensor) -> torch.Tensor:
        if p not in self.owner:
            return torch.ones_like(p)
        m, which = self.owner[p]
        full = torch.kron(self.H[m].unsqueeze(1), self.S[m].unsqueeze(0)).t() + self.Lambda
        if m.bias is not None:
            part = full[:, :-1] if which == 0 else full[:, -1:]
            return part.reshape(p.shape)
        return full.reshape(p.shape)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["step"] += 1
                grad = p.grad
                if group["weight_decay"] != 0:
                    grad = grad.add(p, alpha=group["weight_decay"])
                st["exp_avg"].mul_(group["beta"]).add_(grad, alpha=1 - group["beta"])
                p.addcdiv_(st["exp_avg"], self._f_tilde(p), value=-group["lr"] / (1 - group["beta"] ** st["step"]))
        self.steps += 1
