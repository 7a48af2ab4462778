"""Fused optimizer steps: each optimizer's whole update, over every tensor of a parameter group, compiled by
torch.compile into one program that passes over p, g and the state of each tensor once. Kernels that need a
per-tensor reduction before the update (FAdam's epsilon and two clips, Lion-IB's temperature mode) are `staged`:
separately compiled stages, so each per-tensor scalar is computed once (see `staged`). On CPU inductor emits one
vectorised C++ loop per tensor; on CUDA the same graph becomes Triton kernels (the multi-tensor path; not yet
measured here, no GPU). Each plugin keeps its eager per-tensor loop as the reference the fused kernels are
tested against (tests/fidelity/test_fused_kernels.py).

Why compile a list-taking function rather than hand-written foreach calls: torch._foreach_* makes one pass per
operation (Lion-IB would be ~12 passes over memory), while inductor fuses the element-wise chain into one.
Hyperparameters enter as 0-dim tensors (one float64 tensor of scalars per call), so an lr schedule or the step
count changing the bias corrections does not trigger a recompile.

`rational_tanh` is the one place a fused kernel may change numerics beyond rounding; see its docstring.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

IMPLS = ("auto", "loop", "fused")
#: below this many elements a step is too cheap for torch.compile's one-off warm-up to pay back
COMPILE_MIN_NUMEL = 1_000_000
KAPPA_MAX = 1e30  # Lion-IB: large enough that tanh saturates, small enough that kappa*c cannot be inf*0

#: inductor options for every fused kernel. On CPU these kernels are compute-bound, not memory-bound (a kernel
#: moving the same bytes as AdamW with no division measured 0.81x fused AdamW; Lion-IB's two divisions and
#: rational tanh make it ~2.5x): letting the C++ compiler contract a*b+c into one fused multiply-add cut Lion-IB's
#: and diffGrad's step by ~10% (docs/speed.md, "Fused kernels"). It changes rounding by at most one ulp per contracted
#: operation; tests/fidelity/test_fused_kernels.py still holds the kernels to the loop at rtol 1e-10 in float64.
COMPILE_OPTIONS = {"cpp.enable_floating_point_contract_flag": "fast"}

_compiled: dict[Callable, Callable] = {}
_failed: dict[Callable, str] = {}  # kernel -> why torch.compile did not work for it here


def choose(params: list[torch.Tensor], impl: str, kernel: Callable) -> str:
    """`impl` itself unless "auto": fused on CUDA, and on CPU from COMPILE_MIN_NUMEL parameters on (small trials
    keep the loop so no compile warm-up enters their time-to-target); the loop once compiling has failed."""
    if impl != "auto":
        return impl
    if not params or kernel in _failed:
        return "loop"
    if all(p.is_cuda for p in params) or sum(p.numel() for p in params) >= COMPILE_MIN_NUMEL:
        return "fused"
    return "loop"


def compiled(kernel: Callable) -> Callable:
    """`kernel` compiled once (cached) with this module's options."""
    if kernel not in _compiled:
        _compiled[kernel] = torch.compile(kernel, fullgraph=True, dynamic=False, options=COMPILE_OPTIONS)
    return _compiled[kernel]


def staged(driver: Callable) -> Callable:
    """Mark `driver` as a staged kernel: `run` calls it as it is, and it calls `compiled(stage)` on each of its
    stages. Every stage but the last must be pure (only the last mutates p or the state), so a stage that fails
    to compile leaves nothing half-updated for the eager fallback to apply twice."""
    driver.staged = True  # type: ignore[attr-defined]
    return driver


def run(kernel: Callable, fallback: Callable, *args: Any) -> None:
    """Run `kernel`'s compiled form on the loop's arguments; if compiling fails (no C++ compiler, an unsupported
    platform) say so once and use `fallback` (the eager loop) from then on."""
    if kernel not in _failed:
        try:
            if getattr(kernel, "staged", False):
                kernel(*args)
                _compiled[kernel] = kernel
            else:
                compiled(kernel)(*args)
            return
        except Exception as exc:  # noqa: BLE001 - any compile failure means: use the eager loop
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _failed[kernel] = why
            warnings.warn(f"torch.compile of {kernel.__name__} failed ({why}); using the eager per-tensor loop",
                          RuntimeWarning, stacklevel=3)
    fallback(*args)


def call_with(fn: Callable, args: tuple, *_ignored: Any) -> None:
    """A fused kernel's fallback (bind with functools.partial): the eager loop on its own arguments, which are
    laid out differently from the kernel's."""
    fn(*args)


def scalars(ref: torch.Tensor, *values: float) -> torch.Tensor:
    """Hyperparameters as one float64 tensor on `ref`'s device: graph inputs, not compile-time constants."""
    return torch.tensor(values, dtype=torch.float64, device=ref.device)


