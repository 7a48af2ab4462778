"""The image data path: the whole dataset lives on the device as one uint8 tensor, and every batch is cut,
augmented and normalised there with batched tensor ops driven by a seeded `torch.Generator`.

Why: a DataLoader with per-sample Python transforms and worker processes is what usually limits a small
model on a GPU, and it makes step times depend on the host. Here one training batch is a handful of
kernels (gather, one indexed crop+flip, one fused multiply-add), identical on CPU and CUDA, with no per-sample
Python and no worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

#: fixes which training images form the curvature batch, the same for every trial of a task
CURVATURE_SEED = 20250302


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], in float64 chunks (no full float copy)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].to(torch.float64).div_(255).transpose(0, 1).reshape(x.shape[1], -1)
        total += part.sum(1)
        squares += part.square().sum(1)
    count = x.numel() / x.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


class DeviceImages:
    """Training batches (shuffled each epoch, optionally random-crop + horizontal-flip augmented), the validation
    and test sets in chunks, and a fixed curvature batch, all normalised with the training set's per-channel mean
    and std. The validation set is what tuning selects on and targets are measured on; the test set is reported."""

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        device: torch.device,
        batch_size: int,
        seed: int,
        augment: bool = True,
        pad: int = 4,
        channels_last: bool = False,
        eval_batch_size: int = 1000,
        curvature_size: int = 128,
        val_x: torch.Tensor | None = None,
        val_y: torch.Tensor | None = None,
    ) -> None:
        if train_x.dtype != torch.uint8 or test_x.dtype != torch.uint8:
            raise TypeError("DeviceImages holds uint8 images")
        if batch_size > len(train_y):
            raise ValueError(f"batch size {batch_size} is larger than the training set ({len(train_y)} images)")
        self.device = torch.device(device)
        self.train_x = train_x.to(self.device).contiguous()
        self.train_y = train_y.to(self.device, torch.int64)
        self.test_x = test_x.to(self.device).contiguous()
        self.test_y = test_y.to(self.device, torch.int64)
        self.val_x = val_x.to(self.device).contiguous() if val_x is not None else None
        self.val_y = val_y.to(self.device, torch.int64) if val_y is not None else None
        self.batch_size = batch_size
        self.augment = augment
        self.pad = pad
        self.channels_last = channels_last
        self.eval_batch_size = eval_batch_size
        mean, std = channel_stats(self.train_x)
        # x_norm = (x / 255 - mean) / std = x * scale + shift, one fused op per batch
        self._scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        self._shift = (-mean / std).view(1, -1, 1, 1)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        pick = torch.Generator().manual_seed(CURVATURE_SEED)
        idx = torch.randperm(len(self.train_y), generator=pick)[: min(curvature_size, len(self.train_y))]
        idx = idx.to(self.device)
        self.curvature_batch = (self.normalise(self.train_x[idx]), self.train_y[idx])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addcmul(self._shift, x.float(), self._scale)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        """Random crop after zero-padding by `pad` pixels, and a random horizontal flip, in one indexed gather."""
        b, c, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b,), generator=self.gen, device=self.device)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=self.gen, device=self.device)
        flip = torch.rand(b, generator=self.gen, device=self.device) < 0.5
        rows = dy[:, None] + torch.arange(h, device=self.device)
        cols = dx[:, None] + torch.arange(w, device=self.device)
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # reading the crop's columns backwards flips it
        return padded[
            torch.arange(b, device=self.device)[:, None, None, None],
            torch.arange(c, device=self.device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (images, labels) batches; each epoch is a fresh permutation, the incomplete tail dropped."""
        n, bs = len(self.train_y), self.batch_size
        while True:
            perm = torch.randperm(n, generator=self.gen, device=self.device)
            for start in range(0, n - bs + 1, bs):
                idx = perm[start:start + bs]
                x = self.train_x[idx]
                if self.augment:
                    x = self.crop_flip(x)
                yield self.normalise(x), self.train_y[idx]

    @property
    def splits(self) -> tuple[str, ...]:
        """The held-out splits this data has: ("val", "test"), or ("test",) when no validation set was given."""
        return ("val", "test") if self.val_y is not None else ("test",)

    def held_out_batches(self, split: str = "test") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation or test set in chunks of `eval_batch_size`, normalised like training batches."""
        x, y = (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)
        if x is None or y is None:
            raise ValueError(f"this data has no {split!r} split")
        for start in range(0, len(y), self.eval_batch_size):
            end = start + self.eval_batch_size
            yield self.normalise(x[start:end]), y[start:end]

    def test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.held_out_batches("test")
