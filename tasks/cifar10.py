"""CIFAR-10 from disk (the official binary or python archive, never downloaded) and a synthetic stand-in.

Why both formats: the binary version (`cifar-10-batches-bin`) is plain bytes, so reading it cannot run code;
the python version (`cifar-10-batches-py`) is what most people already have on disk. The python version is a
pickle: unpickling runs whatever the file says, so only point optbench at a copy you trust (the one from the
official archive). The binary version is preferred when both are present.

Every problem with the data on disk is one `OptbenchError` that names the directory looked in, the layout
expected and where the official archive is published. There is no silent fallback to synthetic data: the
synthetic set is used only when asked for explicitly (`synthetic=True`, `optbench run --synthetic`, or a suite
that declares it), and its rows say `dataset = "synthetic-cifar10"`.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from optbench.errors import OptbenchError

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
BIN_DIR = "cifar-10-batches-bin"
PY_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
IMAGE_BYTES = 3 * 32 * 32
RECORD_BYTES = 1 + IMAGE_BYTES  # one label byte, then 1024 red, 1024 green, 1024 blue pixel bytes
NUM_CLASSES = 10
LAYOUT = (f"<data-dir>/{BIN_DIR}/data_batch_1.bin .. data_batch_5.bin and test_batch.bin "
          f"(or <data-dir>/{PY_DIR}/data_batch_1 .. data_batch_5 and test_batch)")


@dataclass(frozen=True)
class ImageSet:
    """A labelled image classification set: uint8 images (N, C, H, W) and int64 labels (N,)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int = NUM_CLASSES
    #: a validation set, when the source has one of its own (the synthetic set); real CIFAR-10 carves it out of
    #: the training files (vision.py)
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None


def _fail(problem: str, looked_in: Path) -> OptbenchError:
    return OptbenchError(
        f"CIFAR-10: {problem} (looked in {looked_in}).",
        f"Expected layout: {LAYOUT}. Get the official archive (binary or python version) from {OFFICIAL_URL}, "
        "unpack it under --data-dir (or $OPTBENCH_DATA), or run with --synthetic for labelled synthetic data.",
    )


