"""Interleaved step-time ratio of arTuRO and MicroAdam to fused AdamW at 10M parameters in 50 tensors (the shapes
of benchmarks/stepbench.py), one thread: A, B, A, B, ... in one process, so machine load hits both alike.

    python -m benchmarks.zoo_step_ratio [--rounds 15] [--only arturo,microadam]

Prints, per optimizer, the median of the per-round ratios ours / AdamW(fused) with the interquartile range.
Absolute milliseconds are shown for orientation only; on a loaded machine only the ratios mean anything.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks import stepbench


def _timed_step(opt: torch.optim.Optimizer) -> float:
    t0 = time.perf_counter()
    opt.step()
    return time.perf_counter() - t0


def _build(name: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if name == "arturo":
        from optbench.plugins.arturo import DEFAULTS, Arturo

        return Arturo(params, **DEFAULTS)
    if name == "microadam":
        from optbench.plugins.microadam import MicroAdam

        return MicroAdam(params)
    raise ValueError(f"unknown optimizer {name!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--only", default="arturo,microadam")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.only.split(","):
        ours_p = stepbench.make_params(seed=0)
        ref_p = stepbench.make_params(seed=0)
        gen = torch.Generator().manual_seed(1)
        for a, b in zip(ours_p, ref_p, strict=True):
            a.grad = torch.randn(a.shape, generator=gen) * 1e-2
            b.grad = a.grad.clone()
        ours = _build(name, ours_p)
        ref = torch.optim.AdamW(ref_p, lr=1e-3, fused=True)
        for _ in range(args.warmup):
            ours.step()
            ref.step()
        ratios, t_ours, t_ref = [], [], []
        for _ in range(args.rounds):
            a = _timed_step(ours)
            b = _timed_step(ref)
            t_ours.append(a)
            t_ref.append(b)
            ratios.append(a / b)
        q = statistics.quantiles(ratios, n=4)
        print(f"{name:10s} ratio to AdamW(fused) median {statistics.median(ratios):6.2f}  IQR [{q[0]:.2f}, {q[2]:.2f}]"
              f"  (ours {statistics.median(t_ours) * 1e3:.1f} ms, adamw {statistics.median(t_ref) * 1e3:.1f} ms,"
              f" {args.rounds} interleaved rounds, 1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
