"""Lion (Chen et al. 2023) and Lion-IB, Lion with the tanh information-bottleneck update of Tan & Huang.

Lion-IB, as optbench reads the paper (its Algorithm 1 could not be read; docs/optimizers.md, "Lion-IB", says
what is and is not from the paper): each coordinate's update direction is a sign observed through Gaussian
noise, whose Bayes-optimal estimate is tanh(mu * x / sigma^2). With Lion's interpolation
c = beta1*m + (1-beta1)*g the update is

    u = tanh(gain * kappa * c),   theta <- theta*(1 - lr*wd) - lr*u

and kappa has two modes:
  * ``snr`` (default): kappa = |m_hat| / (sigma_hat^2 + eps) with bias-corrected EMAs m_hat, v_hat of the
    gradient and its square (beta2) and sigma_hat^2 = max(v_hat - m_hat^2, 0), updated with the current
    gradient before use. kappa*c is roughly the signal-to-noise ratio: confident coordinates move like
    Lion, noisy ones move less. One more state tensor than Lion.
  * ``temperature``: kappa = 1 / (tau * RMS(c)) per tensor, no extra state.
As gain -> infinity both modes equal Lion wherever kappa > 0 (tanh saturates to sign); gain = inf is that limit
(0 where m_hat = 0, never NaN). tests/fidelity/test_lion_fidelity.py checks Lion against lion-pytorch and
Lion-IB against a transcription of this rule and against Lion at gain = inf, on a real network.

Step implementations. Lion (``impl``: auto/loop/foreach/compiled): on CPU "auto" uses the torch.compile'd
per-tensor kernel at >= 1M parameters (falling back to the loop, with a warning, if compiling fails) and the
plain loop below that (no compile warm-up in small trials); CUDA uses foreach. Lion-IB (``impl``:
auto/loop/flat/fused): "fused" is plugins/fused.py's one-pass kernel, chosen by "auto" on CUDA and on CPU from
1M parameters; below that "auto" takes "flat" (`lion_ib_flat`: the loop's operations on flat moment buffers,
since small models pay per-operation dispatch, not arithmetic), the loop where flat does not apply. With float32
(or lower) parameters the fused kernel evaluates tanh by a rational approximation (``fast_tanh``, default on;
error <= 4e-7, float32 rounding level); float64 parameters always get the exact tanh. Ratios to fused AdamW:
``python -m benchmarks.step_ratios --only 'lion*'`` (docs/optimizers.md lists the measured ones).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from optbench import OptimizerSpec, hookimpl

from . import fused
from .flatstate import FlatState, FlatStateMixin, uniform, wanted

_KAPPA_MAX = fused.KAPPA_MAX


IMPLS = ("auto", "loop", "foreach", "compiled")
#: below this many elements a step is too cheap for torch.compile's one-off warm-up to pay back
COMPILE_MIN_NUMEL = 1_000_000
_compile_failed: dict[Callable, str] = {}  # kernel -> why torch.compile did not work for it here


def choose_impl(params: list[torch.Tensor], impl: str = "auto", kernel: Callable | None = None) -> str:
    """The step implementation to use: `impl` itself unless "auto", which picks by device and size.

    Measured (see the module docstring): on CPU a torch.compile'd per-tensor step is fastest at 10M
    parameters, the plain per-tensor loop next and torch._foreach_* slowest; small models use the loop so
    that no compile warm-up enters time-to-target. CUDA uses foreach (launch count dominates; not measured
    here, no GPU was available)."""
    if impl != "auto":
        return impl
    if not params:
        return "loop"
    if all(p.is_cuda for p in params):
        return "foreach"
    if kernel not in _compile_failed and sum(p.numel() for p in params) >= COMPILE_MIN_NUMEL:
        return "compiled"
    return "loop"


def _lion_loop(params, grads, ms, lr: float, wd: float, beta1: float, beta2: float) -> None:
    for p, g, m in zip(params, grads, ms, strict=True):
        if wd:
            p.mul_(1 - lr * wd)
        c = torch.lerp(g, m, beta1)
        p.add_(c.sign_(), alpha=-lr)
        m.lerp_(g, 1 - beta2)


def _lion_foreach(params, grads, ms, lr: float, wd: float, beta1: float, beta2: float) -> None:
    if wd:
        torch._foreach_mul_(params, 1 - lr * wd)
    cs = torch._foreach_lerp(grads, ms, beta1)
    torch._foreach_sign_(cs)
    torch._foreach_add_(params, cs, alpha=-lr)
    torch._foreach_lerp_(ms, grads, 1 - beta2)


_compiled: dict[Callable, Callable] = {}


def _run_compiled(kernel: Callable, fallback: Callable, *args: Any) -> None:
    """Run torch.compile(kernel); if compiling fails (no C++ compiler, unsupported platform) say so once and
    use `fallback` from then on. Hyperparameters are compile-time constants: changing lr recompiles."""
    if kernel not in _compile_failed:
        try:
            if kernel not in _compiled:
                _compiled[kernel] = torch.compile(kernel, fullgraph=True)
            _compiled[kernel](*args)
            return
        except Exception as exc:  # noqa: BLE001 - any compile failure means: use the eager kernel
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _compile_failed[kernel] = why
            warnings.warn(f"torch.compile of {kernel.__name__} failed ({why}); using the eager per-tensor loop",
                          RuntimeWarning, stacklevel=3)
    fallback(*args)


class Lion(torch.optim.Optimizer):
    """Lion: sign of an interpolated momentum, decoupled weight decay."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        foreach: bool | None = None,
        impl: str = "auto",
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if foreach is not None and impl == "auto":  # torch-style switch: foreach=True/False picks the kernel
            impl = "foreach" if foreach else "loop"
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, foreach=foreach,
                                      impl=impl))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            grads = [p.grad for p in params]
            ms = []
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms.append(state["exp_avg"])
            impl = choose_impl(params, group.get("impl", "auto"), _lion_loop)
            args = (params, grads, ms, lr, wd, beta1, beta2)
            if impl == "foreach":
                _lion_foreach(*args)
            elif impl == "compiled":
                _run_compiled(_lion_loop, _lion_loop, *args)
            else:
                _lion_loop(*args)
        return loss