def read_binary_batch(path: Path, looked_in: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One file of the binary version: records of 1 label byte + 3072 pixel bytes, in channel-major order."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise _fail(f"cannot read {path.name}: {exc.strerror or exc}", looked_in) from exc
    if raw.size == 0:
        raise _fail(f"{path.name} is empty", looked_in)
    if raw.size % RECORD_BYTES:
        other = ""
        if raw.size % (RECORD_BYTES + 1) == 0:
            other = " (it splits into 3074-byte records: that is the CIFAR-100 binary format)"
        raise _fail(f"{path.name} is {raw.size} bytes, not a whole number of {RECORD_BYTES}-byte records "
                    f"(1 label byte + {IMAGE_BYTES} pixel bytes): it is truncated or not CIFAR-10{other}", looked_in)
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, path, looked_in)
    images = records[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def read_python_batch(path: Path, looked_in: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One file of the python version. It is a pickle: only load files you trust (see the module docstring)."""
    try:
        with path.open("rb") as f:
            entry = pickle.load(f, encoding="bytes")  # noqa: S301 - documented: the python version must be trusted
    except OSError as exc:
        raise _fail(f"cannot read {path.name}: {exc.strerror or exc}", looked_in) from exc
    except Exception as exc:  # a truncated or foreign pickle raises many different types
        raise _fail(f"{path.name} is not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc})",
                    looked_in) from exc
    if not isinstance(entry, dict) or b"data" not in entry or b"labels" not in entry:
        raise _fail(f"{path.name} is not a CIFAR-10 python batch (no b'data' and b'labels' entries)", looked_in)
    data = np.asarray(entry[b"data"])
    labels = np.asarray(entry[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES or data.shape[0] != labels.shape[0]:
        raise _fail(f"{path.name} holds data of shape {data.shape} ({data.dtype}) for {labels.shape[0]} labels, "
                    f"expected uint8 (N, {IMAGE_BYTES}) with N labels", looked_in)
    _check_labels(labels, path, looked_in)
    return torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, 32, 32))), torch.from_numpy(labels)


def _check_labels(labels: np.ndarray, path: Path, looked_in: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise _fail(f"{path.name} has labels outside 0..9 (found {labels.min()}..{labels.max()}): "
                    "it is not CIFAR-10", looked_in)


def _locate(data_dir: Path) -> tuple[Path, str] | None:
    """(directory, 'bin' | 'py') of the first CIFAR-10 version found: under data_dir, or data_dir itself."""
    for sub, kind, probe in ((BIN_DIR, "bin", "data_batch_1.bin"), (PY_DIR, "py", "data_batch_1")):
        for d in (data_dir / sub, data_dir):
            if (d / probe).is_file():
                return d, kind
    return None


def load_cifar10(data_dir: Path | str | None) -> ImageSet:
    """The official CIFAR-10 train (5 files) and test split from `data_dir`, as uint8 (N, 3, 32, 32) tensors."""
    if data_dir is None:
        raise OptbenchError(
            "CIFAR-10 needs a data directory, and none was given.",
            f"Pass --data-dir DIR (or set $OPTBENCH_DATA) with {LAYOUT}; the official archive is at "
            f"{OFFICIAL_URL}. Or run with --synthetic for labelled synthetic data.",
        )
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise _fail("the data directory does not exist", data_dir)
    found = _locate(data_dir)
    if found is None:
        raise _fail(f"found neither {BIN_DIR}/data_batch_1.bin nor {PY_DIR}/data_batch_1", data_dir)
    where, kind = found
    suffix, reader = (".bin", read_binary_batch) if kind == "bin" else ("", read_python_batch)
    parts = []
    for stem in (*TRAIN_FILES, TEST_FILE):
        path = where / f"{stem}{suffix}"
        if not path.is_file():
            raise _fail(f"{path.name} is missing", where)
        parts.append(reader(path, where))
    counts = {len(y) for _, y in parts[:-1]}
    if len(counts) != 1:  # the official files hold 10,000 records each; a file cut at a record boundary differs
        sizes = ", ".join(f"{s}: {len(y)}" for s, (_, y) in zip(TRAIN_FILES, parts[:-1], strict=True))
        raise _fail(f"the training files hold different numbers of images ({sizes}): one is truncated", where)
    train_x = torch.cat([x for x, _ in parts[:-1]])
    train_y = torch.cat([y for _, y in parts[:-1]])
    test_x, test_y = parts[-1]
    return ImageSet(f"cifar10-{kind}", train_x, train_y, test_x, test_y)


def synthetic_cifar10(n_train: int, n_test: int, seed: int = 20250301, n_val: int = 0) -> ImageSet:
    """A deterministic, learnable CIFAR-shaped set: one smooth random colour pattern per class, shifted by a few
    pixels and buried in pixel noise, so a network has to learn translation-robust class features.

    The same (n_train, n_test, seed) gives the same bytes on every machine (CPU generator, fixed order); the
    `n_val` validation images are drawn after the test images, so asking for them changes neither of the others.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(NUM_CLASSES, 3, 4, 4, generator=gen)
    patterns = torch.nn.functional.interpolate(coarse, size=(40, 40), mode="bicubic", align_corners=False)
    patterns = (patterns - patterns.mean()) / patterns.std()

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        xs = []
        for start in range(0, n, 4096):  # chunks keep the float temporaries small for the 50k full set
            y = labels[start:start + 4096]
            m = len(y)
            oy = torch.randint(0, 9, (m,), generator=gen)
            ox = torch.randint(0, 9, (m,), generator=gen)
            rows = (oy[:, None] + torch.arange(32))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(32))[:, None, None, :]
            img = patterns[y[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
            img = img * (0.5 + torch.rand(m, 1, 1, 1, generator=gen)) + 1.2 * torch.randn(img.shape, generator=gen)
            xs.append((128 + 40 * img).round().clamp_(0, 255).to(torch.uint8))
        return torch.cat(xs), labels

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    val_x, val_y = make(n_val) if n_val else (None, None)
    return ImageSet("synthetic-cifar10", train_x, train_y, test_x, test_y, val_x=val_x, val_y=val_y)
