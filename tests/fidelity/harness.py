"""Differential-test harness: train one small network on real data twice, once with our optimizer and once with
the official implementation (or a faithful transcription of it), and measure how far the parameters drift apart.

Why this shape: an update rule that is right on random tensors can still be wrong where it matters (an epsilon
that only bites when second moments are tiny, a tie in a sign or a top-k, a bisection that stops early), so
both runs see a real loss surface: scikit-learn's handwritten digits (bundled with the wheel, no download), a
small MLP or CNN, float64 throughout, the same initial weights, the same mini-batches and the same random
draws (the global RNG is reseeded before every step on both sides, so Hutchinson probes, sampled labels and
dropout-like noise agree), for hundreds of steps.

The deviation is normwise per tensor, max over tensors: max|ours - ref| / max|ref|. A comparison also checks
that training moved the parameters far more than the tolerance, so a test cannot pass because neither side
did anything.

Step protocols: each side gets a `StepFn(ctx)` that performs one optimisation step. `gradient_step` is the
plain torch loop; `optbench_step(needs)` drives the optimizer exactly as optbench's runner does (through
`optbench.closure.StepClosure`); a reference with its own protocol (sophia-opt's `update_hessian`, SAM's
`first_step`/`second_step`) writes a small StepFn with `ctx.backward(...)`, `ctx.loss(...)`,
`ctx.fresh_batch(k)`.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optbench.closure import StepClosure
from optbench.specs import Needs, OptimizerSpec

RTOL = 1e-5
STEPS = 200
BATCH = 32
Batch = tuple[torch.Tensor, torch.Tensor]


@functools.lru_cache(maxsize=1)
def digits() -> Batch:
    """All 1,797 digits as float64 images (N, 1, 8, 8) scaled to [0, 1], and int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).to(torch.float64).div_(16.0).unsqueeze(1)
    return x, torch.from_numpy(d.target).to(torch.int64)


def make_model(kind: str = "mlp", seed: int = 0) -> nn.Module:
    """A float64 network with a seeded init: `mlp` (64-32-10, tanh, 2.4k params) or `cnn` (conv 4x3x3, max-pool,
    linear; 0.7k params). Small on purpose: 200 steps of either cost well under a second."""
    torch.default_generator.manual_seed(seed)
    if kind == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    elif kind == "cnn":
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(64, 10))
    else:
        raise ValueError(f"model kind must be 'mlp' or 'cnn', got {kind!r}")
    return net.to(torch.float64)


def batch_indices(steps: int, batch_size: int, seed: int, n: int) -> list[torch.Tensor]:
    """Mini-batch index sets: shuffled epochs without replacement, from a generator of their own."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    out: list[torch.Tensor] = []
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        out.append(perm[pos:pos + batch_size])
        pos += batch_size
    return out


class DigitsProblem:
    """The loss side of a run: what optbench's TaskInstance offers the closure protocol (`loss`, `sampled_loss`),
    on one model. `sampled_loss` draws labels from the model's own softmax with the global RNG (reseeded per
    step by the harness) and averages cross-entropy over the batch, as the classifier tasks do."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def loss(self, batch: Batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def sampled_loss(self, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        x, _ = batch
        logits = self.model(x)
        with torch.no_grad():
            y = torch.multinomial(F.softmax(logits, dim=-1), 1).squeeze(1)
        return F.cross_entropy(logits, y, reduction=reduction)

    def sampled_examples(self, batch: Batch) -> int:
        return len(batch[1])


@dataclass
class StepContext:
    """What a StepFn sees for one step: the optimizer, the model's parameters and the step's batch."""

    optimizer: torch.optim.Optimizer
    model: nn.Module
    problem: DigitsProblem
    batch: Batch
    step: int  # 1-based
    seed: int
    params: list[torch.Tensor] = field(default_factory=list)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def loss(self, batch: Batch | None = None, sampled_labels: bool = False) -> torch.Tensor:
        b = self.batch if batch is None else batch
        return self.problem.sampled_loss(b) if sampled_labels else self.problem.loss(b)

    def backward(self, batch: Batch | None = None, create_graph: bool = False,
                 sampled_labels: bool = False) -> torch.Tensor:
        """Zero the gradients, evaluate the loss and back-propagate it; returns the loss."""
        self.zero_grad()
        loss = self.loss(batch, sampled_labels)
        loss.backward(create_graph=create_graph)
        return loss

    def fresh_batch(self, k: int, batch_size: int | None = None) -> Batch:
        """The k-th extra mini-batch of this step (k = 0, 1, ...), identical on both sides: for optimizers that
        draw new data inside `step` (Entropy-SGD's inner loop)."""
        x, y = digits()
        size = batch_size or len(self.batch[1])
        gen = torch.Generator().manual_seed(((self.seed + 1) * 1_000_003 + self.step) * 1_009 + k)
        idx = torch.randint(len(y), (size,), generator=gen)
        return x[idx], y[idx]

    def fresh_batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        k = 0
        while True:
            yield self.fresh_batch(k, batch_size)
            k += 1


StepFn = Callable[[StepContext], Any]
OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def gradient_step(ctx: StepContext) -> None:
    """The plain torch loop: zero_grad, loss, backward, step()."""
    ctx.backward()
    ctx.optimizer.step()


def closure_step(ctx: StepContext) -> None:
    """torch's closure protocol: step(closure) with a no-argument closure that re-evaluates loss and gradients."""
    ctx.backward()
    ctx.optimizer.step(lambda: ctx.backward())


