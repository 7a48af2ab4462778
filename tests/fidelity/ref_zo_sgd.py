"""Reference: DeepZero's coordinate-wise gradient estimate (CGE) followed by torch's SGD, transcribed in our own words.

Source: github.com/OPTML-Group/DeepZero @ 5cf30b1c314a94f0c13be8da5d68e382ade801fa, algorithm/zoo/gradient_estimate.py
(cge: for every coordinate i whose mask entry is nonzero, in ascending order, (f(theta + mu e_i) - f(theta)) / mu
on a copy of the parameters; parameters without a mask, i.e. everything but pruned weights, are estimated in
full) and experiments/sparse_gradient_training.py (the estimate becomes .grad, then torch.optim.SGD(lr,
weight_decay, momentum, nesterov) steps).

Not from DeepZero: how the mask is chosen. DeepZero prunes with ZO-GraSP layer ratios and then a random mask per
layer (`layer_wise_random`); optbench draws each weight tensor's mask uniformly at random with one ratio for all
layers (docs/optimizers.md). `draw_masks` below is that documented procedure, written independently of the plugin,
so both sides of the test estimate the same coordinates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch


def draw_masks(named: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """0/1 masks for the weight tensors (2+ dimensions): numel - round(sparsity * numel) ones at random positions."""
    masks = {}
    for name, p in named.items():
        if p.dim() < 2 or sparsity <= 0:
            continue
        n = p.numel()
        chosen = torch.randperm(n)[: n - round(sparsity * n)]
        mask = torch.zeros(n, dtype=p.dtype)
        mask[chosen] = 1
        masks[name] = mask.view_as(p)
    return masks


@torch.no_grad()
def cge(func: Callable[[dict[str, torch.Tensor]], float], params: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor], step_size: float) -> dict[str, torch.Tensor]:
    base = func(params)
    grads = {}
    for key, param in params.items():
        mask_flat = masks[key].flatten() if key in masks else torch.ones_like(param).flatten()
        dd = torch.zeros_like(param)
        dd_flat = dd.view(-1)
        for idx in mask_flat.nonzero().flatten():
            perturbed = copy.deepcopy(params)
            perturbed[key].view(-1)[idx] += step_size
            dd_flat[idx] = (func(perturbed) - base) / step_size
        grads[key] = dd
    return grads
