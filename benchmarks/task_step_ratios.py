"""Each optimizer's `step()` as a ratio to the speed reference on a task's own parameter shapes: the number a
trial stores in `opt_step_ratio` (optbench/speed.py, interleaved pairs, threads pinned), without running the
trials. For small models, where an optimizer's cost is per-operation dispatch rather than arithmetic, this is
the ratio that matters (benchmarks/step_ratios.py times 10M parameters instead).

    OMP_NUM_THREADS=1 python -m benchmarks.task_step_ratios [-t cnn-digits ...] [-o lion-ib ...] \
        [--impl loop,flat,auto] [--pairs 31]

`--impl` builds each optimizer once per listed implementation (for optimizers whose build accepts `impl`, such
as lion-ib; others are built once with their defaults).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from optbench.registry import get_registry
from optbench.settings import speed_reference
from optbench.speed import optimizer_step_ratio, pinned_threads

DEFAULT_TASKS = ("cnn-digits", "mnist1d-mlp", "mnist1d-cnn", "char-lm")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-t", "--task", action="append", help=f"task (repeatable; default {', '.join(DEFAULT_TASKS)})")
    ap.add_argument("-o", "--optimizer", action="append", help="optimizer (repeatable; default lion-ib)")
    ap.add_argument("--impl", default="", help="comma-separated implementations to compare, e.g. loop,flat,auto")
    ap.add_argument("--pairs", type=int, default=31, help="interleaved pairs per ratio")
    args = ap.parse_args(argv)
    registry = get_registry()
    ref_spec = registry.optimizer(speed_reference()).spec
    impls = [i for i in args.impl.split(",") if i] or [None]
    print(f"reference {ref_spec.name}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for task_name in args.task or DEFAULT_TASKS:
        params = registry.task(task_name).spec.build("smoke", 0, "cpu").parameters()
        shape = f"{len(params)} tensors, {sum(p.numel() for p in params):,} params"
        for name in args.optimizer or ["lion-ib"]:
            spec = registry.optimizer(name).spec
            for impl in impls:
                extra = {} if impl is None else {"impl": impl}
                def build(ps: list, extra: dict = extra, spec: Any = spec) -> Any:
                    return spec.build(ps, **spec.defaults, **extra)

                with pinned_threads(1):
                    r = optimizer_step_ratio(build, lambda ps: ref_spec.build(ps, **ref_spec.defaults), params,
                                             pairs=args.pairs)
                label = name if impl is None else f"{name}[impl={impl}]"
                print(f"{task_name} ({shape}) {label}: {r.median:.2f}x ({r.lo:.2f}-{r.hi:.2f}), "
                      f"{r.ms:.2f} ms vs {r.ref_ms:.2f} ms")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
