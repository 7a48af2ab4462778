"""Curvature estimates from Hessian-vector products: Lanczos eigenvalues, Hutchinson traces, SLQ spectral sums.

Why our own and not curvlinops: curvlinops' operators need a (model, loss function, data) triple, while a
task only exposes `curvature_loss()` (quadratics have no model at all), and its eigenvalue routines go
through scipy's ARPACK, which copies every product to the host. Here every product stays on the device;
the host sees only the small tridiagonal matrices, once every `check_every` Lanczos steps.

Conventions (optbench's documented definitions, see REFERENCES.md "Geometry metrics"):
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
    """SLQ nodes and weights per probe, plus the exactly known (deflated) eigenvalues."""

    nodes: list[torch.Tensor]  # per probe: Ritz values
    weights: list[torch.Tensor]  # per probe: ‖v‖² · (first component of T's eigenvector)², so Σ w f(θ) ≈ vᵀf(M)v
    exact: torch.Tensor  # eigenvalues counted exactly (deflated)
    matvecs: int

    def trace(self, f: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """tr f(M) for an f with f(0) = 0."""
        est = sum(float((w * f(t)).sum()) for t, w in zip(self.nodes, self.weights, strict=True))
        est = est / max(len(self.nodes), 1)
        return est + float(f(self.exact).sum())

    def density(self, grid: torch.Tensor, sigma: float) -> torch.Tensor:
        """Gaussian-smoothed spectral density on `grid` (integrates to ≈ 1 over the whole spectrum)."""
        parts = [(t, w) for t, w in zip(self.nodes, self.weights, strict=True)]
        n_total = sum(float(w.sum()) for _, w in parts) / max(len(parts), 1) + self.exact.numel()
        dens = torch.zeros_like(grid, dtype=WORK_DTYPE)

        def kernel(c: torch.Tensor) -> torch.Tensor:
            return torch.exp(-0.5 * ((grid[:, None] - c[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

        for t, w in parts:
            dens += (kernel(t) * w[None, :]).sum(1) / len(parts)
        if self.exact.numel():
            dens += kernel(self.exact).sum(1)
        return dens / n_total


def slq(
    matvec: Matvec, n: int, gen: torch.Generator, device: torch.device | str, *, probes: int = 4,
    steps: int = 20, deflate: torch.Tensor | None = None, deflated_values: torch.Tensor | None = None,
) -> Quadrature:
    """Stochastic Lanczos quadrature with Rademacher probes; optionally on the complement of `deflate`'s rows."""
    u = None if deflate is None or deflate.numel() == 0 else deflate.to(device, WORK_DTYPE)

    def project(v: torch.Tensor) -> torch.Tensor:
        return v if u is None else v - u.T @ (u @ v)

    op = matvec if u is None else (lambda v: project(matvec(project(v))))
    nodes, weights = [], []
    used = 0
    for _ in range(probes):
        v = project(rademacher(n, gen, device))
        norm2 = float(torch.dot(v, v))  # one sync per probe
        if norm2 <= 0:
            continue
        run = lanczos(op, v, steps, keep_basis=False, check_every=steps)
        used += run.matvecs
        theta, s, _ = run.ritz()
        nodes.append(theta)
        weights.append(norm2 * s[0, :] ** 2)
    exact = torch.zeros(0, dtype=WORK_DTYPE) if deflated_values is None else deflated_values.cpu().to(WORK_DTYPE)
    return Quadrature(nodes, weights, exact, used)


def xlogx(x: torch.Tensor) -> torch.Tensor:
    """x log x with 0 log 0 = 0."""
    return torch.where(x > 0, x * torch.log(x.clamp_min(torch.finfo(x.dtype).tiny)), torch.zeros_like(x))


def entropy_gaps_from_sums(n: int, abs_sum: float, abs_xlogx_sum: float, sq_sum: float) -> tuple[float, float]:
    """(gap_1, gap_2) from T = Σ|λ|, Σ|λ| log|λ| and Σλ²: H_1 = log T − (Σ|λ|log|λ|)/T, H_2 = −log(Σλ²/T²)."""
    if not abs_sum > 0:
        raise ValueError("the Hessian is zero: its normalised spectrum (and the entropy gap) is undefined")
    h1 = math.log(abs_sum) - abs_xlogx_sum / abs_sum
    h2 = -math.log(sq_sum / abs_sum**2)
    return math.log(n) - h1, math.log(n) - h2


def entropy_gaps_from_eigenvalues(eigenvalues: torch.Tensor) -> tuple[float, float]:
    """(gap_1, gap_2) of an exactly known spectrum, using |λ|."""
    lam = eigenvalues.to(WORK_DTYPE).abs()
    return entropy_gaps_from_sums(lam.numel(), float(lam.sum()), float(xlogx(lam).sum()), float((lam**2).sum()))


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
