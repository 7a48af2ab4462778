"""Cost and accuracy of the default geometry metrics (a report, not a timed test).

Cost (default): for each task, the default geometry set (sharpness, hessian-trace, entropy-gap) on the task's
curvature batch, as wall time ÷ one training step (loss + backward + AdamW step) of the same model, measured
interleaved in one process (step, metrics, step, ... ; medians), threads pinned. Per metric: HVPs and seconds
from the row's `metric_costs`. Also one Hessian-vector product alone, in training steps: the set's cost is
about (number of HVPs) × that, which says what dominates. `--curvature-size N` takes the metrics on the first
N images of the curvature batch instead (what a smaller metric batch would cost; not the task's definition).
A task whose real data is absent (CIFAR-10) runs on its synthetic data, as in the diagnostics suite.

Products (--products): one HVP per direction, in training steps, by the engine's double backward (one
direction, and k directions vectorised with `is_grads_batched`) and by forward-over-reverse
(`torch.func.jvp` of `torch.func.grad`, vmapped over k directions), interleaved with training steps: whether
batching directions or another AD mode would make the products cheaper.

Arithmetic (--arithmetic): the default Lanczos (30 steps) and SLQ (4 × 30) recurrences with a diagonal
operator in place of the Hessian, in training steps: what the set costs beyond its products.

Accuracy (--dense): the defaults against dense `eigvalsh` on a 2,738-parameter CNN trained on scikit-learn's
digits for several numbers of Adam steps, over several probe seeds (the metric step): worst and mean
relative error of each quantity, and the reported standard errors.

Whether a smaller product budget would keep the stated errors: benchmarks/geometry_frontier.py.

Run: OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py [--tasks cnn-digits resnet-cifar10] [--dense]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from optbench.errors import OptbenchError
from optbench.measure import compute_metrics, make_hvp
from optbench.registry import load_registry

DEFAULT_SET = ["sharpness", "hessian-trace", "entropy-gap"]


def build(name: str, registry):
    spec = registry.task(name).spec
    try:
        return spec.build("smoke", 0, torch.device("cpu"), None)
    except OptbenchError:  # real data absent: the synthetic set the diagnostics suite uses
        return spec.build("smoke", 0, torch.device("cpu"), None, **dict(spec.suite_options.get("diagnostics", {})))


def step_timer(task, params) -> Callable[[], float]:
    """One timed AdamW training step on the task's next batch: the unit every cost here is expressed in."""
    opt = torch.optim.AdamW(params, 1e-3)
    stream = task.batches()

    def step() -> float:
        batch = next(stream)
        t0 = time.perf_counter()
        opt.zero_grad()
        task.loss(batch).backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def time_one_hvp(task, params) -> float:
    """Seconds of one Hessian-vector product on the curvature batch, the first-order graph built untimed."""
    task.eval()
    hvp = make_hvp(task, params, [0])
    hvp([torch.randn_like(p) for p in params])  # builds the first-order graph (once per metric point)
    v = [torch.randn_like(p) for p in params]
    t0 = time.perf_counter()
    hvp(v)
    elapsed = time.perf_counter() - t0
    task.train()
    return elapsed


def hvp_in_steps(name: str, registry, repeats: int) -> float:
    """One product ÷ one training step of the task's model (medians, interleaved): what a product costs."""
    task = build(name, registry)
    params = task.parameters()
    step = step_timer(task, params)
    task.train()
    for _ in range(3):
        step()
    steps, products = [], []
    for _ in range(repeats):
        steps += [step() for _ in range(3)]
        products.append(time_one_hvp(task, params))
    return statistics.median(products) / statistics.median(steps)