# --- tanh -------------------------------------------------------------------------------------------------------
#: Odd numerator and even denominator coefficients (in x^2) of the [13/6] rational approximation of tanh on
#: [-TANH_CLAMP, TANH_CLAMP] used for single precision by the Eigen library and XLA; beyond the clamp tanh is 1 to
#: float32 precision.
_TANH_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
           -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
TANH_CLAMP = 7.90531110763549805
#: bound on |rational_tanh(x) - tanh(x)|; measured on x in [-20, 20]: 2.6e-7 in float64, 3.6e-7 in float32
#: (tests/test_fused_tanh.py measures it on a dense grid and checks this bound).
RATIONAL_TANH_MAX_ABS_ERROR = 4e-7


def rational_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh by a rational function: ~10 multiply-adds and one division, vectorisable, instead of libm's tanh
    (which alone made a fused Lion-IB step ~4x AdamW's on CPU). Its error, at most RATIONAL_TANH_MAX_ABS_ERROR
    absolute (about 3 float32 ulps near 1), is at float32 rounding level; Lion-IB uses it only for float32 and
    lower-precision parameters, never for float64 (see docs/optimizers.md, "Lion-IB")."""
    x = x.clamp(-TANH_CLAMP, TANH_CLAMP)
    x2 = x * x
    p = _TANH_P[6]
    for c in reversed(_TANH_P[:6]):
        p = p * x2 + c
    q = _TANH_Q[3]
    for c in reversed(_TANH_Q[:3]):
        q = q * x2 + c
    return x * p / q


# --- kernels (compiled by `run`; each takes the same arguments as its plugin's eager loop) ------------------------
def lion_ib_snr_step(params, grads, ms, vs, h: torch.Tensor, inv_bcs: torch.Tensor, fast_tanh: bool) -> None:
    """Lion-IB, mode snr. h = (lr, wd, beta1, beta2, gain, eps); inv_bcs[i] = 1 / (1 - beta2^t) of tensor i (a
    multiplication per element instead of a division: vector division dominates this kernel's cost)."""
    lr, wd, beta1, beta2, gain, eps = h[0], h[1], h[2], h[3], h[4], h[5]
    for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs, strict=True)):
        c = m * beta1 + g * (1 - beta1)
        m_new = m * beta2 + g * (1 - beta2)
        v_new = v * beta2 + g * g * (1 - beta2)
        m_hat = m_new * inv_bcs[i]
        var = (v_new * inv_bcs[i] - m_hat * m_hat).clamp_min(0) + eps
        kappa = (m_hat.abs() / var * gain).clamp_max(KAPPA_MAX)
        u = rational_tanh(kappa * c) if fast_tanh else torch.tanh(kappa * c)
        p.copy_(p * (1 - lr * wd) - lr * u)
        m.copy_(m_new)
        v.copy_(v_new)


def _lion_ib_temperature_kappas(grads, ms, h: torch.Tensor) -> torch.Tensor:
    """Stage 1 (pure): each tensor's kappa = gain / (tau * RMS(c)), c the interpolated momentum."""
    beta1, gain, tau = h[2], h[4], h[5]
    out = []
    for g, m in zip(grads, ms, strict=True):
        c = m * beta1 + g * (1 - beta1)
        rms = (c * c).mean().sqrt().clamp_min(1e-30)
        out.append((gain / (tau * rms)).clamp_max(KAPPA_MAX))
    return torch.stack(out)


def _lion_ib_temperature_apply(params, grads, ms, h: torch.Tensor, kappas: torch.Tensor, fast_tanh: bool) -> None:
    """Stage 2, the only one that writes."""
    lr, wd, beta1, beta2 = h[0], h[1], h[2], h[3]
    for i, (p, g, m) in enumerate(zip(params, grads, ms, strict=True)):
        c = m * beta1 + g * (1 - beta1)
        x = kappas[i] * c
        u = rational_tanh(x) if fast_tanh else torch.tanh(x)
        p.copy_(p * (1 - lr * wd) - lr * u)
        m.copy_(m * beta2 + g * (1 - beta2))


@staged
def lion_ib_temperature_step(params, grads, ms, h: torch.Tensor, fast_tanh: bool) -> None:
    """Lion-IB, mode temperature. h = (lr, wd, beta1, beta2, gain, tau). Two stages, like FAdam's, so the
    per-tensor kappa (a square root and a division) is computed once, not inside the element loop."""
    kappas = compiled(_lion_ib_temperature_kappas)(grads, ms, h)
    compiled(_lion_ib_temperature_apply)(params, grads, ms, h, kappas, fast_tanh)


