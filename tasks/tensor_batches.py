"""A data path for small, already-normalised float datasets held whole on the device (MNIST-1D).

It offers what `ClassifierTask` reads from `DeviceImages` (shuffled training batches from a seeded generator,
validation and test sets in chunks, a fixed curvature batch) without the uint8 image handling.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .image_batches import CURVATURE_SEED


class DeviceTensors:
    """Inputs (N, ...) float32 and int64 labels for train / val / test, on `device`."""

    channels_last = False

    def __init__(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        batch_size: int,
        seed: int,
        curvature_size: int = 256,
        eval_batch_size: int = 1000,
    ) -> None:
        if batch_size > len(train[1]):
            raise ValueError(f"batch size {batch_size} is larger than the training set ({len(train[1])} examples)")
        self.device = torch.device(device)
        self.sets = {name: (x.to(self.device, torch.float32).contiguous(), y.to(self.device, torch.int64))
                     for name, (x, y) in (("train", train), ("val", val), ("test", test))}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        x, y = self.sets["train"]
        pick = torch.Generator().manual_seed(CURVATURE_SEED)
        idx = torch.randperm(len(y), generator=pick)[: min(curvature_size, len(y))].to(self.device)
        self.curvature_batch = (x[idx], y[idx])

    splits = ("val", "test")

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches; each epoch a fresh permutation, the incomplete tail dropped."""
        x, y = self.sets["train"]
        n, bs = len(y), self.batch_size
        while True:
            perm = torch.randperm(n, generator=self.gen, device=self.device)
            for start in range(0, n - bs + 1, bs):
                idx = perm[start:start + bs]
                yield x[idx], y[idx]

    def held_out_batches(self, split: str = "test") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.sets[split]
        for start in range(0, len(y), self.eval_batch_size):
            yield x[start:start + self.eval_batch_size], y[start:start + self.eval_batch_size]
