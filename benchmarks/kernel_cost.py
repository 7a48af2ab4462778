"""Where a fused kernel's CPU time goes: each compiled kernel on ONE contiguous 10M-element float32 tensor (so no
per-tensor or list overhead enters), timed interleaved with torch.optim.AdamW(fused=True) on a tensor of the
same size, next to two probes that move exactly AdamW's bytes (read p, g, m, v; write p, m, v): `mem` with only
multiply-adds, `div` with one vector division per element. If `mem` is well under 1x and a kernel is far
above it, the kernel is compute-bound, not memory-bound. A `+fma` suffix compiles with floating-point
contraction (a*b+c as one fused multiply-add); without it contraction is off.

    python -m benchmarks.kernel_cost mem,div,lion,lion+fma,lion-t+fma,diffgrad,diffgrad+fma,fadam+fma [rounds]

`lion` is Lion-IB's snr mode, `lion-t` its temperature mode. FAdam and Lion-IB's temperature mode are staged
kernels (plugins/fused.py, `staged`): they compile their own stages with contraction on, so only `+fma` applies.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from optbench.plugins import fused

N = 10_000_000


def _tensors(k: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(N, generator=gen) * (0.02 if i == 0 else 1.0) for i in range(k)]


def _mem(ps, gs, ms, vs, h) -> None:
    for p, g, m, v in zip(ps, gs, ms, vs, strict=True):
        m_new = m * h[0] + g * h[1]
        v_new = v * h[2] + g * g * h[3]
        p.copy_(p * h[4] - m_new * v_new * h[5])
        m.copy_(m_new)
        v.copy_(v_new)


def _div(ps, gs, ms, vs, h) -> None:
    for p, g, m, v in zip(ps, gs, ms, vs, strict=True):
        m_new = m * h[0] + g * h[1]
        v_new = v * h[2] + g * g * h[3]
        p.copy_(p * h[4] - m_new / (v_new + h[5]))
        m.copy_(m_new)
        v.copy_(v_new)


def _f32(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


def _f64(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


#: kernel, and its arguments after the tensor lists (scalars as the plugins pass them: float64 tensors)
KERNELS: dict[str, tuple[Callable, int, Callable[[], tuple]]] = {
    "mem": (_mem, 4, lambda: (_f32(0.9, 0.1, 0.99, 0.01, 0.999, 1e-3),)),
    "div": (_div, 4, lambda: (_f32(0.9, 0.1, 0.99, 0.01, 0.999, 1e-3),)),
    "lion": (fused.lion_ib_snr_step, 4, lambda: (_f64(1e-4, 0.1, 0.9, 0.99, 1.0, 1e-8), _f64(1.5), True)),
    "lion-t": (fused.lion_ib_temperature_step, 3, lambda: (_f64(1e-4, 0.1, 0.9, 0.99, 1.0, 1.0), True)),
    "diffgrad": (fused.diffgrad_step, 5, lambda: (_f64(1e-3, 0.9, 0.999, 1e-8, 0.0), _f64(0.5, 0.01).view(1, 2),
                                                  False, False)),
    "fadam": (fused.fadam_step, 4, lambda: (_f64(1e-3, 0.9, 1e-8, 1e-8, 1.0, 0.1), _f64(0.99), 0.5)),
}


def _runner(name: str) -> Callable[[], None]:
    base, _, flag = name.partition("+")
    kernel, lists, extra = KERNELS[base]
    contract = "fast" if flag == "fma" else "off"
    tensors = [[t] for t in _tensors(lists)]
    args = extra()
    if getattr(kernel, "staged", False):  # compiles its own stages, with fused.COMPILE_OPTIONS (contraction on)
        if flag != "fma":
            raise SystemExit(f"{base} is a staged kernel, compiled with fused.COMPILE_OPTIONS: ask for {base}+fma")
        return lambda: kernel(*tensors, *args)
    compiled = torch.compile(kernel, fullgraph=True, dynamic=False,
                             options={"cpp.enable_floating_point_contract_flag": contract})
    return lambda: compiled(*tensors, *args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    names = argv[0].split(",") if argv else list(KERNELS)
    rounds = int(argv[1]) if len(argv) > 1 else 12
    ref_p = torch.randn(N).requires_grad_(True)
    ref_p.grad = torch.randn(N)
    ref = torch.optim.AdamW([ref_p], fused=True)
    steps = {"adamw": ref.step}
    for name in names:
        t0 = time.perf_counter()
        steps[name] = _runner(name)
        for _ in range(3):
            steps[name]()
        print(f"{name}: compiled and warmed up in {time.perf_counter() - t0:.0f} s", flush=True)
    for _ in range(3):
        ref.step()
    order = list(steps)
    times: dict[str, list[float]] = {n: [] for n in order}
    for r in range(rounds):
        for n in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            steps[n]()
            times[n].append(time.perf_counter() - t0)
    for n in order:
        ratios = [a / b for a, b in zip(times[n], times["adamw"], strict=True)]
        print(f"{n}: {statistics.median(ratios):.2f}x fused AdamW (median of {rounds} interleaved rounds)")
    print("load average (1/5/15 min):", " ".join(f"{x:.1f}" for x in os.getloadavg()), f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