def lion_ib_loop(params, grads, ms, vs, bcs, lr: float, wd: float, beta1: float, beta2: float, gain: float,
                 tau: float, eps: float, snr: bool) -> None:
    """The reference Lion-IB step, one tensor at a time in eager torch; `vs`/`bcs` (second moments, bias
    corrections 1 - beta2^t) only in snr mode. gain = inf is the limit gain -> inf: sign(c) where m_hat != 0 and
    0 where m_hat = 0 (gain is capped at KAPPA_MAX so that 0 * inf never makes a NaN)."""
    gain = min(gain, _KAPPA_MAX)
    for i, (p, g, m) in enumerate(zip(params, grads, ms, strict=True)):
        c = torch.lerp(g, m, beta1)
        m.lerp_(g, 1 - beta2)
        if snr:
            v, bc = vs[i], bcs[i]
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            m_hat = m / bc
            var = (v / bc).addcmul_(m_hat, m_hat, value=-1).clamp_(min=0).add_(eps)
            kappa = m_hat.abs_().div_(var).mul_(gain).clamp_(max=_KAPPA_MAX)
        else:
            rms = c.pow(2).mean().sqrt()
            kappa = (gain / (tau * rms.clamp(min=1e-30))).clamp(max=_KAPPA_MAX)
        if wd:
            p.mul_(1 - lr * wd)
        p.add_(c.mul_(kappa).tanh_(), alpha=-lr)


def flat_ready(params: list[torch.Tensor], bcs: list[float], snr: bool) -> bool:
    """Whether `lion_ib_flat` applies: one dtype and device, and in snr mode one bias correction for all (equal
    step counts)."""
    return uniform(params) and (not snr or len(set(bcs)) == 1)


def lion_ib_flat(flat: FlatState, params, grads, bc: float | None, lr: float, wd: float, beta1: float,
                 beta2: float, gain: float, tau: float, eps: float) -> None:
    """`lion_ib_loop` for many small tensors: the loop's element-wise operations run once on the group's flat
    moment buffers, the gradients copied in and the update applied with one multi-tensor (foreach) operation
    each, so ~18 dispatches per step whatever the number of tensors, against ~14 per tensor in the loop (on
    small models the loop's cost is dispatch, not arithmetic). Same operations in the same order as the loop,
    and libm's exact tanh. In snr mode (`bc` given) it can differ from the loop only in the last bit, where an
    element falls in a vector loop's scalar tail in one layout and not in the other; in temperature mode
    (`bc` None) each tensor's RMS(c) is a multi-tensor norm, summed in another order than the loop's mean."""
    gain = min(gain, _KAPPA_MAX)
    g, m = flat.g, flat.bufs["exp_avg"]
    torch._foreach_copy_(flat.g_views, grads)
    c = torch.lerp(g, m, beta1)
    m.lerp_(g, 1 - beta2)
    if bc is not None:
        v = flat.bufs["exp_avg_sq"]
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = m / bc
        var = (v / bc).addcmul_(m_hat, m_hat, value=-1).clamp_(min=0).add_(eps)
        c.mul_(m_hat.abs_().div_(var).mul_(gain).clamp_(max=_KAPPA_MAX))
    else:
        kappa = (gain / (tau * flat.rms(c).clamp(min=1e-30))).clamp(max=_KAPPA_MAX)
        torch._foreach_mul_(flat.split(c), kappa.tolist())
    torch.tanh(c, out=flat.out)
    if wd:
        torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_add_(params, flat.out_views, alpha=-lr)


