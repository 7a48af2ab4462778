"""Reference: MicroAdam as the official code computes it, transcribed in our own words for the differential test.

Sources:
- github.com/IST-DASLab/ISTA-DASLab-Optimizers @ 4c98e6e7d8a51147cc8fdd77458baac881852b56,
  ista_daslab_optimizers/micro_adam/micro_adam.py (MicroAdam.update_step: steps 4-11 of the paper's Algorithm 1);
- github.com/IST-DASLab/ISTA-DASLab-Optimizers-CUDA @ e4a6147a1ff10824643bf3bf0267c2d2c23a5602,
  kernels/micro_adam/micro_adam_asymm_block_quant.cu (Q: code = floor((x - min) / u + 0.5), u = (max - min) / 15),
  micro_adam_asymm_block_quant_inv.cu (Q^-1: x += code * u + min) and micro_adam_update.cu (the window's Adam
  statistics: exponent (t - 1 - row) mod m over rows < min(t, m), c_i = (1 - beta_i) / (1 - beta_i^t),
  update c1 z1 / (sqrt(c2 z2) + eps)).

The official kernels run in bf16 on CUDA; this transcription runs the same arithmetic in the parameter's dtype
(float64 in the tests), keeps the ring-buffer values in `value_dtype` (bf16, as the official V) and the 4-bit codes
unpacked (packing two codes per byte is storage, not arithmetic). Two things are not reproduced: the quantisation
range is kept in the parameter's dtype (the official rounds min/max to bf16, which can put entries below the
rounded min, where the CUDA float->uint8 cast is undefined), and a block whose range is zero gets code 0 (the
official divides 0 by 0 there). `block_size` is the official `d_block_size` (derived from the GPU's shared memory
there; a hyperparameter here).
"""

from __future__ import annotations

import math
from typing import Any

import torch


def _blocks(d: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive blocks of `size` entries, the last one possibly shorter (official block_split)."""
    return [(s, min(s + size, d)) for s in range(0, d, size)]


class MicroAdamReference(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float, m: int = 10, k_init: float = 0.01, block_size: int = 4096,
                 quant_block_size: int = 4096, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, value_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))
        self.m, self.k_init, self.bsz, self.qbsz = m, k_init, block_size, quant_block_size
        self.beta1, self.beta2, self.eps = betas[0], betas[1], eps
        self.value_dtype = value_dtype
        self.steps = 0

    def _init(self, p: torch.Tensor) -> dict[str, Any]:
        d = p.numel()
        dbs = min(d, self.bsz)
        full = d // dbs
        k_many = int(math.ceil(dbs * self.k_init))
        k_few = int(math.ceil((d - full * dbs) * self.k_init))
        k = full * k_many + k_few
        nq = len(_blocks(d, self.qbsz))
        return {"d": d, "dbs": dbs, "full": full, "k_many": k_many, "k_few": k_few, "k": k, "index": 0,
                "I": torch.zeros(self.m, k, dtype=torch.long), "V": torch.zeros(self.m, k, dtype=self.value_dtype),
                "codes": torch.zeros(d, dtype=torch.long), "mins": torch.zeros(nq, dtype=p.dtype),
                "maxs": torch.zeros(nq, dtype=p.dtype)}

    def _dequantize_into(self, st: dict[str, Any], x: torch.Tensor) -> None:
        for j, (s, e) in enumerate(_blocks(st["d"], self.qbsz)):
            lo, hi = st["mins"][j], st["maxs"][j]
            unit = (hi - lo) / 15.0
            x[s:e] += st["codes"][s:e].to(x.dtype) * unit + lo

    def _quantize(self, st: dict[str, Any], x: torch.Tensor) -> None:
        for j, (s, e) in enumerate(_blocks(st["d"], self.qbsz)):
            st["mins"][j], st["maxs"][j] = x[s:e].min(), x[s:e].max()
            unit = (st["maxs"][j] - st["mins"][j]) / 15.0
            if unit == 0:
                st["codes"][s:e] = 0
            else:
                st["codes"][s:e] = torch.floor((x[s:e] - st["mins"][j]) / unit + 0.5).long()

    def _global(self, st: dict[str, Any], local: torch.Tensor) -> torch.Tensor:
        """Block-local top-k indices of one ring-buffer row -> indices into the flat tensor."""
        col = torch.arange(st["k"])
        block = torch.clamp(col // st["k_many"], max=st["full"])
        return local + block * st["dbs"]

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        self.steps += 1
        t = self.steps
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p not in self.state or not self.state[p]:
                    self.state[p] = self._init(p)
                st = self.state[p]
                a = p.grad.reshape(-1).clone()
                self._dequantize_into(st, a)  # step 4: a = g + Q^-1(e)
                row = st["index"]
                cut = st["full"] * st["dbs"]
                chosen = [torch.topk(a[:cut].abs().view(st["full"], st["dbs"]), st["k_many"], sorted=False)
                          .indices.reshape(-1)]
                if st["k_few"] > 0:
                    chosen.append(torch.topk(a[cut:].abs(), st["k_few"], sorted=False).indices)
                st["I"][row] = torch.cat(chosen)  # step 5
                gidx = self._global(st, st["I"][row])
                st["V"][row] = a[gidx].to(self.value_dtype)
                st["index"] = (row + 1) % self.m
                a[gidx] = 0.0  # step 6
                self._quantize(st, a)  # steps 7-8
                if wd > 0:
                    p.mul_(1 - lr * wd)
                # steps 10-11: Adam statistics from the window
                z1 = torch.zeros(st["d"], dtype=p.dtype)
                z2 = torch.zeros(st["d"], dtype=p.dtype)
                for r in range(min(t, self.m)):
                    age = (t - 1 - r) % self.m
                    vals = st["V"][r].to(p.dtype)
                    idx = self._global(st, st["I"][r])
                    z1.index_add_(0, idx, self.beta1**age * vals)
                    z2.index_add_(0, idx, self.beta2**age * vals * vals)
                c1 = (1 - self.beta1) / (1 - self.beta1**t)
                c2 = (1 - self.beta2) / (1 - self.beta2**t)
                update = c1 * z1 / (torch.sqrt(c2 * z2) + self.eps)
                p.add_(update.view_as(p), alpha=-lr)
