"""A task small enough to run hundreds of trials in a test, with separate validation and test splits whose
verdicts DISAGREE on purpose: validation targets are X·w*, test targets are X·(-w*). Training (on X·w*) moves
w towards w*, so a larger learning rate lowers the validation loss and raises the test loss within the budget.
A tuner that selects on validation picks the largest stable lr; one that peeks at test picks the smallest."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from optbench import Preset, TaskInstance, TaskSpec, hookimpl

DIM, N, BUDGET = 4, 64, 20


class Tiny(TaskInstance):
    dataset = "synthetic-tiny-regression"
    budget = BUDGET
    eval_every = 10
    batch_size = N

    def __init__(self, seed: int) -> None:
        g = torch.Generator().manual_seed(1234)  # the data never depends on the seed
        self.w_star = torch.randn(DIM, generator=g, dtype=torch.float64)
        self.x_train, self.x_val, self.x_test = (torch.randn(N, DIM, generator=g, dtype=torch.float64)
                                                 for _ in range(3))
        init = torch.Generator().manual_seed(seed)
        self.w = (0.01 * torch.randn(DIM, generator=init, dtype=torch.float64)).requires_grad_()

    def parameters(self) -> list[torch.Tensor]:
        return [self.w]

    def batches(self) -> Iterator[torch.Tensor]:
        while True:
            yield self.x_train

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        return ((batch @ self.w - batch @ self.w_star) ** 2).mean()

    def evaluate(self) -> dict[str, float]:
        val = ((self.x_val @ self.w - self.x_val @ self.w_star) ** 2).mean()
        test = ((self.x_test @ self.w + self.x_test @ self.w_star) ** 2).mean()
        return {"val_loss": float(val), "test_loss": float(test)}

    def curvature_loss(self) -> torch.Tensor:
        return self.loss(self.x_train)


class NoValidation(Tiny):
    def evaluate(self) -> dict[str, float]:
        return {"test_loss": super().evaluate()["test_loss"]}


class TinyPlugin:
    @hookimpl
    def optbench_register_tasks(self):
        presets = {"smoke": Preset("a 20-step regression")}
        return [TaskSpec("tiny-regression", lambda preset, seed, device, data_dir=None, **o: Tiny(seed), presets,
                         suites=("tiny",)),
                TaskSpec("tiny-no-val", lambda preset, seed, device, data_dir=None, **o: NoValidation(seed), presets,
                         suites=("tiny",))]


def tiny_registry(*extra):
    from optbench.plugins import torch_optim

    from optbench.registry import load_registry

    return load_registry(extra_plugins=[("torch", torch_optim), ("tiny", TinyPlugin()), *extra], entry_points=False)