def cost(name: str, registry, repeats: int, curvature_size: int | None) -> None:
    task = build(name, registry)
    if curvature_size is not None:
        x, y = task.data.curvature_batch
        task.data.curvature_batch = (x[:curvature_size], y[:curvature_size])
    params = task.parameters()
    n = sum(p.numel() for p in params)
    step = step_timer(task, params)
    regs = [registry.metric(m) for m in DEFAULT_SET]

    task.train()
    for _ in range(3):
        step()

    steps, totals, per, single = [], [], {m: [] for m in DEFAULT_SET}, []
    hvps = {}
    for r in range(repeats):
        steps += [step() for _ in range(5)]
        single.append(time_one_hvp(task, params))
        t0 = time.perf_counter()
        res = compute_metrics(regs, task, params, r, torch.device("cpu"))
        totals.append(time.perf_counter() - t0)
        if res.errors:
            raise RuntimeError(res.errors)
        for m, c in res.costs.items():
            per[m].append(c["seconds"])
            hvps[m] = c["hvp_calls"]
        steps += [step() for _ in range(5)]
    s = statistics.median(steps)
    sizes = f"{len(task.data.curvature_batch[1])} / {task.batch_size}"
    print(f"| {name} | {n:,} | {sizes} | {1e3 * s:.1f} | {statistics.median(single) / s:.2f} | default set | "
          f"{sum(hvps.values())} | {statistics.median(totals) / s:.0f} |")
    for m in DEFAULT_SET:
        print(f"| {name} | | | | | {m} | {hvps[m]} | {statistics.median(per[m]) / s:.0f} |")


def products(name: str, registry, repeats: int, widths: tuple[int, ...] = (1, 4, 8)) -> None:
    from torch.func import functional_call, grad, jvp, vmap

    task = build(name, registry)
    params = task.parameters()
    names = [k for k, p in task.model.named_parameters() if p.requires_grad]
    train_step = step_timer(task, params)

    class CurvatureLoss(torch.nn.Module):  # functional_call swaps the parameters task.curvature_loss() reads
        def __init__(self) -> None:
            super().__init__()
            self.model = task.model

        def forward(self) -> torch.Tensor:
            return task.curvature_loss()

    wrapper = CurvatureLoss()

    def step() -> float:
        task.train()
        return train_step()

    def directions(k: int) -> list[torch.Tensor]:
        return [torch.randn(k, *p.shape) for p in params]

    def double_backward(k: int) -> float:
        task.eval()
        hvp = make_hvp(task, params, [0])
        hvp([torch.randn_like(p) for p in params])  # first-order graph built outside the timing
        vs = directions(k)
        t0 = time.perf_counter()
        hvp([v[0] for v in vs]) if k == 1 else hvp.batched(vs)
        return (time.perf_counter() - t0) / k

    def forward_over_reverse(k: int) -> float:
        task.eval()
        point = {f"model.{m}": p.detach() for m, p in zip(names, params, strict=True)}
        g = grad(lambda ps: functional_call(wrapper, ps, ()))

        def one(v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return jvp(g, (point,), (v,))[1]

        vs = {f"model.{m}": v for m, v in zip(names, directions(k), strict=True)}
        t0 = time.perf_counter()
        one({m: v[0] for m, v in vs.items()}) if k == 1 else vmap(one)(vs)
        return (time.perf_counter() - t0) / k

    for _ in range(3):
        step()
    kinds = [(f"double backward, {k} direction(s)", double_backward, k) for k in widths]
    kinds += [(f"forward-over-reverse, {k} direction(s)", forward_over_reverse, k) for k in widths]
    times: dict[str, list[float]] = {label: [] for label, _, _ in kinds}
    steps = []
    for _ in range(repeats):
        for label, fn, k in kinds:
            steps.append(step())
            times[label].append(fn(k))
    s = statistics.median(steps)
    for label, _, _ in kinds:
        print(f"| {name} | {label} | {statistics.median(times[label]) / s:.2f} |")


def arithmetic(name: str, registry, repeats: int) -> None:
    from optbench import curvature as cv

    task = build(name, registry)
    params = task.parameters()
    n = sum(p.numel() for p in params)
    step = step_timer(task, params)
    task.train()
    diag = torch.rand(n, dtype=cv.WORK_DTYPE)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def top() -> None:
        cv.lanczos(lambda v: diag * v, torch.randn(n, dtype=cv.WORK_DTYPE), 30)

    def block() -> None:
        cv.lanczos_block(lambda b: b * diag, torch.randn(4, n, dtype=cv.WORK_DTYPE), 30)

    step()
    steps, tops, blocks = [], [], []
    for _ in range(repeats):
        steps.append(step())
        tops.append(timed(top))
        steps.append(step())
        blocks.append(timed(block))
    s = statistics.median(steps)
    print(f"| {name} | {n:,} | {statistics.median(tops) / s:.1f} | {statistics.median(blocks) / s:.1f} |")


def _curvature_models():
    """tests/curvature_models.py: the digits CNN and the dense Hessian that tests/test_geometry_dense.py uses."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import curvature_models

    return curvature_models


def digits_dense_hessian(steps: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(model, curvature x, y, dense Hessian) of the 2,738-parameter digits CNN after `steps` Adam steps."""
    cm = _curvature_models()
    model, x, y = cm.trained_digits_cnn(steps)
    h = cm.dense_hessian(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters()), chunk=1024)
    return model, x, y, h