def diffgrad_step(params, grads, ms, vs, prevs, h: torch.Tensor, coefs: torch.Tensor, paper_eps: bool,
                  decoupled: bool) -> None:
    """diffGrad. h = (lr, beta1, beta2, eps, wd); coefs[i] = (bias correction 1, bias correction 2) of tensor i.
    The friction sigmoid(d) = 1 / (1 + exp(-d)) shares the step's one division: xi*m/D = m / ((1 + exp(-d)) D)."""
    lr, beta1, beta2, eps, wd = h[0], h[1], h[2], h[3], h[4]
    for i, (p, g, m, v, prev) in enumerate(zip(params, grads, ms, vs, prevs, strict=True)):
        bc1, bc2 = coefs[i, 0], coefs[i, 1]
        p0 = p * (1 - lr * wd) if decoupled else p
        g = g if decoupled else g + wd * p
        m_new = m * beta1 + g * (1 - beta1)
        v_new = v * beta2 + g * g * (1 - beta2)
        friction_inv = 1 + torch.exp(-(prev - g).abs())
        if paper_eps:
            upd = m_new / ((v_new.sqrt() * bc2.rsqrt() + eps) * friction_inv) * (lr / bc1)
        else:
            upd = m_new / ((v_new.sqrt() + eps) * friction_inv) * (lr * bc2.sqrt() / bc1)
        p.copy_(p0 - upd)
        m.copy_(m_new)
        v.copy_(v_new)
        prev.copy_(g)


def _fadam_denominator(f_new: torch.Tensor, eps_t: torch.Tensor, power: float) -> torch.Tensor:
    return (f_new.sqrt() + eps_t) if power == 0.5 else (f_new.pow(power) + eps_t.pow(2 * power))


def _fadam_epsilons(grads, h: torch.Tensor) -> torch.Tensor:
    """Stage 1 (pure): the adaptive epsilon of each tensor, min(eps, eps2 * RMS(g)) (eps where RMS(g) = 0)."""
    eps, eps2 = h[2], h[3]
    out = []
    for g in grads:
        rms_g = (g * g).mean().sqrt()
        scaled = eps2 * rms_g
        out.append(torch.where((rms_g > 0) & (scaled < eps), scaled, eps))
    return torch.stack(out)


def _fadam_clip_scales(params, grads, fs, h: torch.Tensor, beta2_ts: torch.Tensor, eps_ts: torch.Tensor,
                       power: float) -> torch.Tensor:
    """Stage 2 (pure): per tensor, 1 / max(1, RMS(x) / clip) for the natural gradient x = g / D and for the
    preconditioned weights x = theta / D, as float64 rows (gbar scale, w scale)."""
    clip = h[4]
    out = []
    for i, (p, g, f) in enumerate(zip(params, grads, fs, strict=True)):
        b2 = beta2_ts[i]
        inv = 1 / _fadam_denominator(f * b2 + g * g * (1 - b2), eps_ts[i], power)
        gbar, w = g * inv, p * inv
        out.append(torch.stack([1 / ((gbar * gbar).mean().sqrt() / clip).clamp_min(1),
                                1 / ((w * w).mean().sqrt() / clip).clamp_min(1)]))
    return torch.stack(out)


def _fadam_apply(params, grads, ms, fs, h: torch.Tensor, beta2_ts: torch.Tensor, eps_ts: torch.Tensor,
                 scales: torch.Tensor, power: float) -> None:
    """Stage 3, the only one that writes: the Fisher EMA, momentum and parameter updates, one pass per tensor."""
    lr, beta1, wd = h[0], h[1], h[5]
    for i, (p, g, m, f) in enumerate(zip(params, grads, ms, fs, strict=True)):
        b2 = beta2_ts[i]
        f_new = f * b2 + g * g * (1 - b2)
        inv = 1 / _fadam_denominator(f_new, eps_ts[i], power)
        m_new = m * beta1 + (g * inv * scales[i, 0]) * (1 - beta1)
        p.copy_(p - lr * (m_new + wd * (p * inv * scales[i, 1])))
        m.copy_(m_new)
        f.copy_(f_new)


@staged
def fadam_step(params, grads, ms, fs, h: torch.Tensor, beta2_ts: torch.Tensor, power: float) -> None:
    """FAdam. h = (lr, beta1, eps, eps2, clip, wd); beta2_ts[i] = the bias-corrected beta2 of tensor i.

    Three compiled stages rather than one graph: in one graph inductor recomputes each per-tensor scalar (the
    adaptive epsilon, the two clip factors: a square root and divisions) inside the element loop that uses it,
    since the compiler cannot hoist a float it loads from a buffer the loop also writes floats to. Passed
    between stages as float64 tensors, the scalars are loop invariants. The denominator is recomputed in
    stage 3 rather than stored (no scratch buffer); every scalar divides once, and the clips multiply."""
    eps_ts = compiled(_fadam_epsilons)(grads, h)
    scales = compiled(_fadam_clip_scales)(params, grads, fs, h, beta2_ts, eps_ts, power)
    compiled(_fadam_apply)(params, grads, ms, fs, h, beta2_ts, eps_ts, scales, power)
