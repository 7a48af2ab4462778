"""Cost and accuracy of the geometry metrics (not a timed test; numbers are for the report).

Cost: each metric run alone (fresh context, so it pays for everything it needs) and the default set together,
as wall time / one training step (loss + backward + AdamW step, median of 10) of the same model in one process.
Accuracy: HVPs each estimator needs to be within 1% of a reference (a long Lanczos run for λmax; a 60-step
Hutch++ / 80-step deflated SLQ with many probes for trace and entropy gap), worst case over 3 seeds.

Run: OMP_NUM_THREADS=2 python benchmarks/bench_metrics.py [--tasks mlp cnn-digits ...] [--accuracy]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from optbench import TaskInstance
from optbench import curvature as cv
from optbench.measure import compute_metrics, make_hvp
from optbench.registry import load_registry

METRICS = ["sharpness", "hessian-trace", "entropy-gap", "hessian-spectrum"]


class MLPBench(TaskInstance):
    """A ~177k-parameter MLP classifier on synthetic data (64 → 384 → 384 → 10)."""

    def __init__(self, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(64, 384), nn.ReLU(), nn.Linear(384, 384), nn.ReLU(), nn.Linear(384, 10))
        self.x = torch.randn(2048, 64, generator=gen)
        self.y = torch.randint(0, 10, (2048,), generator=gen)
        self.batch_size = 128
        self.dataset = "synthetic-mlp"

    def batches(self):
        i = 0
        while True:
            j = (i * self.batch_size) % 2048
            yield self.x[j:j + self.batch_size], self.y[j:j + self.batch_size]
            i += 1

    def loss(self, batch):
        return nn.functional.cross_entropy(self.model(batch[0]), batch[1])

    def curvature_loss(self):
        return nn.functional.cross_entropy(self.model(self.x[:256]), self.y[:256])


def build(name: str, registry) -> TaskInstance:
    if name == "mlp":
        return MLPBench()
    spec = registry.task(name).spec
    options = dict(spec.suite_options.get("default", {}))
    return spec.build("smoke", 0, torch.device("cpu"), None, **options)


def step_ms(task: TaskInstance, steps: int = 10) -> float:
    params = task.parameters()
    opt = torch.optim.AdamW(params, 1e-3)
    stream = task.batches()
    task.train()
    times = []
    for _ in range(steps + 2):
        batch = next(stream)
        t0 = time.perf_counter()
        opt.zero_grad()
        task.loss(batch).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[2:])


def metric_cost(task: TaskInstance, regs) -> tuple[float, float]:
    t0 = time.perf_counter()
    res = compute_metrics(regs, task, task.parameters(), 1, torch.device("cpu"))
    if res.errors:
        raise RuntimeError(res.errors)
    return 1e3 * (time.perf_counter() - t0), res.hvp_calls


def accuracy(task: TaskInstance) -> list[tuple[str, str, int, float]]:
    """(quantity, budget, HVPs, worst relative error over 3 seeds) against long-run references."""
    params = task.parameters()
    task.eval()
    n = sum(p.numel() for p in params)
    hvp = make_hvp(task, params, [0])
    mv = cv.flat_operator(hvp, params)
    ref_top = cv.top_eigen(mv, n, cv.make_generator(99), "cpu", max_steps=80, tol=None)
    lam_ref = ref_top.lambda_max
    g = cv.make_generator(98)
    tr_ref, _ = cv.hutchpp_traces(mv, cv.lanczos(mv, cv.rademacher(n, g), 60), g, probes=100)
    idx = ref_top.converged()
    q = cv.slq(mv, n, g, "cpu", probes=40, steps=40, deflate=ref_top.run.ritz_vectors(ref_top.s[:, idx]),
               deflated_values=ref_top.values[idx])
    gaps_ref = cv.entropy_gaps_from_sums(n, q.trace(torch.abs), q.trace(lambda t: cv.xlogx(t.abs())),
                                         q.trace(lambda t: t * t))
    rows = []
    for steps in (5, 10, 15, 20, 30):
        errs = [abs(cv.top_eigen(mv, n, cv.make_generator(s), "cpu", max_steps=steps, tol=None).lambda_max - lam_ref)
                / abs(lam_ref) for s in range(3)]
        rows.append(("sharpness", f"lanczos {steps}", steps, max(errs)))
    for probes in (4, 8, 16, 32):
        errs = []
        for s in range(3):
            gen = cv.make_generator(s)
            run = cv.lanczos(mv, cv.rademacher(n, gen), 30)
            errs.append(abs(cv.hutchpp_traces(mv, run, gen, probes)[0] - tr_ref) / abs(tr_ref))
        rows.append(("hessian_trace", f"hutch++ 30 + {probes}", 30 + probes, max(errs)))
    for probes, steps in ((4, 16), (6, 16), (8, 20), (16, 20)):
        e1, e2 = [], []
        for s in range(3):
            gen = cv.make_generator(s)
            top = cv.top_eigen(mv, n, gen, "cpu", max_steps=30, tol=None)
            i = top.converged()
            qq = cv.slq(mv, n, gen, "cpu", probes=probes, steps=steps, deflate=top.run.ritz_vectors(top.s[:, i]),
                        deflated_values=top.values[i])
            a, b = cv.entropy_gaps_from_sums(n, qq.trace(torch.abs), qq.trace(lambda t: cv.xlogx(t.abs())),
                                             qq.trace(lambda t: t * t))
            e1.append(abs(a - gaps_ref[0]) / abs(gaps_ref[0]))
            e2.append(abs(b - gaps_ref[1]) / abs(gaps_ref[1]))
        rows.append(("entropy_gap", f"slq {probes}x{steps}", 30 + probes * steps, max(e1)))
        rows.append(("entropy_gap_alpha2", f"slq {probes}x{steps}", 30 + probes * steps, max(e2)))
    task.train()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="+", default=["mlp", "cnn-digits", "resnet-cifar10", "vit-tiny-cifar10"])
    ap.add_argument("--accuracy", action="store_true", help="also measure HVPs needed for 1%% accuracy (mlp only)")
    args = ap.parse_args()
    registry = load_registry()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu")
    print("| task | params | step ms | metric | HVPs | ms | × step |")
    print("|---|---|---|---|---|---|---|")
    for name in args.tasks:
        task = build(name, registry)
        n = sum(p.numel() for p in task.parameters())
        base = step_ms(task)
        one = {}
        t0 = time.perf_counter()
        hv = [0]
        hvp = make_hvp(task, task.parameters(), hv)
        task.eval()
        vs = [torch.randn_like(p) for p in task.parameters()]
        for _ in range(3):
            hvp(vs)
        task.train()
        one["1 HVP"] = (1e3 * (time.perf_counter() - t0) / 3, 1)  # includes the one-off gradient graph
        for m in METRICS:
            one[m] = metric_cost(task, [registry.metric(m)])
        one["default set"] = metric_cost(task, [registry.metric(m) for m in METRICS[:3]])
        for m, (ms, h) in one.items():
            print(f"| {name} | {n:,} | {base:.1f} | {m} | {h:.0f} | {ms:.0f} | {ms / base:.1f} |")
        if args.accuracy and name == "mlp":
            print("\n| quantity | budget | HVPs | worst rel. error (3 seeds) |\n|---|---|---|---|")
            for q, budget, h, err in accuracy(task):
                print(f"| {q} | {budget} | {h} | {100 * err:.2f}% |")
            print()


if __name__ == "__main__":
    main()
