"""MicroAdam (Modoranu et al. 2024, arXiv:2405.15593; official code github.com/IST-DASLab/ISTA-DASLab-Optimizers
with CUDA kernels in IST-DASLab/ISTA-DASLab-Optimizers-CUDA) in pure torch: Adam statistics rebuilt from a ring
buffer of the last m sparse (top-k) gradients, with 4-bit error feedback, so the optimizer state is about 0.9 bytes
per parameter instead of AdamW's 8.

The update rule, the official conventions it follows (block-wise top-k, the quantiser floor((x - min)/u + 0.5) with
u = (max - min)/15, age exponents, bias corrections, eps outside the square root) and every deviation are in
docs/optimizers.md (section MicroAdam); tests/fidelity/test_fid_microadam.py checks it against a transcription of
the official code. Arithmetic runs in the parameter's dtype (float32 for half-precision parameters); the ring
buffer values are stored in `value_dtype` (bf16, as the official).

Why the update is applied sparsely: the window holds at most m*k = m*density*d entries, so the Adam statistics,
the update and the parameter write touch only those (index_add into two zeroed work buffers, gather, scatter, and
re-zeroing); the dense passes left are the error feedback, |a| for the top-k, and the quantiser.

Invariant (tests/test_zoo_handcomputed.py): with density 1, ef_bits 0 (exact error feedback), float32 values and
m >= the number of steps, the window holds every gradient and the update is exactly Adam's.

State bytes per parameter: m*density*(2 index + 2 value) + 0.5 (packed 4-bit error) + 2*itemsize/quant_block_size,
i.e. 0.90 B at the defaults, against 8 B for AdamW: what `optimizer_state_mb` reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import OptimizerSpec, hookimpl

VALUE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
LEVELS = 15  # 4 bits


def compute_dtype(p: torch.Tensor) -> torch.dtype:
    """The arithmetic dtype for a parameter: its own for float32/float64, float32 for half types."""
    return p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32


def _quant_views(x: torch.Tensor, block: int) -> list[torch.Tensor]:
    """x (flat) as (full blocks, block) and, when there is one, (1, rest): the official block split."""
    d = x.numel()
    full = d // block
    views = [x[: full * block].view(full, block)] if full else []
    if d - full * block:
        views.append(x[full * block:].view(1, -1))
    return views


def quantize4_(x: torch.Tensor, block: int, packed: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
    """The official 4-bit asymmetric block quantiser, code = floor((x - min) / u + 0.5) with u = (max - min) / 15,
    written into `packed` (two codes per byte, even index in the high nibble) with the per-block range in lo, hi.
    Destroys x (it becomes the codes). A block whose range is zero gets code 0."""
    start = 0
    for v in _quant_views(x, block):
        n = v.shape[0]
        torch.amin(v, dim=1, out=lo[start:start + n])
        torch.amax(v, dim=1, out=hi[start:start + n])
        unit = (hi[start:start + n] - lo[start:start + n]) / LEVELS
        unit = torch.where(unit > 0, unit, torch.ones_like(unit))  # range 0: every entry is min, code 0
        v.sub_(lo[start:start + n, None]).div_(unit[:, None]).add_(0.5).floor_()
        start += n
    d = x.numel()
    even = x[0::2]
    if d % 2:
        packed[-1:].copy_(even[-1:] * 16)
        even = even[:-1]
    packed[: d // 2].copy_(even.mul_(16).add_(x[1::2]))


def dequantize4_into(packed: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, block: int, out: torch.Tensor) -> None:
    """out <- code * u + min per block (the official inverse quantiser, without the final += )."""
    d = out.numel()
    out[0::2].copy_(packed[: (d + 1) // 2] >> 4)
    out[1::2].copy_(packed[: d // 2] & 0x0F)
    start = 0
    for v in _quant_views(out, block):
        n = v.shape[0]
        unit = (hi[start:start + n] - lo[start:start + n]) / LEVELS
        v.mul_(unit[:, None]).add_(lo[start:start + n, None])
        start += n


class MicroAdam(torch.optim.Optimizer):
    """Sparse-window Adam with 4-bit error feedback; see the module docstring and docs/optimizers.md."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        m: int = 10,
        density: float = 0.01,
        block_size: int = 4096,
        quant_block_size: int = 4096,
        ef_bits: int = 4,
        value_dtype: str = "bfloat16",
    ) -> None:
        if not 0 < density <= 1:
            raise ValueError(f"density must be in (0, 1], got {density}")
        if ef_bits not in (0, 4):
            raise ValueError("ef_bits must be 4 (packed 4-bit error feedback) or 0 (exact error feedback)")
        if value_dtype not in VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {sorted(VALUE_DTYPES)}, got {value_dtype!r}")
        if lr <= 0 or m < 1 or block_size < 1 or quant_block_size < 1:
            raise ValueError("lr must be positive; m, block_size and quant_block_size at least 1")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.m = int(m)
        self.density = float(density)
        self.block_size = int(block_size)
        self.quant_block_size = int(quant_block_size)
        self.ef_bits = int(ef_bits)
        self.value_dtype = VALUE_DTYPES[value_dtype]
        self._offsets_cache: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._scratch: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}

    def _layout(self, d: int) -> tuple[int, int, int, int]:
        """(block size, full blocks, k per full block, k of the last partial block) for a tensor of d entries."""
        bsz = min(d, self.block_size)
        full = d // bsz
        rest = d - full * bsz
        k_many = math.ceil(bsz * self.density)
        k_few = math.ceil(rest * self.density) if rest else 0
        return bsz, full, k_many, k_few

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        d = p.numel()
        bsz, full, k_many, k_few = self._layout(d)
        k = full * k_many + k_few
        index_dtype = torch.int16 if bsz <= 2**15 else torch.int32
        cdt = compute_dtype(p)
        state["step"] = 0
        state["I"] = torch.zeros(self.m, k, dtype=index_dtype, device=p.device)
        state["V"] = torch.zeros(self.m, k, dtype=self.value_dtype, device=p.device)
        if self.ef_bits == 4:
            nq = math.ceil(d / self.quant_block_size)
            state["error"] = torch.zeros(math.ceil(d / 2), dtype=torch.uint8, device=p.device)
            state["qmin"] = torch.zeros(nq, dtype=cdt, device=p.device)
            state["qmax"] = torch.zeros(nq, dtype=cdt, device=p.device)
        else:
            state["error"] = torch.zeros(d, dtype=cdt, device=p.device)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch casts every state tensor of a floating-point parameter to the parameter's dtype on load, which
        would turn the int16 indices, bf16 values and packed uint8 error into floats (and, for bf16 parameters,
        round the indices). Put the saved tensors back with their own dtypes."""
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        saved = state_dict["state"]
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved_ids, params, strict=True):
            for key, value in saved.get(pid, {}).items():
                if torch.is_tensor(value):
                    self.state[p][key] = value.to(device=p.device, copy=True)

    def _offsets(self, d: int, device: torch.device) -> torch.Tensor:
        """Start index of the block each of the k columns belongs to (cached per size: not worth state bytes)."""
        key = (d, device)
        if key not in self._offsets_cache:
            bsz, full, k_many, k_few = self._layout(d)
            cols = torch.arange(full * k_many + k_few, device=device)
            self._offsets_cache[key] = torch.div(cols, k_many, rounding_mode="floor").clamp_(max=full) * bsz
        return self._offsets_cache[key]

    def _work(self, d: int, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
        """Three reused work buffers of >= d entries: a (the error-fed gradient), |a|, and a zeroed accumulator
        pair for the window statistics (kept zero between uses). Fresh temporaries per tensor would page-fault."""
        key = (device, dtype)
        bufs = self._scratch.get(key)
        if bufs is None or bufs[0].numel() < d:
            bufs = [torch.empty(d, device=device, dtype=dtype), torch.empty(d, device=device, dtype=dtype),
                    torch.zeros(d, device=device, dtype=dtype), torch.zeros(d, device=device, dtype=dtype)]
            self._scratch[key] = bufs
        return [b[:d] for b in bufs]

    def _window_weights(self, t: int, beta1: float, beta2: float, dtype: torch.dtype,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """beta_i^((t - 1 - row) mod m) for the live rows, as (rows, 1) columns (cached for the step's tensors)."""
        key = (t, beta1, beta2, dtype, device)
        if getattr(self, "_weights_key", None) != key:
            live = range(min(t, self.m))
            w = [[b ** ((t - 1 - r) % self.m) for r in live] for b in (beta1, beta2)]
            self._weights = tuple(torch.tensor(x, dtype=dtype, device=device)[:, None] for x in w)
            self._weights_key = key
        return self._weights  # type: ignore[return-value]

    def _topk(self, a_abs: torch.Tensor) -> torch.Tensor:
        """Local (within-block) indices of the per-block top-k of |a|, shape (k,)."""
        d = a_abs.numel()
        bsz, full, k_many, k_few = self._layout(d)
        parts = [torch.topk(a_abs[: full * bsz].view(full, bsz), k_many, dim=1, sorted=False).indices.view(-1)]
        if k_few:
            parts.append(torch.topk(a_abs[full * bsz:], k_few, sorted=False).indices)
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    self._init_state(p, state)
                state["step"] += 1
                self._update(p, state, lr, eps, wd, beta1, beta2)
        return loss

    def _update(self, p: torch.Tensor, state: dict[str, Any], lr: float, eps: float, wd: float, beta1: float,
                beta2: float) -> None:
        t = state["step"]
        d = p.numel()
        cdt = compute_dtype(p)
        a, a_abs, z1, z2 = self._work(d, p.device, cdt)
        offsets = self._offsets(d, p.device)
        grad = p.grad.detach().reshape(-1)
        # error feedback: a = g + Q^-1(e)
        if self.ef_bits == 4:
            dequantize4_into(state["error"], state["qmin"], state["qmax"], self.quant_block_size, a)
            a.add_(grad)
        else:
            torch.add(state["error"], grad, out=a)
        local = self._topk(torch.abs(a, out=a_abs))
        gidx = local + offsets
        row = (t - 1) % self.m
        state["I"][row] = local.to(state["I"].dtype)
        state["V"][row] = a.index_select(0, gidx).to(self.value_dtype)
        a.index_fill_(0, gidx, 0.0)
        if self.ef_bits == 4:
            quantize4_(a, self.quant_block_size, state["error"], state["qmin"], state["qmax"])
        else:
            state["error"].copy_(a)
        if wd:
            p.mul_(1 - lr * wd)
        # Adam statistics from the window, only where the window has entries (the update is sparse)
        live = min(t, self.m)
        w1, w2 = self._window_weights(t, beta1, beta2, cdt, p.device)
        vals = state["V"][:live].to(cdt)
        idx = (state["I"][:live].long() + offsets).view(-1)
        z1.index_add_(0, idx, (w1 * vals).view(-1))
        z2.index_add_(0, idx, (w2 * vals).mul_(vals).view(-1))
        c1 = (1 - beta1) / (1 - beta1**t)
        c2 = (1 - beta2) / (1 - beta2**t)
        m_hat = z1.index_select(0, idx).mul_(c1)
        update = m_hat.div_(z2.index_select(0, idx).mul_(c2).sqrt_().add_(eps))
        z1.index_fill_(0, idx, 0.0)
        z2.index_fill_(0, idx, 0.0)
        flat = p.view(-1) if p.is_contiguous() else None
        if flat is None:
            raise RuntimeError("MicroAdam needs contiguous parameters")
        # duplicate indices (an entry in several rows) all write the same value, so the order does not matter
        flat.index_copy_(0, idx, torch.add(flat.index_select(0, idx), update.to(p.dtype), alpha=-lr))


def _build(params: Iterable[Any], **hp: Any) -> MicroAdam:
    return MicroAdam(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                     weight_decay=hp["weight_decay"], m=hp["m"], density=hp["density"], block_size=hp["block_size"],
                     quant_block_size=hp["quant_block_size"], ef_bits=hp["ef_bits"], value_dtype=hp["value_dtype"])


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="microadam",
            build=_build,
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "m": 10,
                      "density": 0.01, "block_size": 4096, "quant_block_size": 4096, "ef_bits": 4,
                      "value_dtype": "bfloat16"},
            search_space={"lr": ("log-uniform", 1e-5, 1e-1), "weight_decay": ("log-uniform", 1e-4, 1.0)},
            paper="Modoranu et al. 2024, MicroAdam: Accurate Adaptive Optimization with Low Space Overhead and "
            "Provable Convergence, arXiv:2405.15593",
            summary="MicroAdam: Adam moments from a window of m top-k gradients + 4-bit error feedback "
            "(~0.9 B/param of state vs 8 for AdamW)",
        )
    ]