def optbench_step(needs: Needs | str) -> StepFn:
    """Drive the optimizer as optbench's runner does for `needs` (pre-step evaluation, then step(closure))."""
    needs = Needs(needs)

    def step(ctx: StepContext) -> None:
        closure = StepClosure(ctx.problem, ctx.params)  # type: ignore[arg-type]  # duck-typed TaskInstance
        closure.batch = ctx.batch
        closure.before_step(needs)
        ctx.optimizer.step(closure.for_step(needs))

    return step


@dataclass
class Trajectory:
    """The end of one run: final parameters (detached copies), initial parameters and the loss per step."""

    initial: list[torch.Tensor]
    final: list[torch.Tensor]
    losses: list[float]
    optimizer: torch.optim.Optimizer


@contextlib.contextmanager
def _float64_default() -> Iterator[None]:
    """Run with float64 as the default dtype, so tensors an optimizer makes without a dtype (torch.zeros(d))
    match the float64 parameters; a plugin that breaks under it is a bug the harness should surface."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def run(make_optimizer: OptimizerFactory, step_fn: StepFn = gradient_step, *, model: str = "mlp",
        steps: int = STEPS, batch_size: int = BATCH, seed: int = 0,
        prepare: Callable[[nn.Module], nn.Module] | None = None) -> Trajectory:
    """Train `model` for `steps` steps on digits with the optimizer `make_optimizer(params)` builds.

    `prepare(model)` may wrap or hook the model before the optimizer is built. A factory with the attribute
    `wants_model = True` is called as `make_optimizer(params, model=net)` (layer hooks, e.g. AdaFisher);
    `from_spec` sets it for specs with `wants_model`."""
    x, y = digits()
    with _float64_default():
        net = make_model(model, seed)
        if prepare is not None:
            net = prepare(net)
        params = [p for p in net.parameters() if p.requires_grad]
        initial = [p.detach().clone() for p in params]
        opt = make_optimizer(params, model=net) if getattr(make_optimizer, "wants_model", False) \
            else make_optimizer(params)
        problem = DigitsProblem(net)
        losses: list[float] = []
        for t, idx in enumerate(batch_indices(steps, batch_size, seed, len(y)), start=1):
            # the same random draws on both sides, every step (the CPU generator only: torch.manual_seed also
            # queues seeds for CUDA/XPU/MTIA and formats a stack trace for each, ~10 ms a call)
            torch.default_generator.manual_seed(1_000_003 * (seed + 1) + t)
            ctx = StepContext(opt, net, problem, (x[idx], y[idx]), t, seed, params)
            step_fn(ctx)
            with torch.no_grad():
                losses.append(float(problem.loss(ctx.batch)))
        final = [p.detach().clone() for p in params]
    return Trajectory(initial, final, losses, opt)


def deviation(ours: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]) -> float:
    """max over tensors of max|a - b| / max|b| (inf on NaN/inf or a shape mismatch)."""
    if len(ours) != len(ref):
        return math.inf
    worst = 0.0
    for a, b in zip(ours, ref, strict=True):
        if a.shape != b.shape or not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            return math.inf
        scale = float(b.abs().max()) or 1.0
        worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


@dataclass
class Comparison:
    deviation: float  # final-parameter deviation, ours vs reference
    travel: float  # how far the reference moved from the initial parameters, same measure
    steps: int
    ours: Trajectory
    ref: Trajectory

    def __str__(self) -> str:
        return (f"deviation {self.deviation:.2e} after {self.steps} steps (reference moved {self.travel:.2e}; "
                f"loss {self.ref.losses[0]:.3f} -> {self.ref.losses[-1]:.3f})")


def compare(ours: OptimizerFactory, ref: OptimizerFactory, *, step_ours: StepFn = gradient_step,
            step_ref: StepFn | None = None, **run_kw: Any) -> Comparison:
    """Run both optimizers from the same init on the same batches and measure the deviation."""
    a = run(ours, step_ours, **run_kw)
    b = run(ref, step_ref or step_ours, **run_kw)
    return Comparison(deviation(a.final, b.final), deviation(b.final, b.initial), len(b.losses), a, b)


def assert_matches(ours: OptimizerFactory, ref: OptimizerFactory, *, rtol: float = RTOL,
                   min_travel: float = 1e-2, **kw: Any) -> Comparison:
    """`compare`, then fail unless the deviation is <= rtol and the reference moved by >= min_travel (relative),
    so that a pair of optimizers that do nothing cannot pass. Returns the comparison (tests may print it)."""
    cmp = compare(ours, ref, **kw)
    assert cmp.travel >= min_travel, f"the reference barely trained ({cmp}); the comparison would prove nothing"
    assert cmp.deviation <= rtol, f"ours differs from the reference: {cmp} > rtol {rtol:g}"
    return cmp


def from_spec(spec: OptimizerSpec, **hp: Any) -> OptimizerFactory:
    """A factory building `spec` the way the runner does: its defaults, overridden by `hp`."""
    unknown = set(hp) - set(spec.defaults)
    if unknown:
        raise KeyError(f"{spec.name} has no hyperparameters {sorted(unknown)}")
    merged = {**spec.defaults, **hp}
    if spec.wants_model:
        def build_with_model(params: list[torch.Tensor], model: nn.Module) -> torch.optim.Optimizer:
            return spec.build(params, model=model, **merged)

        build_with_model.wants_model = True  # type: ignore[attr-defined]
        return build_with_model
    return lambda params: spec.build(params, **merged)


def spec_named(module: Any, name: str) -> OptimizerSpec:
    """The OptimizerSpec `name` from a plugin module's hook (without loading every entry point)."""
    for spec in module.optbench_register_optimizers():
        if spec.name == name:
            return spec
    raise KeyError(f"{module.__name__} registers no optimizer {name!r}")
