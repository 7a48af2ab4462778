"""MNIST-1D generated here, with the published recipe (Greydanus 2020, "Scaling down deep learning").

Why our own generator: the `mnist1d` package imports matplotlib, reseeds Python's and NumPy's global random
number generators, and its `get_dataset` may download a pickle. This module draws from a private
`numpy.random.RandomState`, so it touches no global state and needs no network; with the published arguments
(5,000 samples, seed 42) it gives the published 4,000 / 1,000 train/test set, which a test checks against the
package's own generator.

The recipe, per example: take the 12-point template of its digit (whitened, shifted to start at 0, divided
by 6), append 36..60 zeros, stretch the result linearly to 72 points, scale it by a random factor in
[0.8, 1.2], roll it right by 0..47 positions, fill the zero (padding) positions with Gaussian noise of std 0.25
smoothed by a Gaussian filter of width 2, add i.i.d. noise of std 0.02 everywhere, subtract a random linear
ramp (shear, slope in [-0.375, 0.375]) and resample linearly to 40 points. Examples are made class by class,
shuffled with one permutation, and the whole set is standardised by its global mean and standard deviation.
The first 80% is the training set, the rest the test set.

The validation set (not part of the published recipe) is 1,000 more examples drawn by the same recipe from a
different seed and standardised with the published set's mean and standard deviation, so the published train
and test sets stay exactly as published and the published accuracies remain comparable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: the digits' 12-point templates, as published (rows 0..9)
TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])


@dataclass(frozen=True)
class Recipe:
    """The published generation arguments."""

    num_samples: int = 5000
    train_split: float = 0.8
    template_len: int = 12
    padding: tuple[int, int] = (36, 60)
    scale_coeff: float = 0.4
    max_translation: int = 48
    corr_noise_scale: float = 0.25
    iid_noise_scale: float = 2e-2
    shear_scale: float = 0.75
    final_seq_length: int = 40
    seed: int = 42


PUBLISHED = Recipe()
VAL_SEED = 4242  # the validation examples' seed (any seed other than the published one)
VAL_SAMPLES = 1000


@dataclass(frozen=True)
class Mnist1D:
    """float32 signals (N, 40) and int64 labels; the validation set is standardised like the published set."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def templates() -> np.ndarray:
    x = TEMPLATES - TEMPLATES.mean(1, keepdims=True)
    x = x / x.std(1, keepdims=True)
    x = x - x[:, :1]
    return x / 6.0


def _resample_rows(x: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
    """Row i's first lengths[i] values, read as samples on [0, 1], linearly interpolated at n equally spaced
    points (what np.interp does, for all rows at once)."""
    pos = np.linspace(0.0, 1.0, n)[None, :] * (lengths[:, None] - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), lengths[:, None] - 2)
    frac = pos - lo
    rows = np.arange(len(x))[:, None]
    return x[rows, lo] * (1 - frac) + x[rows, lo + 1] * frac


def _gaussian_smooth(x: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Each row convolved with a normalised Gaussian of std `sigma` cut at `truncate` sigmas, the ends mirrored
    (the edge sample repeated: d c b a | a b c d | d c b a). These are scipy.ndimage.gaussian_filter1d's
    defaults; written out here so that generating the data does not import scipy."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    padded = np.pad(x, ((0, 0), (radius, radius)), mode="symmetric")
    width = x.shape[1]
    return sum(w * padded[:, radius + o: radius + o + width] for o, w in zip(offsets, weights, strict=True))


def raw_examples(r: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Unstandardised, shuffled examples and labels. The random draws happen in the published order (per example:
    padding, scale, shift, correlated noise, i.i.d. noise, shear; then one permutation); the transforms
    themselves run on all examples at once."""
    rng = np.random.RandomState(r.seed)
    tpl = templates()
    per_class = r.num_samples // len(tpl)
    ys = np.repeat(np.arange(len(tpl)), per_class)
    n, low, high = len(ys), r.padding[0], r.padding[1]
    width = r.template_len + high
    pads, scales, shifts, shears = (np.empty(n, dtype=np.int64), np.empty(n), np.empty(n, dtype=np.int64),
                                    np.empty(n))
    corr, iid = np.empty((n, width)), np.empty((n, width))
    for i in range(n):
        pads[i] = low + int(rng.rand() * (high - low + 1))
        scales[i] = 1 + r.scale_coeff * (rng.rand() - 0.5)
        shifts[i] = rng.randint(0, r.max_translation)  # the same draw as rng.choice(max_translation)
        corr[i] = rng.randn(width)
        iid[i] = rng.randn(width)
        shears[i] = r.shear_scale * (rng.rand() - 0.5)
    order = rng.permutation(n)

    padded = np.zeros((n, r.template_len + high))
    padded[:, :r.template_len] = tpl[ys] + 1e-8  # the offset keeps the template itself non-zero
    x = _resample_rows(padded, r.template_len + pads, width) * scales[:, None]
    x = x[np.arange(n)[:, None], (np.arange(width)[None, :] - shifts[:, None]) % width]  # roll right
    smooth = _gaussian_smooth(r.corr_noise_scale * corr, sigma=2.0)
    x = np.where(x != 0, x, smooth) + r.iid_noise_scale * iid
    x = x - shears[:, None] * np.linspace(-0.5, 0.5, width)[None, :]
    x = _resample_rows(x, np.full(n, width), r.final_seq_length)
    return x[order], ys[order]


def make(r: Recipe = PUBLISHED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The published recipe's (train_x, train_y, test_x, test_y), standardised, in float64."""
    xs, ys = raw_examples(r)
    xs = (xs - xs.mean()) / xs.std()
    cut = int(len(ys) * r.train_split)
    return xs[:cut], ys[:cut], xs[cut:], ys[cut:]


@functools.lru_cache(maxsize=2)
def mnist1d(recipe: Recipe = PUBLISHED, val_samples: int = VAL_SAMPLES, val_seed: int = VAL_SEED) -> Mnist1D:
    """The published train/test sets plus a validation set from `val_seed`, as float32 / int64 arrays."""
    xs, ys = raw_examples(recipe)
    mean, std = xs.mean(), xs.std()
    cut = int(len(ys) * recipe.train_split)
    vx, vy = raw_examples(Recipe(**{**recipe.__dict__, "num_samples": val_samples, "seed": val_seed}))

    def f32(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(((a - mean) / std).astype(np.float32))

    return Mnist1D(f32(xs[:cut]), ys[:cut].astype(np.int64), f32(vx), vy.astype(np.int64),
                   f32(xs[cut:]), ys[cut:].astype(np.int64))
