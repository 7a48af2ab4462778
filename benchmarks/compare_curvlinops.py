"""Side by side: curvlinops-for-pytorch vs optbench.curvature on one small MLP with a dense reference Hessian.

Run: OMP_NUM_THREADS=1 python benchmarks/compare_curvlinops.py
Reports λmax (relative error, products used, time) and the Hutchinson trace for both.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from optbench import curvature as cv


def small_mlp(seed: int = 0, d_in: int = 20, hidden: int = 48, d_out: int = 5, n: int = 256):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                          nn.Linear(hidden, d_out)).double()
    x = torch.randn(n, d_in, dtype=torch.float64)
    y = torch.randint(0, d_out, (n,))
    return model, x, y


def main() -> None:
    from curvlinops import HessianLinearOperator, hutchinson_trace
    from scipy.sparse.linalg import eigsh

    model, x, y = small_mlp()
    params = [p for p in model.parameters()]
    n = sum(p.numel() for p in params)
    loss_fn = nn.CrossEntropyLoss()

    t0 = time.perf_counter()
    flat = torch.nn.utils.parameters_to_vector(params)

    def f(v):
        torch.nn.utils.vector_to_parameters(v, params)
        return loss_fn(torch.func.functional_call(model, dict(zip([k for k, _ in model.named_parameters()],
                                                                  [p for p in params], strict=True)), x), y)

    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in params]

    def loss_of(v):
        chunks = torch.split(v, [p.numel() for p in params])
        d = {k: c.view(s) for k, c, s in zip(names, chunks, shapes, strict=True)}
        return loss_fn(torch.func.functional_call(model, d, (x,)), y)

    dense = torch.func.hessian(loss_of)(flat.detach())
    t_dense = time.perf_counter() - t0
    ev = np.linalg.eigvalsh(dense.numpy())
    lam_max, tr = ev[-1], ev.sum()
    print(f"MLP params n={n}; dense Hessian {t_dense:.2f}s; lambda_max={lam_max:.6g}; trace={tr:.6g}; "
          f"lambda_min={ev[0]:.4g}")

    # curvlinops: operator + ARPACK (host round-trip per product)
    op = HessianLinearOperator(model, loss_fn, params, [(x, y)])
    counter = [0]
    sp = op.to_scipy()

    from scipy.sparse.linalg import LinearOperator

    def mv(v):
        counter[0] += 1
        return sp @ v

    lin = LinearOperator(sp.shape, matvec=mv, dtype=np.float64)
    t0 = time.perf_counter()
    val = eigsh(lin, k=1, which="LA", tol=1e-3, return_eigenvectors=False)[0]
    t_cl = time.perf_counter() - t0
    print(f"curvlinops+eigsh(LA,tol=1e-3): lambda_max={val:.6g} relerr={abs(val-lam_max)/lam_max:.2e} "
          f"products={counter[0]} time={t_cl:.3f}s")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    tr_cl = float(hutchinson_trace(op, 50))
    print(f"curvlinops hutchinson_trace(50): {tr_cl:.6g} relerr={abs(tr_cl-tr)/abs(tr):.2e} "
          f"time={time.perf_counter()-t0:.3f}s")

    # ours: double-backward HVP with the first-order graph reused
    counter2 = [0]
    with torch.enable_grad():
        g = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)

    def hvp(vs):
        counter2[0] += 1
        return [o.detach() for o in torch.autograd.grad(g, params, grad_outputs=vs, retain_graph=True)]

    mvp = cv.flat_operator(hvp, params)
    gen = cv.make_generator(0)
    t0 = time.perf_counter()
    eig = cv.top_eigen(mvp, n, gen, "cpu", max_steps=30, tol=1e-3)
    t_ours = time.perf_counter() - t0
    print(f"optbench lanczos(tol=1e-3): lambda_max={eig.lambda_max:.6g} "
          f"relerr={abs(eig.lambda_max-lam_max)/lam_max:.2e} products={counter2[0]} time={t_ours:.3f}s")
    counter2[0] = 0
    t0 = time.perf_counter()
    t1, _ = cv.hutchinson_traces(mvp, n, gen, "cpu", probes=50)
    print(f"optbench hutchinson(50): {t1:.6g} relerr={abs(t1-tr)/abs(tr):.2e} time={time.perf_counter()-t0:.3f}s")
    counter2[0] = 0
    t0 = time.perf_counter()
    run = cv.lanczos(mvp, cv.rademacher(n, gen), 30)
    t1, _ = cv.hutchpp_traces(mvp, run, gen, probes=20)
    print(f"optbench hutch++(30 basis + 20 probes): {t1:.6g} relerr={abs(t1-tr)/abs(tr):.2e} products={counter2[0]} "
          f"time={time.perf_counter()-t0:.3f}s")
    v = [torch.randn_like(p) for p in params]
    t0 = time.perf_counter()
    for _ in range(20):
        op @ torch.cat([t.reshape(-1) for t in v])
    t_cl1 = (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    for _ in range(20):
        hvp(v)
    print(f"one product: curvlinops {1e3 * t_cl1:.2f} ms (forward+double backward each time), "
          f"optbench {1e3 * (time.perf_counter() - t0) / 20:.2f} ms (first-order graph reused)")
    # deflated SLQ trace at a similar product budget
    counter2[0] = 0
    t0 = time.perf_counter()
    eig = cv.top_eigen(mvp, n, gen, "cpu", max_steps=20, tol=1e-3)
    idx = eig.converged()[:10]
    q = cv.slq(mvp, n, gen, "cpu", probes=3, steps=10, deflate=eig.run.ritz_vectors(eig.s[:, idx]),
               deflated_values=eig.values[idx])
    tr_s = q.trace(lambda t: t)
    print(f"optbench deflated SLQ trace: {tr_s:.6g} relerr={abs(tr_s-tr)/abs(tr):.2e} products={counter2[0]} "
          f"time={time.perf_counter()-t0:.3f}s")
    a = np.abs(ev)
    g1 = np.log(n) - (np.log(a.sum()) - (a[a > 0] * np.log(a[a > 0])).sum() / a.sum())
    g2 = np.log(n) + np.log((a**2).sum() / a.sum() ** 2)
    e1, e2 = cv.renyi_gaps_from_sums(n, q.trace(torch.abs), q.trace(lambda t: cv.xlogx(t.abs())),
                                       q.trace(lambda t: t**2))
    print(f"entropy gap1 dense={g1:.5g} slq={e1:.5g} relerr={abs(e1-g1)/g1:.2e}; "
          f"gap2 dense={g2:.5g} slq={e2:.5g} relerr={abs(e2-g2)/g2:.2e}")


if __name__ == "__main__":
    main()
