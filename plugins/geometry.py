"""Geometry metrics: sharpness, Hessian trace, entropy gap, Hessian spectrum (see docs/metrics.md).

All four read the Hessian of the task's fixed curvature batch with the model in eval mode (PyHessian's
convention). Where the task knows its exact spectrum (quadratics) every metric uses it and spends no
Hessian-vector product. Elsewhere they share work through `ctx.cache`: one Lanczos run gives sharpness, the
top of the spectrum and the basis for the Hutch++ trace; one deflated SLQ run gives both entropy gaps. The
first metric that needs a shared result pays its products (measure.py charges them to that metric).

Conventions for an indefinite Hessian (a saddle, or any network away from a minimum): sharpness is the
largest *algebraic* eigenvalue; the entropy gap normalises |λ| (p_i = |λ_i| / Σ|λ_j|). Randomness comes from
a generator seeded by the trial step, so the same state at the same step gives the same numbers.

The product budget is one `Budget` (`BUDGET`): the one every dense check and every board row was made at.
`benchmarks/bench_metrics.py` measures its cost; `benchmarks/geometry_frontier.py` measures cheaper budgets
against dense eigvalsh (none under 158 products kept the errors docs/metrics.md states).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from optbench import ColumnSpec, MetricContext, MetricSpec, MetricWhen, hookimpl
from optbench import curvature as cv


@dataclass(frozen=True)
class Budget:
    """Hessian-vector products the shared estimators may spend: lanczos_steps + trace_probes +
    slq_probes × slq_steps in all (182 at the defaults)."""

    #: Lanczos steps for sharpness / the spectrum (at least 12). Run to the end (no early stop): the same basis
    #: then serves Hutch++ for the trace and deflates the top of the spectrum for SLQ, which is where their
    #: accuracy comes from
    lanczos_steps: int = 30
    #: Hutchinson probes on the complement of the Lanczos basis (Hutch++), one batched product each
    trace_probes: int = 32
    #: SLQ probes × Lanczos steps per probe for the entropy gaps (the probes advance together, batched)
    slq_probes: int = 4
    slq_steps: int = 30

    def __post_init__(self) -> None:
        if self.lanczos_steps < 12 or min(self.trace_probes, self.slq_probes, self.slq_steps) < 0:
            raise ValueError(f"{self} spends fewer than 12 Lanczos steps or a negative count")

    @property
    def products(self) -> int:
        return self.lanczos_steps + self.trace_probes + self.slq_probes * self.slq_steps


BUDGET = Budget()


@contextmanager
def budget(spend: Budget) -> Iterator[None]:
    """Use another budget inside the block (benchmarks comparing budgets against dense spectra)."""
    global BUDGET
    saved, BUDGET = BUDGET, spend
    try:
        yield
    finally:
        BUDGET = saved


#: Ritz pairs with residual ≤ this × |λmax| are deflated (counted exactly) before SLQ
DEFLATE_RTOL = 1e-2
#: eigenvalues stored by hessian-spectrum, and grid points of its smoothed density
SPECTRUM_TOP_K = 10
DENSITY_POINTS = 64
SEED_OFFSET = 0x6E0  # keeps metric probes off any seed a task might use for the same step


def _generator(ctx: MetricContext, salt: int) -> torch.Generator:
    return cv.make_generator(SEED_OFFSET + 1_000_003 * salt + int(ctx.step), ctx.device)


def _n(ctx: MetricContext) -> int:
    return sum(p.numel() for p in ctx.params)


def _matvec(ctx: MetricContext) -> cv.Matvec:
    if "geometry.matvec" not in ctx.cache:
        ctx.cache["geometry.matvec"] = cv.flat_operator(ctx.hvp, ctx.params)
    return ctx.cache["geometry.matvec"]


def _matvecs(ctx: MetricContext) -> cv.BatchMatvec:
    if "geometry.matvecs" not in ctx.cache:
        ctx.cache["geometry.matvecs"] = cv.flat_batch_operator(ctx.hvp, ctx.params)
    return ctx.cache["geometry.matvecs"]


def _device(ctx: MetricContext) -> torch.device:
    return ctx.params[0].device


def _eigen(ctx: MetricContext, want: int = 1) -> cv.Eigen:
    """The shared Lanczos run, from a Gaussian start: its first product also tells which Hessian rows are
    exactly zero (cached as the probe mask). Rerun longer (and replaced) only if a metric wants more pairs."""
    steps = max(BUDGET.lanczos_steps, 2 * want + 10)
    have: tuple[int, cv.Eigen] | None = ctx.cache.get("geometry.eigen")
    if have is None or have[0] < steps:
        matvec = _matvec(ctx)
        first: list[torch.Tensor] = []

        def recording(v: torch.Tensor) -> torch.Tensor:
            out = matvec(v)
            if not first:
                first.append(out)
            return out

        gen = _generator(ctx, 1)
        start = torch.randn(_n(ctx), generator=gen, device=gen.device, dtype=cv.WORK_DTYPE).to(_device(ctx))
        run = cv.lanczos(recording, start, steps)
        theta, s, resid = run.ritz()
        order = torch.argsort(theta, descending=True)
        eig = cv.Eigen(theta[order], resid[order], run, s[:, order])
        ctx.cache["geometry.eigen"] = (steps, eig)
        ctx.cache.setdefault("geometry.mask", cv.nonzero_rows(first[0]))
        return eig
    return have[1]


def _mask(ctx: MetricContext) -> torch.Tensor:
    _eigen(ctx)
    return ctx.cache["geometry.mask"]


def _quadrature(ctx: MetricContext) -> cv.Quadrature:
    if "geometry.slq" not in ctx.cache:
        eig = _eigen(ctx)
        idx = eig.converged(DEFLATE_RTOL)
        ctx.cache["geometry.slq"] = cv.slq(
            _matvec(ctx), _n(ctx), _generator(ctx, 2), _device(ctx), probes=BUDGET.slq_probes,
            steps=BUDGET.slq_steps,
            deflate=eig.run.ritz_vectors(eig.s[:, idx]), deflated_values=eig.values[idx], mask=_mask(ctx),
            matvecs=_matvecs(ctx),
        )
    return ctx.cache["geometry.slq"]


def _exact(ctx: MetricContext) -> torch.Tensor | None:
    return None if ctx.exact_eigenvalues is None else ctx.exact_eigenvalues.detach().to("cpu", torch.float64)


def sharpness(ctx: MetricContext) -> dict[str, float]:
    """λmax, the largest algebraic Hessian eigenvalue, and the Lanczos residual ‖Hx − θx‖ of its Ritz pair
    (`sharpness_se`: a bound on |λ − θ| for the eigenvalue nearest θ, not a standard error; 0 when exact)."""
    lam = _exact(ctx)
    if lam is not None:
        return {"sharpness": float(lam.max()), "sharpness_se": 0.0}
    eig = _eigen(ctx)
    return {"sharpness": eig.lambda_max, "sharpness_se": float(eig.residuals[0])}


def hessian_trace(ctx: MetricContext) -> dict[str, float]:
    """tr H by Hutch++ on the shared Lanczos basis, with its standard error over the probes."""
    lam = _exact(ctx)
    if lam is not None:
        return {"hessian_trace": float(lam.sum()), "hessian_trace_se": 0.0}
    est = cv.hutchpp_trace(_matvecs(ctx), _eigen(ctx).run, _generator(ctx, 3), BUDGET.trace_probes,
                           mask=_mask(ctx))
    return {"hessian_trace": est.value, "hessian_trace_se": est.se}


def entropy_gap(ctx: MetricContext) -> dict[str, float]:
    """log n − H_α of the |λ|-normalised spectrum, α = 1 and α = 2, in [0, log n], with standard errors."""
    lam = _exact(ctx)
    if lam is not None:
        g1, g2 = cv.renyi_gaps_from_eigenvalues(lam)
        return {"entropy_gap": g1, "entropy_gap_se": 0.0, "entropy_gap_alpha2": g2, "entropy_gap_alpha2_se": 0.0}
    est = cv.renyi_gaps_with_se(_n(ctx), _quadrature(ctx).abs_sums())
    return {"entropy_gap": est.gap1, "entropy_gap_se": est.se1,
            "entropy_gap_alpha2": est.gap2, "entropy_gap_alpha2_se": est.se2}


def hessian_spectrum(ctx: MetricContext) -> dict[str, float]:
    """Top-k eigenvalues and a smoothed spectral density, stored as curve points with split "hessian".

    Points: ("hessian", "eig_<i>", λ_i) for the i-th largest eigenvalue, ("hessian", "density_x_<j>", x_j) and
    ("hessian", "density_<j>", ρ(x_j)) on a uniform grid over [λmin, λmax] (Gaussian kernel, σ = 1% of the
    range). Exact on tasks that know their spectrum; otherwise converged Ritz values and SLQ quadrature.
    """
    lam = _exact(ctx)
    if lam is not None:
        top = torch.sort(lam, descending=True).values[:SPECTRUM_TOP_K]
        quad = cv.Quadrature([], [], lam, 0)
        lo, hi = float(lam.min()), float(lam.max())
    else:
        eig = _eigen(ctx, want=SPECTRUM_TOP_K)
        idx = eig.converged(rtol=1e-3)
        top = torch.sort(eig.values[idx], descending=True).values[:SPECTRUM_TOP_K]
        quad = _quadrature(ctx)
        nodes = torch.cat([*quad.nodes, quad.exact, eig.values])
        lo, hi = float(nodes.min()), float(nodes.max())
    span = max(hi - lo, 1e-12 * max(abs(hi), 1.0))
    grid = torch.linspace(lo - 0.05 * span, hi + 0.05 * span, DENSITY_POINTS, dtype=torch.float64)
    dens = quad.density(grid, sigma=0.01 * span)
    for i, v in enumerate(top.tolist(), start=1):
        ctx.extra_points.append(("hessian", f"eig_{i}", float(v)))
    for j, (x, d) in enumerate(zip(grid.tolist(), dens.tolist(), strict=True)):
        ctx.extra_points.append(("hessian", f"density_x_{j:02d}", float(x)))
        ctx.extra_points.append(("hessian", f"density_{j:02d}", float(d)))
    return {"hessian_lambda_min": lo, "hessian_top_converged": float(top.numel())}


@hookimpl
def optbench_register_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("sharpness", sharpness, MetricWhen.EVAL,
                   "Largest algebraic Hessian eigenvalue on the curvature batch (Lanczos; exact on quadratics)",
                   columns=(ColumnSpec("sharpness", better="", short="λmax",
                                       description="sharpness (top Hessian eigenvalue)"),
                            ColumnSpec("sharpness_se", short="±λmax",
                                       description="Lanczos residual of the sharpness Ritz pair (error bound)"))),
        MetricSpec("hessian-trace", hessian_trace, MetricWhen.EVAL,
                   "Hessian trace on the curvature batch (Hutch++ on the sharpness Lanczos basis, 32 probes)",
                   columns=(ColumnSpec("hessian_trace", short="tr H", description="Hessian trace"),
                            ColumnSpec("hessian_trace_se", short="±tr H",
                                       description="standard error of the Hessian trace over its probes"))),
        MetricSpec("entropy-gap", entropy_gap, MetricWhen.EVAL,
                   "log n − H_α of the |λ|-normalised Hessian spectrum, α = 1 and 2 (deflated SLQ in λ², 4 × 30)",
                   columns=(ColumnSpec("entropy_gap", short="H gap",
                                       description="entropy gap of the Hessian spectrum"),
                            ColumnSpec("entropy_gap_se", short="±H gap",
                                       description="standard error of the entropy gap over its SLQ probes"),
                            ColumnSpec("entropy_gap_alpha2", short="H2 gap",
                                       description="entropy gap of the Hessian spectrum, Rényi α = 2"),
                            ColumnSpec("entropy_gap_alpha2_se", short="±H2 gap",
                                       description="standard error of the α = 2 entropy gap over its probes"))),
        MetricSpec("hessian-spectrum", hessian_spectrum, MetricWhen.FINAL,
                   "Top-10 Hessian eigenvalues and an SLQ density (curves, split 'hessian')", default=False),
    ]