class LionIB(FlatStateMixin, torch.optim.Optimizer):
    """Lion with a tanh (MMSE sign-estimate) update instead of sign; see the module docstring."""

    MODES = ("snr", "temperature")
    IMPLS = ("auto", "loop", "flat", "fused", "compiled")  # "compiled": the earlier name of "fused"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        mode: str = "snr",
        gain: float = 1.0,
        tau: float = 1.0,
        eps: float = 1e-12,
        foreach: bool | None = None,
        impl: str = "auto",
        fast_tanh: bool = True,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if lr <= 0 or gain <= 0 or tau <= 0:
            raise ValueError("lr, gain and tau must be positive")
        if impl not in self.IMPLS:
            raise ValueError(f"impl must be one of {self.IMPLS}, got {impl!r}")
        super().__init__(
            params,
            dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, mode=mode, gain=gain, tau=tau, eps=eps,
                 foreach=foreach, impl=impl, fast_tanh=fast_tanh),
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            snr = group["mode"] == "snr"
            grads, ms, vs, bcs = [], [], [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if snr:
                        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                if snr:
                    vs.append(state["exp_avg_sq"])
                    bcs.append(1 - beta2 ** state["step"])
            lr, wd, gain = group["lr"], group["weight_decay"], min(group["gain"], _KAPPA_MAX)
            asked = group.get("impl", "auto")
            impl = "fused" if asked == "compiled" else fused.choose(params, asked, fused.lion_ib_snr_step)
            loop_args = (params, grads, ms, vs, bcs, lr, wd, beta1, beta2, gain, group["tau"], group["eps"], snr)
            if impl != "fused":
                # "auto" below the fused kernel's threshold takes the flat step where it applies; "flat" asked
                # for where it does not (mixed dtypes, unequal step counts) runs the loop, which is the same step
                if wanted(asked, impl) and flat_ready(params, bcs, snr):
                    keys = ("exp_avg", "exp_avg_sq") if snr else ("exp_avg",)
                    flat = self.flat_state(gi, params, keys)
                    lion_ib_flat(flat, params, grads, bcs[0] if snr else None, lr, wd, beta1, beta2, gain,
                                 group["tau"], group["eps"])
                else:
                    lion_ib_loop(*loop_args)
                continue
            fallback = functools.partial(fused.call_with, lion_ib_loop, loop_args)
            # rational tanh only where it is within float rounding: never for float64 parameters
            fast = bool(group.get("fast_tanh", True)) and params[0].dtype != torch.float64
            if snr:
                h = fused.scalars(params[0], lr, wd, beta1, beta2, gain, group["eps"])
                inv_bcs = fused.scalars(params[0], *(1 / b for b in bcs))
                fused.run(fused.lion_ib_snr_step, fallback, params, grads, ms, vs, h, inv_bcs, fast)
            else:
                h = fused.scalars(params[0], lr, wd, beta1, beta2, gain, group["tau"])
                fused.run(fused.lion_ib_temperature_step, fallback, params, grads, ms, h, fast)
        return loss


def _build_lion(params: Iterable[Any], **hp: Any) -> Lion:
    return Lion(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), weight_decay=hp["weight_decay"])


def _build_lion_ib(params: Iterable[Any], **hp: Any) -> LionIB:
    return LionIB(
        params,
        lr=hp["lr"],
        betas=(hp["beta1"], hp["beta2"]),
        weight_decay=hp["weight_decay"],
        mode=hp["mode"],
        gain=hp["gain"],
        tau=hp["tau"],
        eps=hp["eps"],
        impl=hp.get("impl", "auto"),  # implementation choices, not hyperparameters: accepted, not in defaults
        fast_tanh=hp.get("fast_tanh", True),
    )


LION_PAPER = "Chen et al. 2023, Symbolic Discovery of Optimization Algorithms, arXiv:2302.06675"
IB_PAPER = "Tan & Huang, Information-Theoretic Perspectives on Optimizers, arXiv:2502.20763"


@hookimpl
def optbench_register_optimizers() -> list[OptimizerSpec]:
    lion_defaults = {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
    return [
        OptimizerSpec(
            name="lion",
            build=_build_lion,
            defaults=lion_defaults,
            search_space={"lr": ("log-uniform", 1e-5, 1e-2), "weight_decay": ("log-uniform", 1e-3, 10.0),
                          "beta2": ("choice", [0.98, 0.99])},
            paper=LION_PAPER,
            summary="Lion: sign of interpolated momentum, decoupled weight decay",
        ),
        OptimizerSpec(
            name="lion-ib",
            build=_build_lion_ib,
            defaults={**lion_defaults, "mode": "snr", "gain": 1.0, "tau": 1.0, "eps": 1e-12},
            search_space={"lr": ("log-uniform", 1e-5, 1e-2), "weight_decay": ("log-uniform", 1e-3, 10.0),
                          "gain": ("log-uniform", 0.1, 100.0)},
            paper=IB_PAPER,
            summary="Lion-IB: tanh(kappa*c) update; mode=snr (kappa=|m|/var, default) or temperature "
            "(kappa=1/(tau*RMS(c))); equals Lion as gain->inf",
        ),
    ]
