"""How few Hessian-vector products the geometry set can spend and still meet its stated errors (a report).

docs/metrics.md states the default set's errors (λmax 1e-5, trace 5%, both entropy gaps 3%, relative to dense
eigvalsh on trained networks) and its cost, about 182 products. This report answers the question that cost
raises: would a smaller budget do? For each budget (Lanczos steps, trace probes, SLQ probes × steps) it runs
the geometry plugin's own estimators on the dense Hessian of the 2,738-parameter digits CNN at several trained
states (the same states and network `tests/test_geometry_dense.py` checks), over several probe seeds. It
prints the worst relative error of each quantity over states and seeds (`--per-state`: per state), the
product count, and what those products cost in training steps of cnn-digits and resnet-cifar10 smoke (one
product against one training step of each, interleaved, medians: `bench_metrics.hvp_in_steps`).

Products here multiply the dense matrix in float32, as the network path's products run in the parameters'
dtype; everything else is the plugin's code. The dense matrix makes the sweep fast; the network path and the
dense path agree to rounding (`tests/test_geometry_dense.py` checks the network path at the defaults).

A second table gives a floor that no tuning of this estimator family can beat, for the trace alone: the
fewest products a Hutch++-type estimate needs for a standard error of 2.5% of tr H (so that 5% is two
standard errors), even if the top-k eigenvectors were given for one product each: min over k of k + t, with t
the Rademacher probes the exact variance 2(‖A‖²_F − Σ A²ᵢᵢ) of the deflated remainder A asks for.

Run: OMP_NUM_THREADS=1 python -m benchmarks.geometry_frontier [--states 30 150 600 2000] [--seeds 6]
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch

from benchmarks.bench_metrics import dense_truth, digits_dense_hessian, hvp_in_steps
from optbench import MetricContext
from optbench.registry import load_registry

QUANTITIES = ("sharpness", "hessian_trace", "entropy_gap", "entropy_gap_alpha2")
#: the stated relative errors (docs/metrics.md), in the order of QUANTITIES
BOUNDS = (1e-5, 0.05, 0.03, 0.03)
#: (Lanczos steps, trace probes, SLQ probes, SLQ steps): the default first, then cheaper ones down to about
#: 50 training steps' worth of products
BUDGETS = ((30, 32, 4, 30), (30, 32, 3, 40), (30, 32, 3, 32), (20, 32, 4, 30), (30, 16, 4, 30), (30, 32, 4, 24),
           (30, 32, 2, 30), (30, 16, 2, 20), (20, 8, 2, 16), (15, 8, 2, 12), (20, 0, 1, 20), (12, 4, 1, 8))


def dense_context(hessian: torch.Tensor, step: int) -> MetricContext:
    """A metric context whose product is the dense matrix (float32, like the parameters)."""
    h = hessian.float()

    def hvp(vs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [h @ vs[0]]

    hvp.batched = lambda vs: [vs[0] @ h]  # type: ignore[attr-defined]
    point = torch.zeros(h.shape[0], dtype=torch.float32)
    return MetricContext(task=None, params=[point], step=step, device=torch.device("cpu"), hvp=hvp)  # type: ignore[arg-type]


def worst_errors(hessian: torch.Tensor, want: dict[str, float], seeds: int, registry) -> dict[str, float]:
    """Worst relative error of each quantity over `seeds` probe seeds (the metric step seeds the probes)."""
    metrics = [registry.metric(m) for m in ("sharpness", "hessian-trace", "entropy-gap")]
    worst = dict.fromkeys(QUANTITIES, 0.0)
    for seed in range(seeds):
        ctx = dense_context(hessian, 1000 + seed)
        got: dict[str, float] = {}
        for m in metrics:
            got.update(m.spec.compute(ctx))
        for k, w in want.items():
            worst[k] = max(worst[k], abs(got[k] - w) / abs(w))
    return worst


def hutchpp_floor(hessian: torch.Tensor, rel_se: float = 0.025, max_k: int = 300,
                  decomposition: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[int, int, int]:
    """(products, k, t): the fewest k + t for a Hutch++ trace with the exact top-|λ| k eigenvectors and t
    Rademacher probes on the remainder A, whose variance per probe is 2(‖A‖²_F − Σ A²ᵢᵢ). `decomposition`:
    the matrix's `numpy.linalg.eigh`, when the caller already has it."""
    dense = hessian.double().numpy()
    lam, vec = np.linalg.eigh(dense) if decomposition is None else decomposition
    order = np.argsort(-np.abs(lam))
    lam, vec = lam[order], vec[:, order]
    target = (rel_se * abs(lam.sum())) ** 2
    diag = np.diag(dense).copy()
    frob2 = float((lam**2).sum())
    noise = 1e-12 * frob2  # what rounding leaves of an exactly deflated remainder
    best = (math.inf, 0, 0)
    for k in range(min(max_k, lam.size) + 1):
        if k:
            diag -= lam[k - 1] * vec[:, k - 1] ** 2
            frob2 -= lam[k - 1] ** 2
        var = 2 * (frob2 - float((diag**2).sum()))
        var = 0.0 if var <= noise else var
        t = math.ceil(var / target)
        if k + t < best[0]:
            best = (k + t, k, t)
    return best  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--states", type=int, nargs="+", default=[30, 150, 600, 2000])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats when timing one product")
    ap.add_argument("--per-state", action="store_true", help="also every budget's errors at every state")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from optbench.plugins import geometry

    registry = load_registry()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), cpu, load average {load:.1f}")
    per_hvp = {name: hvp_in_steps(name, registry, args.repeats) for name in ("cnn-digits", "resnet-cifar10")}
    print("one product in training steps: " + ", ".join(f"{k} {v:.2f}" for k, v in per_hvp.items()))
    hessians = {st: digits_dense_hessian(st)[3] for st in args.states}
    # one eigendecomposition per state serves the truth and the trace's floor
    eigen = {st: np.linalg.eigh(h.double().numpy()) for st, h in hessians.items()}
    truths = {st: dense_truth(lam) for st, (lam, _) in eigen.items()}

    print("\n| Adam steps | tr H | Σ|λ| | λmax | fewest products, Hutch++ trace at 2.5% SE (k + t) |")
    print("|---|---|---|---|---|")
    for st, h in hessians.items():
        total, k, t = hutchpp_floor(h, decomposition=eigen[st])
        lam = eigen[st][0]
        print(f"| {st} | {lam.sum():.4g} | {np.abs(lam).sum():.4g} | {lam[-1]:.4g} | {total} ({k} + {t}) |")

    print("\n| Lanczos | trace probes | SLQ | HVPs | training steps (cnn-digits / resnet smoke) | "
          "worst λmax | worst tr H | worst gap α=1 | worst gap α=2 | states outside the stated errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    detail = []
    for lanczos_steps, trace_probes, slq_probes, slq_steps in BUDGETS:
        spend = geometry.Budget(lanczos_steps, trace_probes, slq_probes, slq_steps)
        cost = " / ".join(f"{spend.products * v:.0f}" for v in per_hvp.values())
        worst = dict.fromkeys(QUANTITIES, 0.0)
        failing = []
        with geometry.budget(spend):
            for st, h in hessians.items():
                errs = worst_errors(h, truths[st], args.seeds, registry)
                detail.append((spend, st, errs))
                worst = {q: max(worst[q], errs[q]) for q in QUANTITIES}
                if any(errs[q] > b for q, b in zip(QUANTITIES, BOUNDS, strict=True)):
                    failing.append(str(st))
        cells = " | ".join(f"{worst[q]:.1e}" for q in QUANTITIES)
        name = f"| {lanczos_steps} | {trace_probes} | {slq_probes} × {slq_steps} | {spend.products} | {cost}"
        print(f"{name} | {cells} | {', '.join(failing) or 'none'} |", flush=True)
    if args.per_state:
        print("\n| HVPs | Adam steps | λmax | tr H | gap α=1 | gap α=2 |")
        print("|---|---|---|---|---|---|")
        for spend, st, errs in detail:
            print(f"| {spend.products} | {st} | " + " | ".join(f"{errs[q]:.1e}" for q in QUANTITIES) + " |")

if __name__ == "__main__":
    main()
