"""The conformance kit: what every optimizer plugin must satisfy before its numbers mean anything.

Plugin authors use it from pytest::

    from optbench.testing import assert_optimizer_conforms

    def test_my_optimizer_conforms():
        assert_optimizer_conforms("my-optimizer")

`optbench check-plugin NAME` runs the same `check_optimizer` and prints the table. Every check drives the
optimizer through the real closure protocol (`optbench.closure.StepClosure`, the class the runner uses), so
"passes the kit" means "behaves in a benchmark run as it does here". Each check is tiny (a 4-6-3 MLP on 12
points, a 200-dimensional quadratic for 10 steps) so the kit can run over a hundred optimizers in seconds.

Checks (`CheckResult.check`):
  builds       `spec.build(params, **defaults)` returns a torch.optim.Optimizer on a tiny model
  smoke        10 steps on `quadratic-well-conditioned` (smoke preset) without a non-finite loss or parameter
               (optimizers that declare `wants_model` run them on the tiny model: the quadratic has no model)
  state-dict   state_dict() -> fresh optimizer -> load_state_dict() reproduces the next step bit for bit
  zero-grad    zero_grad() leaves every gradient None or zero
  param-groups two parameter groups with different lr are kept apart with their lr, and both move (an
               optimizer may split a group further, e.g. Muon's 2-D / other split; the check goes by parameter)
  needs        the declared `needs` matches what step() uses (see `_check_needs`)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from optbench.closure import StepClosure
from optbench.registry import Registered, Registry, get_registry
from optbench.specs import Needs, TaskInstance

SMOKE_TASK = "quadratic-well-conditioned"
SMOKE_STEPS = 10
#: steps taken before the state_dict is saved, so the optimizer state is not trivially empty
ROUND_TRIP_WARMUP = 3
#: an optimizer may spend its first steps filling state (AdaShift's window, SOAP's preconditioner, RAdam's
#: warm-up): "moves the parameters" checks allow this many steps
MAX_STEPS_TO_MOVE = 12


@dataclass
class CheckResult:
    check: str
    passed: bool
    detail: str = ""


class TinyClassifier(TaskInstance):
    """A 4-6-3 tanh MLP with cross-entropy on 12 fixed points: the smallest model with two weight matrices,
    biases (1-D parameters), Linear layers for hook-based optimizers and a likelihood to sample labels from."""

    def __init__(self, seed: int = 0) -> None:
        data = torch.Generator().manual_seed(20250228)  # the data never changes; `seed` moves the init only
        self.x = torch.randn(12, 4, generator=data)
        self.y = torch.randint(0, 3, (12,), generator=data)
        gen = torch.Generator().manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
        with torch.no_grad():
            for p in self.model.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        self.budget, self.eval_every, self.batch_size, self.dataset = SMOKE_STEPS, SMOKE_STEPS, 12, "synthetic-tiny"

    def batches(self) -> Iterator[Any]:
        while True:
            yield None  # full batch: the same 12 points every step

    def loss(self, batch: Any) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.model(self.x), self.y)

    def sampled_loss(self, batch: Any) -> torch.Tensor:
        logits = self.model(self.x)
        with torch.no_grad():
            labels = torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(-1)  # global RNG: seedable
        return torch.nn.functional.cross_entropy(logits, labels)

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            return {"test_loss": float(self.loss(None))}

    def curvature_loss(self) -> torch.Tensor:
        return self.loss(None)


# --- helpers ------------------------------------------------------------------------------------------
def _build(entry: Registered, params: Any, model: torch.nn.Module | None) -> torch.optim.Optimizer:
    spec = entry.spec
    extra = {"model": model} if spec.wants_model else {}
    opt = spec.build(params, **dict(spec.defaults), **extra)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"build() returned {type(opt).__name__}, not a torch.optim.Optimizer")
    return opt


def _drive(opt: torch.optim.Optimizer, closure: StepClosure, needs: Needs, steps: int) -> list[float]:
    """`steps` training steps exactly as the runner takes them; returns the pre-step losses."""
    losses = []
    for _ in range(steps):
        closure.next_batch()
        losses.append(float(closure.before_step(needs).detach()))
        opt.step(closure.for_step(needs))
    return losses


def _snapshot(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _moved(before: list[torch.Tensor], params: list[torch.Tensor]) -> bool:
    return any(not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True))


def _finite(params: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(p.detach()).all()) for p in params)


def _tiny(entry: Registered, seed: int = 0) -> tuple[TinyClassifier, list[torch.Tensor], torch.optim.Optimizer]:
    task = TinyClassifier(seed)
    params = task.parameters()
    return task, params, _build(entry, params, task.model)


# --- the checks ----------------------------------------------------------------------------------------
def _check_builds(entry: Registered) -> CheckResult:
    _, params, opt = _tiny(entry)
    return CheckResult("builds", True, f"{type(opt).__name__} with defaults {dict(entry.spec.defaults)}")


def _check_smoke(entry: Registered, registry: Registry) -> CheckResult:
    spec = entry.spec
    if spec.wants_model:
        task: TaskInstance = TinyClassifier(0)
        where = "tiny MLP (wants_model: the quadratic has no model)"
    else:
        task = registry.task(SMOKE_TASK).spec.build("smoke", 0, torch.device("cpu"), None)
        where = f"{SMOKE_TASK}/smoke"
    params = task.parameters()
    opt = _build(entry, params, task.model)
    task.train()
    losses = _drive(opt, StepClosure(task, params), Needs(spec.needs), SMOKE_STEPS)
    if not all(math.isfinite(v) for v in losses) or not _finite(params):
        return CheckResult("smoke", False, f"non-finite loss or parameter on {where}: losses {losses}")
    return CheckResult("smoke", True, f"{SMOKE_STEPS} steps on {where}: loss {losses[0]:.4g} -> {losses[-1]:.4g}")


def _check_state_dict(entry: Registered) -> CheckResult:
    needs = Needs(entry.spec.needs)
    task_a, params_a, opt_a = _tiny(entry)
    _drive(opt_a, StepClosure(task_a, params_a), needs, ROUND_TRIP_WARMUP)
    saved_state = copy.deepcopy(opt_a.state_dict())
    saved_params = _snapshot(params_a)
    torch.manual_seed(1234)  # stochastic optimizers draw from the global RNG: same draws on both sides
    _drive(opt_a, StepClosure(task_a, params_a), needs, 1)

    task_b, params_b, opt_b = _tiny(entry, seed=1)  # different init, overwritten below: nothing leaks
    with torch.no_grad():
        for p, s in zip(params_b, saved_params, strict=True):
            p.copy_(s)
    opt_b.load_state_dict(saved_state)
    torch.manual_seed(1234)
    _drive(opt_b, StepClosure(task_b, params_b), needs, 1)
    diffs = [float((a.detach() - b.detach()).abs().max()) for a, b in zip(params_a, params_b, strict=True)]
    if any(not torch.allclose(a, b, rtol=0, atol=0, equal_nan=True) for a, b in zip(params_a, params_b, strict=True)):
        return CheckResult("state-dict", False, f"the step after load_state_dict differs: max |diff| {max(diffs):.3g}")
    return CheckResult("state-dict", True, f"step {ROUND_TRIP_WARMUP + 1} identical after a round trip")


def _check_zero_grad(entry: Registered) -> CheckResult:
    task, params, opt = _tiny(entry)
    _drive(opt, StepClosure(task, params), Needs(entry.spec.needs), 1)
    closure = StepClosure(task, params)
    closure.evaluate(backward=True)  # make sure there are gradients to clear
    opt.zero_grad()
    dirty = [i for i, p in enumerate(params) if p.grad is not None and bool(p.grad.ne(0).any())]
    if dirty:
        return CheckResult("zero-grad", False, f"gradients of parameters {dirty} survive zero_grad()")
    return CheckResult("zero-grad", True, "zero_grad() cleared every gradient")


def _check_param_groups(entry: Registered) -> CheckResult:
    task = TinyClassifier(0)
    first = list(task.model[0].parameters())
    second = list(task.model[2].parameters())
    lr = entry.spec.defaults.get("lr")
    lr2 = 0.5 * lr if isinstance(lr, (int, float)) and not isinstance(lr, bool) else None
    group2: dict[str, Any] = {"params": second} if lr2 is None else {"params": second, "lr": lr2}
    opt = _build(entry, [{"params": first}, dict(group2)], task.model)  # a copy: add_param_group fills it in
    where = {id(p): g for g in opt.param_groups for p in g["params"]}
    if any(id(p) not in where for p in first + second):
        return CheckResult("param-groups", False, "some parameters of the two groups are in no param_group")
    if any(where[id(p)] is where[id(q)] for p in first for q in second):
        return CheckResult("param-groups", False, "parameters of the two groups were merged into one group")
    if "lr" in group2 and (where[id(second[0])].get("lr") != group2["lr"] or where[id(first[0])].get("lr") != lr):
        return CheckResult("param-groups", False, f"asked for lr {lr} and {group2['lr']}, the groups have "
                           f"{where[id(first[0])].get('lr')} and {where[id(second[0])].get('lr')}")
    b1, b2 = _snapshot(first), _snapshot(second)
    params = first + second
    closure = StepClosure(task, params)
    for _ in range(MAX_STEPS_TO_MOVE):  # some optimizers only initialise state on their first steps
        _drive(opt, closure, Needs(entry.spec.needs), 1)
        moved1, moved2 = _moved(b1, first), _moved(b2, second)
        if moved1 and moved2:
            break
    else:
        return CheckResult("param-groups", False, f"in {MAX_STEPS_TO_MOVE} steps group 1 moved: {moved1}, "
                           f"group 2 moved: {moved2}")
    lrs = f"lr {lr} and {group2['lr']}" if "lr" in group2 else "the default lr (no numeric 'lr' hyperparameter)"
    return CheckResult("param-groups", True, f"two groups with {lrs} both moved")


def _check_needs(entry: Registered) -> CheckResult:
    """GRADIENT: step() without a closure moves the parameters. CLOSURE/HESSIAN: step(closure) works on the
    protocol's gradients, and CLOSURE ones really call the closure with backward=True. SAMPLED_LABELS: the
    closure is asked for sampled labels within 10 steps. LOSS_ONLY: works with p.grad None and never asks the
    closure for a backward pass (but does call it: a zeroth-order method needs loss values)."""
    needs = Needs(entry.spec.needs)
    task, params, opt = _tiny(entry)
    closure = StepClosure(task, params, record=True)
    before = _snapshot(params)
    if needs is Needs.GRADIENT:
        closure.batch = next(task.batches())
        for i in range(1, MAX_STEPS_TO_MOVE + 1):  # noqa: B007 - i is reported below
            closure.before_step(needs)
            opt.step()
            if _moved(before, params):
                break
        ok = _moved(before, params) and _finite(params)
        return CheckResult("needs", ok, "gradient: step() without a closure " + (f"moved the parameters (step {i})"
                           if ok else f"did not move the parameters in {MAX_STEPS_TO_MOVE} steps"))
    steps = SMOKE_STEPS if needs is Needs.SAMPLED_LABELS else 1
    if needs is Needs.LOSS_ONLY:
        closure.batch = next(task.batches())
        closure.before_step(needs)
        if any(p.grad is not None for p in params):
            return CheckResult("needs", False, "internal: the loss-only pre-step left gradients")
        opt.step(closure)
        backward_calls = sum(c["backward"] for c in closure.calls)
        ok = bool(closure.calls) and backward_calls == 0 and _moved(before, params)
        return CheckResult("needs", ok, f"loss-only: {len(closure.calls)} closure calls, {backward_calls} with "
                           f"backward, parameters moved: {_moved(before, params)}")
    _drive(opt, closure, needs, steps)
    moved = _moved(before, params)
    if needs is Needs.CLOSURE:
        n = sum(c["backward"] for c in closure.calls)
        return CheckResult("needs", n > 0 and moved, f"closure: {n} closure calls with backward in one step, "
                           f"parameters moved: {moved}")
    if needs is Needs.SAMPLED_LABELS:
        n = sum(c["sampled_labels"] for c in closure.calls)
        return CheckResult("needs", n > 0 and moved, f"sampled-labels: {n} sampled-label closure calls in {steps} "
                           f"steps, parameters moved: {moved}")
    return CheckResult("needs", moved, f"hessian: step(closure) on create_graph gradients, parameters moved: {moved}")


CHECKS: tuple[tuple[str, Callable[..., CheckResult], bool], ...] = (
    # (check name, function, needs the registry)
    ("builds", _check_builds, False),
    ("smoke", _check_smoke, True),
    ("state-dict", _check_state_dict, False),
    ("zero-grad", _check_zero_grad, False),
    ("param-groups", _check_param_groups, False),
    ("needs", _check_needs, False),
)


def check_optimizer(name: str, registry: Registry | None = None) -> list[CheckResult]:
    """Run every conformance check on optimizer `name`; never raises for the optimizer's own failures."""
    registry = registry if registry is not None else get_registry()
    if name not in registry.entries["optimizer"]:
        known = len(registry.entries["optimizer"])
        return [CheckResult("name", False, f"no optimizer {name!r} is registered ({known} are; see "
                                           "`optbench list optimizers`)")]
    entry = registry.entries["optimizer"][name]
    results: list[CheckResult] = []  # name and uniqueness: the registry enforces both at registration
    for check, fn, wants_registry in CHECKS:
        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            results.append(fn(entry, registry) if wants_registry else fn(entry))
        except Exception as exc:  # noqa: BLE001 - a plugin's exception is a failed check, not a crash
            results.append(CheckResult(check, False, f"{type(exc).__name__}: {exc}".strip()))
        finally:
            torch.random.set_rng_state(state)
    return results


def assert_optimizer_conforms(name: str, registry: Registry | None = None) -> None:
    """pytest helper: raises AssertionError listing every failed check of optimizer `name`."""
    failed = [r for r in check_optimizer(name, registry) if not r.passed]
    if failed:
        lines = "\n".join(f"  {r.check}: {r.detail}" for r in failed)
        raise AssertionError(f"optimizer {name!r} fails {len(failed)} conformance check(s):\n{lines}")
