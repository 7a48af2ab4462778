"""Checks every task instance must pass (used by the task test files until a shared task kit exists): its target
names a key evaluate() reports, validation and test are reported apart, the same seed gives the same start,
training lowers the loss, and the curvature loss has a Hessian-vector product."""

from __future__ import annotations

import math

import torch


def check_task_instance(build, preset: str, steps: int = 8, lr: float = 3e-3) -> dict[str, float]:
    task = build(preset, 0, "cpu")
    again = build(preset, 0, "cpu")
    first, other = next(task.batches()), next(again.batches())
    def inputs(batch):
        return batch if torch.is_tensor(batch) else batch[0]

    assert torch.equal(inputs(first), inputs(other)), "same seed, different batch"
    with torch.no_grad():
        assert float(task.loss(first)) == float(again.loss(first)), "same seed, different initial weights"
    quality = task.evaluate()
    assert task.target is not None and task.target.name in quality
    assert task.target.name.startswith("val_"), "targets are on validation metrics"
    assert {"val_loss", "test_loss"} <= set(quality) and all(math.isfinite(v) for v in quality.values())
    params = task.parameters()
    opt = torch.optim.AdamW(params, lr=lr)
    stream = task.batches()
    fixed = next(stream)
    with torch.no_grad():
        before = float(task.loss(fixed))
    for _ in range(steps):
        opt.zero_grad()
        task.loss(fixed).backward()
        opt.step()
    with torch.no_grad():
        assert float(task.loss(fixed)) < before, "a few AdamW steps on one batch did not lower its loss"
    loss = task.curvature_loss()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vs = [torch.randn_like(p) for p in params]
    hvp = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vs, strict=True)), params)
    assert all(torch.isfinite(h).all() for h in hvp)
    return quality
