"""Curvature estimates from Hessian-vector products: Lanczos eigenvalues, Hutchinson traces, SLQ spectral sums.

Why our own and not curvlinops: curvlinops' operators need a (model, loss function, data) triple, while a
task only exposes `curvature_loss()` (quadratics have no model at all), and its eigenvalue routines go
through scipy's ARPACK, which copies every product to the host. Here every product stays on the device;
the host sees only the small tridiagonal matrices, once every `check_every` Lanczos steps.

Conventions (optbench's documented definitions, see docs/metrics.md):
- sharpness is the largest *algebraic* eigenvalue (a saddle's negative curvature does not count);
- spectral sums for the entropy gap use |λ|, so an indefinite Hessian has a well-defined gap;
- all randomness comes from a caller-supplied `torch.Generator`, so a metric at a given step is reproducible.

Spectral sums use deflated stochastic Lanczos quadrature: the converged top Ritz pairs (by |λ|) are counted
exactly and SLQ estimates only the remainder, where the spectrum is flat enough for a few probes to do.
Every f used here has f(0) = 0, which is what makes the deflated estimate unbiased on the complement.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]
#: a matvec on a block of row vectors: (p, n) -> (p, n)
BatchMatvec = Callable[[torch.Tensor], torch.Tensor]

#: work dtype for Lanczos vectors: products run in the parameters' dtype, orthogonalisation in float64
WORK_DTYPE = torch.float64


def flat_operator(hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]], params: Sequence[torch.Tensor]) -> Matvec:
    """Turn `hvp(list of tensors shaped like params)` into a matvec on flat float64 vectors (on the device)."""
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    dtype = params[0].dtype

    def matvec(v: torch.Tensor) -> torch.Tensor:
        parts = [c.view(s).to(dtype) for c, s in zip(torch.split(v, sizes), shapes, strict=True)]
        return torch.cat([o.reshape(-1) for o in hvp(parts)]).to(WORK_DTYPE)

    return matvec


def flat_batch_operator(hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]],
                        params: Sequence[torch.Tensor], chunk: int = 8) -> BatchMatvec:
    """Rows of a (p, n) float64 block times the Hessian, `chunk` rows per batched product.

    Uses `hvp.batched` (one double backward over a batch of directions) where the HVP function offers it,
    else one product per row: same numbers, only the cost differs.
    """
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    dtype = params[0].dtype
    single = flat_operator(hvp, params)
    batched = getattr(hvp, "batched", None)

    def matvecs(block: torch.Tensor) -> torch.Tensor:
        if batched is None:
            return torch.stack([single(row) for row in block])
        outs = []
        for part in torch.split(block, chunk):
            k = part.shape[0]
            vs = [c.reshape(k, *s).to(dtype) for c, s in zip(torch.split(part, sizes, dim=1), shapes, strict=True)]
            outs.append(torch.cat([o.reshape(k, -1) for o in batched(vs)], 1).to(WORK_DTYPE))
        return torch.cat(outs)

    return matvecs


def dense_operator(matrix: torch.Tensor) -> Matvec:
    """A matvec for an explicit symmetric matrix (tests, and the curvlinops comparison)."""
    m = matrix.to(WORK_DTYPE)
    return lambda v: m @ v


def rademacher(n: int, gen: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """A ±1 vector drawn from `gen` (on the generator's device, then moved once)."""
    bits = torch.randint(0, 2, (n,), generator=gen, device=gen.device)
    return (bits.to(WORK_DTYPE) * 2 - 1).to(device)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from e.g. the trial step, on the device (so probes never cross the bus)."""
    device = torch.device(device)
    gen = torch.Generator(device=device) if device.type == "cuda" else torch.Generator()
    return gen.manual_seed(int(seed))


@dataclass
class Lanczos:
    """A Lanczos run: tridiagonal T (alphas, betas on the host) and the orthonormal basis (rows, on device)."""

    alphas: torch.Tensor  # (m,) float64, cpu
    betas: torch.Tensor  # (m,) float64, cpu; betas[j] couples step j and j+1 (betas[m-1] is the residual norm)
    basis: torch.Tensor | None  # (m, n) on the device, or None when not kept
    matvecs: int

    @property
    def steps(self) -> int:
        return int(self.alphas.numel())

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ritz values (ascending), eigenvectors of T (columns) and each pair's residual norm ‖Mx − θx‖."""
        m = self.steps
        t = torch.diag(self.alphas)
        if m > 1:
            off = self.betas[: m - 1]
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        theta, s = torch.linalg.eigh(t)
        resid = (self.betas[m - 1] * s[m - 1, :]).abs()
        return theta, s, resid

    def ritz_vectors(self, columns: torch.Tensor) -> torch.Tensor:
        """Ritz vectors (rows, on the device) for the given columns of T's eigenvector matrix."""
        if self.basis is None:
            raise ValueError("this Lanczos run did not keep its basis")
        return columns.T.to(self.basis.device, self.basis.dtype) @ self.basis


def lanczos(
    matvec: Matvec,
    v0: torch.Tensor,
    max_steps: int,
    *,
    tol: float | None = None,
    want: int = 1,
    check_every: int = 5,
    keep_basis: bool = True,
) -> Lanczos:
    """Lanczos with full re-orthogonalisation (classical Gram-Schmidt, twice) from `v0`.

    With `tol`, stops once the `want` largest algebraic Ritz values have residual ≤ tol·max|θ| (checked
    every `check_every` steps: the only host synchronisations). Stops early on an invariant subspace.
    """
    n = v0.numel()
    steps = min(max_steps, n)
    device = v0.device
    q_all = torch.zeros(steps + 1, n, dtype=WORK_DTYPE, device=device)
    alphas = torch.zeros(steps, dtype=WORK_DTYPE, device=device)
    betas = torch.zeros(steps, dtype=WORK_DTYPE, device=device)
    q_all[0] = v0.to(WORK_DTYPE) / torch.linalg.vector_norm(v0.to(WORK_DTYPE))
    tiny = torch.finfo(WORK_DTYPE).tiny
    done = steps
    for j in range(steps):
        w = matvec(q_all[j])
        alphas[j] = torch.dot(q_all[j], w)
        basis = q_all[: j + 1]
        for _ in range(2):  # "twice is enough" (Kahan/Parlett): keeps the basis orthogonal to working precision
            w = w - basis.T @ (basis @ w)
        beta = torch.linalg.vector_norm(w)
        betas[j] = beta
        q_all[j + 1] = w / beta.clamp_min(tiny)
        last = j + 1 == steps
        if last or (j + 1) % check_every == 0:
            a, b = alphas[: j + 1].cpu(), betas[: j + 1].cpu()
            scale = float(a.abs().max().clamp_min(tiny))
            breakdown = torch.nonzero(b <= 1e-10 * scale)
            if breakdown.numel():  # invariant subspace: T is exact, stop there
                done = int(breakdown[0]) + 1
                break
            if tol is not None and not last:
                run = Lanczos(a, b, None, j + 1)
                theta, _, resid = run.ritz()
                top = resid[-min(want, theta.numel()):]
                if bool((top <= tol * theta.abs().max()).all()):
                    done = j + 1
                    break
    a, b = alphas[:done].cpu(), betas[:done].cpu()
    if done < steps and b[done - 1] <= 1e-10 * float(a.abs().max().clamp_min(tiny)):
        b = b.clone()
        b[done - 1] = 0.0
    return Lanczos(a, b, q_all[:done] if keep_basis else None, done)


@dataclass
class Eigen:
    """Top eigenpairs from one Lanczos run: the result the sharpness and spectrum metrics share."""

    values: torch.Tensor  # Ritz values, descending (cpu float64)
    residuals: torch.Tensor  # ‖Mx − θx‖ per value
    run: Lanczos
    s: torch.Tensor  # eigenvectors of T, columns matching `values`

    @property
    def lambda_max(self) -> float:
        return float(self.values[0])

    def converged(self, rtol: float = 1e-2) -> torch.Tensor:
        """Indices of Ritz pairs whose residual is ≤ rtol·max|θ|, largest |θ| first."""
        ok = self.residuals <= rtol * self.values.abs().max()
        idx = torch.nonzero(ok).flatten()
        return idx[torch.argsort(self.values[idx].abs(), descending=True)]


def top_eigen(
    matvec: Matvec, n: int, gen: torch.Generator, device: torch.device | str, *, max_steps: int = 30,
    tol: float | None = 1e-3, want: int = 1,
) -> Eigen:
    """Largest algebraic eigenvalues by Lanczos from a Rademacher start (tol None: run all max_steps)."""
    run = lanczos(matvec, rademacher(n, gen, device), max_steps, tol=tol, want=want)
    theta, s, resid = run.ritz()
    order = torch.argsort(theta, descending=True)
    return Eigen(theta[order], resid[order], run, s[:, order])


@dataclass
class Quadrature:
    """A (deflated) SLQ run: one Lanczos recurrence per probe, plus the eigenvalues counted exactly."""

    runs: list[Lanczos]  # per probe, started from the probe (basis not kept)
    norms2: list[float]  # per probe: ‖v‖² of the (projected) probe
    exact: torch.Tensor  # eigenvalues counted exactly (deflated)
    matvecs: int

    @property
    def nodes(self) -> list[torch.Tensor]:
        return [r.ritz()[0] for r in self.runs]

    @property
    def weights(self) -> list[torch.Tensor]:
        """Per probe: ‖v‖² · (first component of T's eigenvector)², so Σ w f(θ) ≈ vᵀf(M)v (Gauss)."""
        return [n2 * r.ritz()[1][0, :] ** 2 for r, n2 in zip(self.runs, self.norms2, strict=True)]

    def trace(self, f: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """tr f(M) for a smooth f with f(0) = 0, by Gauss quadrature in λ."""
        est = sum(float((w * f(t)).sum()) for t, w in zip(self.nodes, self.weights, strict=True))
        est = est / max(len(self.runs), 1)
        return est + float(f(self.exact).sum())

    def abs_sums(self) -> torch.Tensor:
        """Per probe (rows): estimates of (Σ|λ|, Σ|λ|log|λ|, Σλ²), the exactly counted eigenvalues included.

        |λ| and |λ|log|λ| have a kink at λ = 0, which lies inside an indefinite spectrum: Gauss nodes in λ
        then straddle the many near-zero eigenvalues of a network and the error oscillates with the step
        count. In y = λ² the same sums are √y and ½√y·log y, whose only singularity is at the end point 0 of
        the support; the Gauss rule over-estimates Σ|λ| and the Gauss–Radau rule with a node fixed at 0
        under-estimates it (f = √y has derivatives of fixed sign). We report RADAU_WEIGHT·Radau +
        (1 − RADAU_WEIGHT)·Gauss; the weight was chosen by measurement against dense spectra
        (docs/metrics.md), the bracket itself is exact.
        """
        lam = self.exact.to(WORK_DTYPE)
        a = lam.abs()
        exact = torch.stack([a.sum(), xlogx(a).sum(), (lam * lam).sum()])
        rows = []
        for run, n2 in zip(self.runs, self.norms2, strict=True):
            (yg, wg), (yr, wr) = squared_rules(run)
            g, r = _sqrt_sums(yg, n2 * wg), _sqrt_sums(yr, n2 * wr)
            rows.append(RADAU_WEIGHT * r + (1 - RADAU_WEIGHT) * g)
        if not rows:
            return exact[None, :]
        return torch.stack(rows) + exact[None, :]

    def density(self, grid: torch.Tensor, sigma: float) -> torch.Tensor:
        """Gaussian-smoothed spectral density on `grid` (integrates to ≈ 1 over the whole spectrum)."""
        parts = list(zip(self.nodes, self.weights, strict=True))
        n_total = sum(float(w.sum()) for _, w in parts) / max(len(parts), 1) + self.exact.numel()
        dens = torch.zeros_like(grid, dtype=WORK_DTYPE)

        def kernel(c: torch.Tensor) -> torch.Tensor:
            return torch.exp(-0.5 * ((grid[:, None] - c[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

        for t, w in parts:
            dens += (kernel(t) * w[None, :]).sum(1) / len(parts)
        if self.exact.numel():
            dens += kernel(self.exact).sum(1)
        return dens / n_total


#: weight of the Gauss–Radau rule in the |λ| sums (the rest on the Gauss rule); see Quadrature.abs_sums
RADAU_WEIGHT = 0.75


def _tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    m = alphas.numel()
    t = torch.diag(alphas)
    if m > 1:
        t = t + torch.diag(betas[: m - 1], 1) + torch.diag(betas[: m - 1], -1)
    return t


def _sqrt_sums(y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r = y.clamp_min(0).sqrt()
    return torch.stack([(w * r).sum(), (w * xlogx(r)).sum(), (w * y).sum()])


def squared_rules(run: Lanczos) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Gauss and Gauss–Radau (node at 0) rules, (nodes y ≥ 0, weights), for the probe's measure in y = λ².

    A run of m Lanczos steps fixes the probe's moments up to degree 2m − 1 in λ, hence up to degree m − 1 in
    y: Lanczos on the small matrix T² from e₁ for ⌊m/2⌋ steps gives the Gauss rule in y exactly (no new
    products). The Radau rule adds one node at y = 0 by the usual modification of the last diagonal entry.
    Weights sum to 1 (multiply by ‖v‖²).
    """
    t = _tridiagonal(run.alphas, run.betas)
    b2 = t @ t
    m = t.shape[0]
    k = max(m // 2, 1)
    e1 = torch.zeros(m, dtype=WORK_DTYPE)
    e1[0] = 1.0
    inner = lanczos(lambda x: b2 @ x, e1, k, keep_basis=False, check_every=k)
    j = _tridiagonal(inner.alphas, inner.betas)
    y, s = torch.linalg.eigh(j)
    gauss = (y.clamp_min(0), s[0, :] ** 2)
    kk = inner.steps
    last = inner.betas[kk - 1]
    if not last > 0:  # invariant subspace: the Gauss rule is exact, and so is Radau's
        return gauss, gauss
    rhs = torch.zeros(kk, dtype=WORK_DTYPE)
    rhs[-1] = last**2
    try:
        delta = torch.linalg.solve(j, rhs)
    except RuntimeError:  # a Gauss node exactly at 0: that rule is already the Radau rule
        return gauss, gauss
    if not bool(torch.isfinite(delta).all()):
        return gauss, gauss
    jr = torch.zeros(kk + 1, kk + 1, dtype=WORK_DTYPE)
    jr[:kk, :kk] = j
    jr[kk, kk - 1] = jr[kk - 1, kk] = last
    jr[kk, kk] = delta[-1]
    yr, sr = torch.linalg.eigh(jr)
    return gauss, (yr.clamp_min(0), sr[0, :] ** 2)


def lanczos_block(matvecs: BatchMatvec, block: torch.Tensor, steps: int,
                  project: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[Lanczos]:
    """Independent Lanczos recurrences (full re-orthogonalisation) from each row of `block`, advanced
    together so that each step costs one batched product. `project` (rows → rows) is applied to every
    product, e.g. to work on the complement of a deflated subspace. Each run stops at its first breakdown.
    """
    p, n = block.shape
    steps = min(steps, n)
    device = block.device
    q = torch.zeros(p, steps + 1, n, dtype=WORK_DTYPE, device=device)
    q[:, 0] = block.to(WORK_DTYPE) / torch.linalg.vector_norm(block.to(WORK_DTYPE), dim=1, keepdim=True)
    alphas = torch.zeros(p, steps, dtype=WORK_DTYPE, device=device)
    betas = torch.zeros(p, steps, dtype=WORK_DTYPE, device=device)
    tiny = torch.finfo(WORK_DTYPE).tiny
    for j in range(steps):
        w = matvecs(q[:, j])
        if project is not None:
            w = project(w)
        alphas[:, j] = (q[:, j] * w).sum(1)
        rows = []
        for i in range(p):
            # per probe, matrix-vector products on its own contiguous basis rows: a bmm over the strided slice
            # q[:, :j+1] cost about twice as much (measured on cnn-digits: 57 against 27 training steps for 4 × 30)
            basis, r = q[i, : j + 1], w[i]
            for _ in range(2):
                r = r - basis.T @ (basis @ r)
            rows.append(r)
        w = torch.stack(rows)
        beta = torch.linalg.vector_norm(w, dim=1)
        betas[:, j] = beta
        q[:, j + 1] = w / beta.clamp_min(tiny)[:, None]
    a_all, b_all = alphas.cpu(), betas.cpu()
    runs = []
    for a, b in zip(a_all, b_all, strict=True):
        scale = float(a.abs().max().clamp_min(tiny))
        stop = torch.nonzero(b <= 1e-10 * scale)
        done = int(stop[0]) + 1 if stop.numel() else steps
        a, b = a[:done].clone(), b[:done].clone()
        if stop.numel():
            b[done - 1] = 0.0
        runs.append(Lanczos(a, b, None, done))
    return runs


def nonzero_rows(product: torch.Tensor) -> torch.Tensor:
    """Coordinates whose Hessian row is not identically zero, read off one product with a Gaussian vector.

    A parameter the loss does not depend on at this state (the weights into and out of a ReLU unit that is
    dead on the whole curvature batch) has an exactly zero Hessian row and column: its coordinate vector is
    an exact null eigenvector. Masking those coordinates out of every probe removes that point mass at λ = 0
    from the quadrature; they still count in n. (A nonzero row gives an exact zero only with probability 0.)
    """
    return product != 0


def slq(
    matvec: Matvec, n: int, gen: torch.Generator, device: torch.device | str, *, probes: int = 4,
    steps: int = 20, deflate: torch.Tensor | None = None, deflated_values: torch.Tensor | None = None,
    mask: torch.Tensor | None = None, matvecs: BatchMatvec | None = None, memory_mb: float = 512.0,
) -> Quadrature:
    """Stochastic Lanczos quadrature with Rademacher probes, on the complement of `deflate`'s rows and
    restricted to `mask`'s coordinates. The probes advance together (one batched product per step, as many
    probes at a time as fit in `memory_mb` of Lanczos vectors); without `matvecs` they use `matvec` row by row.
    """
    u = None if deflate is None or deflate.numel() == 0 else deflate.to(device, WORK_DTYPE)

    def project(v: torch.Tensor) -> torch.Tensor:
        return v if u is None else v - (v @ u.T) @ u

    block_op = matvecs if matvecs is not None else (lambda b: torch.stack([matvec(r) for r in b]))
    vs = torch.stack([rademacher(n, gen, device) for _ in range(probes)]) if probes else torch.zeros(0, n)
    if mask is not None:
        vs = vs * mask.to(device, WORK_DTYPE)
    vs = project(vs)
    norms2 = (vs * vs).sum(1).cpu()
    keep = [i for i in range(probes) if float(norms2[i]) > 0]
    # each probe's quadrature is scaled to E‖v‖² = tr(P·mask) instead of its own ‖v‖² (a ratio estimator):
    # the spread of ‖v‖² then adds nothing, and a multiple of the identity is estimated exactly
    dim = float(mask.sum()) if mask is not None else float(n)
    if u is not None:
        m = mask.to(device, WORK_DTYPE) if mask is not None else None
        dim -= float((u * u).sum()) if m is None else float((u * u * m).sum())
    norms2 = torch.full_like(norms2, max(dim, 0.0))
    per_group = max(1, int(memory_mb * 2**20 // (8 * (steps + 1) * max(n, 1))))
    runs: list[Lanczos] = []
    for start in range(0, len(keep), per_group):
        rows = keep[start:start + per_group]
        runs += lanczos_block(block_op, vs[rows], steps, project=project if u is not None else None)
    exact = torch.zeros(0, dtype=WORK_DTYPE) if deflated_values is None else deflated_values.cpu().to(WORK_DTYPE)
    used = sum(steps for _ in keep) if keep else 0
    return Quadrature(runs, [float(norms2[i]) for i in keep], exact, used)


def xlogx(x: torch.Tensor) -> torch.Tensor:
    """x log x with 0 log 0 = 0."""
    return torch.where(x > 0, x * torch.log(x.clamp_min(torch.finfo(x.dtype).tiny)), torch.zeros_like(x))


def renyi_gaps_from_sums(n: int, abs_sum: float, abs_xlogx_sum: float, sq_sum: float) -> tuple[float, float]:
    """(gap_1, gap_2) from T = Σ|λ|, Σ|λ| log|λ| and Σλ²: H_1 = log T − (Σ|λ|log|λ|)/T, H_2 = −log(Σλ²/T²).

    Not clamped: exact sums give a gap in [0, log n] by themselves; estimated sums go through
    `renyi_gaps_with_se`, which clamps.
    """
    if not abs_sum > 0:
        raise ValueError("the Hessian is zero: its normalised spectrum (and the entropy gap) is undefined")
    h1 = math.log(abs_sum) - abs_xlogx_sum / abs_sum
    h2 = -math.log(sq_sum / abs_sum**2)
    return math.log(n) - h1, math.log(n) - h2


def renyi_gaps_from_eigenvalues(eigenvalues: torch.Tensor) -> tuple[float, float]:
    """(gap_1, gap_2) of an exactly known spectrum, using |λ|, clamped to [0, log n] against rounding."""
    lam = eigenvalues.to(WORK_DTYPE).abs()
    n = lam.numel()
    g1, g2 = renyi_gaps_from_sums(n, float(lam.sum()), float(xlogx(lam).sum()), float((lam**2).sum()))
    return clamp_gap(g1, n), clamp_gap(g2, n)


def clamp_gap(gap: float, n: int) -> float:
    """The entropy gap lies in [0, log n] (H_α of an n-point distribution); estimates are held to it."""
    return min(max(gap, 0.0), math.log(n))


@dataclass
class GapEstimate:
    """Entropy gaps (α = 1, 2), clamped to [0, log n], with standard errors over the probes."""

    gap1: float
    se1: float
    gap2: float
    se2: float


def renyi_gaps_with_se(n: int, per_probe: torch.Tensor) -> GapEstimate:
    """Gaps from per-probe estimates of (Σ|λ|, Σ|λ|log|λ|, Σλ²) (rows), and their standard errors.

    The gap is a smooth function of the three means, so its standard error is the delta-method one:
    √(∇gᵀ Σ ∇g / p) with Σ the probes' sample covariance (NaN with a single probe). It covers the probe
    noise, not the quadrature bias, which docs/metrics.md measures separately.
    """
    x = per_probe.to(WORK_DTYPE)
    t1, s, t2 = (float(v) for v in x.mean(0))
    if not t1 > 0 or not t2 > 0:
        raise ValueError("the Hessian is zero: its normalised spectrum (and the entropy gap) is undefined")
    g1, g2 = renyi_gaps_from_sums(n, t1, s, t2)
    p = x.shape[0]
    if p > 1:
        cov = torch.cov(x.T)
        d1 = torch.tensor([-1.0 / t1 - s / t1**2, 1.0 / t1, 0.0], dtype=WORK_DTYPE)
        d2 = torch.tensor([-2.0 / t1, 0.0, 1.0 / t2], dtype=WORK_DTYPE)
        se1 = math.sqrt(max(float(d1 @ cov @ d1), 0.0) / p)
        se2 = math.sqrt(max(float(d2 @ cov @ d2), 0.0) / p)
    else:
        se1 = se2 = float("nan")
    return GapEstimate(clamp_gap(g1, n), se1, clamp_gap(g2, n), se2)


@dataclass
class TraceEstimate:
    value: float
    se: float
    matvecs: int


def hutchpp_trace(matvecs: BatchMatvec, run: Lanczos, gen: torch.Generator, probes: int = 16,
                  mask: torch.Tensor | None = None) -> TraceEstimate:
    """tr M, Hutch++ style, with its standard error: Σα_j exactly on a kept Lanczos basis Q plus Hutchinson
    with Rademacher probes (restricted to `mask`) on its complement, products batched.
    """
    if run.basis is None:
        raise ValueError("Hutch++ needs a Lanczos run that kept its basis")
    q = run.basis
    n = q.shape[1]
    exact = float(run.alphas.sum())
    if probes <= 0:
        return TraceEstimate(exact, float("nan"), 0)
    z = torch.stack([rademacher(n, gen, q.device) for _ in range(probes)])
    if mask is not None:
        z = z * mask.to(q.device, WORK_DTYPE)
    z = z - (z @ q.T) @ q
    hz = matvecs(z)
    hz = hz - (hz @ q.T) @ q
    per = (z * hz).sum(1).cpu()
    se = float(per.std(unbiased=True)) / math.sqrt(probes) if probes > 1 else float("nan")
    return TraceEstimate(exact + float(per.mean()), se, probes)


def hutchpp_traces(matvec: Matvec, run: Lanczos, gen: torch.Generator, probes: int = 4) -> tuple[float, float]:
    """(tr M, tr M²), Hutch++ style: exact on a kept Lanczos basis Q, Hutchinson on its complement.

    tr M = Σ α_j + E[vᵀPMPv] and tr M² = Σ‖Mq_j‖² + E[‖MPv‖²] with P = I − QᵀQ; ‖Mq_j‖² comes free from
    the three-term recurrence (β_{j−1}² + α_j² + β_j²). The Krylov space holds the top of the spectrum, so the
    random part sees only the flat remainder and its variance drops accordingly (Meyer et al. 2021).
    """
    if run.basis is None:
        raise ValueError("Hutch++ needs a Lanczos run that kept its basis")
    q = run.basis
    a, b = run.alphas, run.betas
    exact1 = float(a.sum())
    exact2 = float((a**2).sum() + 2 * (b[:-1] ** 2).sum() + b[-1] ** 2)
    n = q.shape[1]
    t1 = torch.zeros((), dtype=WORK_DTYPE, device=q.device)
    t2 = torch.zeros((), dtype=WORK_DTYPE, device=q.device)
    for _ in range(probes):
        v = rademacher(n, gen, q.device)
        v = v - q.T @ (q @ v)
        mv = matvec(v)
        t1 += torch.dot(v, mv)
        t2 += torch.dot(mv, mv)
    return exact1 + float(t1) / max(probes, 1), exact2 + float(t2) / max(probes, 1)


def hutchinson_traces(matvec: Matvec, n: int, gen: torch.Generator, device: torch.device | str,
                      probes: int = 10) -> tuple[float, float]:
    """(tr M, tr M²) ≈ mean vᵀMv and mean ‖Mv‖² over Rademacher v (one product per probe)."""
    t1 = torch.zeros((), dtype=WORK_DTYPE, device=device)
    t2 = torch.zeros((), dtype=WORK_DTYPE, device=device)
    for _ in range(probes):
        v = rademacher(n, gen, device)
        mv = matvec(v)
        t1 += torch.dot(v, mv)
        t2 += torch.dot(mv, mv)
    return float(t1) / probes, float(t2) / probes
