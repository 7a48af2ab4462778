"""The closure protocol of `Needs`, in one place: the runner and the conformance kit (optbench.testing) both
drive `optimizer.step(closure)` through this class, so a plugin checked by the kit sees exactly what it will
see in a benchmark run.

Protocol: before `step` the loss is evaluated at the current iterate (and back-propagated for every kind but
`LOSS_ONLY`; with `create_graph=True` for `HESSIAN`), then `step(closure)` gets a callable
`closure(backward=True, create_graph=False, sampled_labels=False, fresh_batch=False) -> loss` that zeroes the
gradients and re-evaluates the loss (and gradients) at the *current* parameters on the *same* batch, or, with
`fresh_batch=True`, first draws the next training batch from the run's own stream (the one the runner takes its
per-step batches from, so the data an optimizer consumes inside `step` is the data the next steps do not see
again; Entropy-SGD's inner loop needs this). Every forward and backward pass, and every batch drawn inside
`step`, is counted so "per step" comparisons between optimizers are fair.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from optbench.specs import Needs, TaskInstance


class StepClosure:
    """Callable closure over one task's current batch that counts passes (`passes["forward"/"backward"]`).

    `next_batch()` before each step takes the step's batch from the stream (`stream`, by default the task's own
    `batches()`, opened on first use); `before_step(needs)` does the runner's pre-step evaluation.
    With `record=True`, `calls` keeps the keyword arguments of every call the optimizer makes (the conformance
    checks read it; the runner does not record, so long runs do not grow a list).
    """

    def __init__(self, task: TaskInstance, params: Sequence[torch.Tensor], record: bool = False,
                 stream: Iterator[Any] | None = None) -> None:
        self.task = task
        self.params = list(params)
        self.batch: Any = None
        self.stream = stream
        self.passes = {"forward": 0, "backward": 0}
        self.fresh_batches = 0  # batches drawn inside step by closure(fresh_batch=True)
        self.record = record
        self.calls: list[dict[str, bool]] = []

    def next_batch(self) -> Any:
        """Advance to the next training batch of the run's stream and make it the current one."""
        if self.stream is None:
            self.stream = iter(self.task.batches())
        self.batch = next(self.stream)
        return self.batch

    def evaluate(self, backward: bool = True, create_graph: bool = False, sampled_labels: bool = False) -> torch.Tensor:
        """Zero the gradients, evaluate the loss on the current batch and (optionally) back-propagate it."""
        for p in self.params:
            p.grad = None
        loss = self.task.sampled_loss(self.batch) if sampled_labels else self.task.loss(self.batch)
        self.passes["forward"] += 1
        if backward:
            loss.backward(create_graph=create_graph)
            self.passes["backward"] += 1
        return loss

    def __call__(self, backward: bool = True, create_graph: bool = False, sampled_labels: bool = False,
                 fresh_batch: bool = False) -> torch.Tensor:
        if self.record:
            self.calls.append({"backward": backward, "create_graph": create_graph, "sampled_labels": sampled_labels,
                               "fresh_batch": fresh_batch})
        if fresh_batch:
            self.next_batch()
            self.fresh_batches += 1
        return self.evaluate(backward=backward, create_graph=create_graph, sampled_labels=sampled_labels)

    @property
    def sampled_examples(self) -> int:
        """How many examples the sampled-label loss on the current batch averages over (the task says; 1 for a
        summed loss): Sophia-G scales its estimate by it."""
        count = getattr(self.task, "sampled_examples", None)
        return int(count(self.batch)) if count is not None else 1

    def for_step(self, needs: Needs | str) -> StepClosure | None:
        """What `step` receives: no closure for GRADIENT optimizers. torch.optim-style steps call any closure they
        are given, which would silently double their forward/backward passes after the pre-step evaluation."""
        return None if Needs(needs) is Needs.GRADIENT else self

    def before_step(self, needs: Needs | str) -> torch.Tensor:
        """The evaluation at the current iterate that precedes `step`: gradients for all kinds but LOSS_ONLY."""
        needs = Needs(needs)
        return self.evaluate(backward=needs is not Needs.LOSS_ONLY, create_graph=needs is Needs.HESSIAN)