def dense_truth(eigenvalues: np.ndarray) -> dict[str, float]:
    """The default set's quantities from an ascending dense spectrum (gaps by tests/curvature_models.py)."""
    g1, g2 = _curvature_models().dense_gaps(eigenvalues)
    return {"sharpness": float(eigenvalues[-1]), "hessian_trace": float(eigenvalues.sum()),
            "entropy_gap": g1, "entropy_gap_alpha2": g2}


def dense(states: list[int], seeds: int) -> None:
    task_shell = _curvature_models().DigitsCNNTask
    registry = load_registry()
    regs = [registry.metric(m) for m in DEFAULT_SET]
    print("| Adam steps | n | quantity | dense | worst rel. error | mean rel. error | mean reported SE (rel.) |")
    print("|---|---|---|---|---|---|---|")
    for st in states:
        model, x, y, h = digits_dense_hessian(st)
        params = list(model.parameters())
        n = sum(p.numel() for p in params)
        want = dense_truth(np.linalg.eigvalsh(h.double().numpy()))
        got = {k: [] for k in want}
        se = {k: [] for k in want}
        for seed in range(seeds):
            res = compute_metrics(regs, task_shell(model, x, y), params, seed, torch.device("cpu"))
            for k in want:
                got[k].append(res.values[k])
                se[k].append(res.values[f"{k}_se"])
        for k, w in want.items():
            err = np.abs(np.array(got[k]) - w) / abs(w)
            print(f"| {st} | {n:,} | {k} | {w:.5g} | {err.max():.2e} | {err.mean():.2e} | "
                  f"{np.mean(se[k]) / abs(w):.2e} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="+", default=["cnn-digits", "resnet-cifar10"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dense", action="store_true", help="accuracy against dense eigvalsh instead of cost")
    ap.add_argument("--states", type=int, nargs="+", default=[30, 150, 600, 2000])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--products", action="store_true",
                    help="one HVP per direction by double backward and forward-over-reverse, batched or not")
    ap.add_argument("--arithmetic", action="store_true",
                    help="the Lanczos and SLQ recurrences without products, in training steps")
    ap.add_argument("--curvature-size", type=int, default=None,
                    help="cost only: metrics on the first N images of the curvature batch")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), cpu, load average {load:.1f}")
    if args.dense:
        dense(args.states, args.seeds)
        return
    registry = load_registry()
    probes = ((args.arithmetic, arithmetic, ("task", "params", "Lanczos 30 steps, in training steps",
                                             "SLQ 4 × 30, in training steps")),
              (args.products, products, ("task", "product", "per direction, in training steps")))
    for asked, probe, header in probes:
        if asked:
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for name in args.tasks:
                probe(name, registry, args.repeats)
            return
    print("| task | params | curvature / training batch | step ms | one HVP in steps | metric | HVPs | "
          "cost in training steps |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.tasks:
        cost(name, registry, args.repeats, args.curvature_size)


if __name__ == "__main__":
    main()
