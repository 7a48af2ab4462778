"""A TaskInstance for supervised classification: a model, a `DeviceImages` data path, cross-entropy.

Shared by the vision tasks and the digits task so that the loss, the sampled-label loss (Sophia-G), the
held-out evaluation and the curvature batch mean the same thing on every classification task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from optbench import Target, TaskInstance
from optbench.errors import OptbenchError

from .image_batches import DeviceImages

AMP_CHOICES = (None, "bf16")


def check_amp(amp: Any) -> str | None:
    if amp in ("", "none", "off", False):
        amp = None
    if amp not in AMP_CHOICES:
        raise OptbenchError(f"amp={amp!r} is not supported.", "Use amp='bf16' (bfloat16 autocast) or leave it off.")
    return amp


class ClassifierTask(TaskInstance):
    """Cross-entropy training of `model` on `data`; `amp='bf16'` autocasts the forward pass of training steps.

    Evaluation and the curvature loss run in float32 without autocast: the HVPs the geometry metrics take
    must not carry bf16 rounding noise, and reported quality must not depend on the amp setting.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: DeviceImages,
        *,
        dataset: str,
        budget: int,
        eval_every: int,
        target: Target | None,
        seed: int,
        amp: str | None = None,
    ) -> None:
        self.device = data.device
        self.model = model.to(self.device)
        if data.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.data = data
        self.dataset = dataset
        self.budget = budget
        self.eval_every = eval_every
        self.target = target
        self.batch_size = data.batch_size
        self.amp = check_amp(amp)
        self._label_gen = torch.Generator(device=self.device).manual_seed(seed + 7919)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            out = self.model(x)
        return out.float()

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.data.batches()

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self._logits(x), y)

    def sampled_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy against labels drawn from the model's own softmax (the Gauss-Newton-Bartlett estimator
        Sophia-G uses); the draw is seeded per trial."""
        x, _ = batch
        logits = self._logits(x)
        with torch.no_grad():
            sampled = torch.multinomial(logits.softmax(-1), 1, generator=self._label_gen).squeeze(1)
        return F.cross_entropy(logits, sampled)

    def sampled_examples(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        """`sampled_loss` is a batch mean: Sophia-G's B is the batch size."""
        return len(batch[1])

    def evaluate(self) -> dict[str, float]:
        """`val_loss`/`val_accuracy` (what targets and tuning look at) and `test_loss`/`test_accuracy` (reported)."""
        was_training = self.model.training
        self.model.eval()
        out: dict[str, float] = {}
        try:
            with torch.no_grad():
                for split in self.data.splits:
                    total, correct, count = 0.0, 0, 0
                    for x, y in self.data.held_out_batches(split):
                        logits = self.model(x).float()
                        total += float(F.cross_entropy(logits, y, reduction="sum"))
                        correct += int((logits.argmax(1) == y).sum())
                        count += len(y)
                    out[f"{split}_loss"], out[f"{split}_accuracy"] = total / count, correct / count
        finally:
            self.model.train(was_training)
        return out

    def curvature_loss(self) -> torch.Tensor:
        """Mean cross-entropy on the fixed curvature batch in eval mode (batch-norm running statistics), float32.
        The graph is built before the mode is restored, so HVPs through it see eval-mode behaviour."""
        was_training = self.model.training
        self.model.eval()
        try:
            x, y = self.data.curvature_batch
            return F.cross_entropy(self.model(x).float(), y)
        finally:
            self.model.train(was_training)
