"""Byte-level text corpora for the language-model task: the Python standard library's own sources (present on
every machine, no download) and a corpus the user supplies with --data-dir.

Why the standard library: it is real, varied text (code, docstrings, comments) that every Python installation
carries. It differs between Python versions, so the rows name the version and a SHA-256 of the exact bytes
read (file names and contents) in `dataset`; two results are comparable only when that hash matches.

The stdlib corpus is every `*.py` file directly in the standard library directory (`sysconfig`'s "stdlib"
path, not its subpackages), in sorted order. Whole files are assigned to splits by position in that order:
every 20th file starting at the 19th goes to validation, every 20th starting at the 20th to test, the rest to
training, so each split sees many modules rather than the alphabet's tail.

User corpora (--data-dir), read as raw bytes, never decoded:
- `<data-dir>/char-lm/train.txt`, `val.txt` and `test.txt`: any text, split as the user chose; or
- `<data-dir>/enwik8`: the Hutter-prize file (the first 100,000,000 bytes of an English Wikipedia dump), split
  the customary way: the first 90 MB train, the next 5 MB validation, the last 5 MB test.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optbench.errors import OptbenchError

SPLIT_EVERY = 20
LAYOUT = "<data-dir>/char-lm/train.txt, val.txt and test.txt, or <data-dir>/enwik8"
ENWIK8_SPLIT = (90_000_000, 5_000_000, 5_000_000)


@dataclass(frozen=True)
class Corpus:
    """uint8 byte arrays per split and the name the rows carry in `dataset`."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stdlib_files(root: Path | None = None) -> list[Path]:
    root = Path(root or sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.is_file())


@functools.lru_cache(maxsize=2)
def stdlib_corpus(root: str | None = None) -> Corpus:
    """The standard library's top-level sources, split by file, named with the Python version and a hash."""
    files = stdlib_files(Path(root) if root else None)
    if not files:
        raise OptbenchError(f"found no *.py files in the Python standard library directory {root or 'of sysconfig'}.",
                            "This Python installation lacks its library sources; run char-lm with --preset full "
                            f"and a corpus under --data-dir ({LAYOUT}).")
    digest = hashlib.sha256()
    parts: dict[str, list[bytes]] = {"train": [], "val": [], "test": []}
    for i, path in enumerate(files):
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        slot = i % SPLIT_EVERY
        split = "val" if slot == SPLIT_EVERY - 2 else "test" if slot == SPLIT_EVERY - 1 else "train"
        parts[split].append(data)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    name = f"python{version}-stdlib-sha256:{digest.hexdigest()[:16]}"
    return Corpus(name, *(np.frombuffer(b"\n".join(parts[s]), dtype=np.uint8).copy() for s in ("train", "val", "test")))


def _fail(problem: str, data_dir: Path) -> OptbenchError:
    return OptbenchError(f"char-lm full: {problem} (looked in {data_dir}).",
                         f"Expected {LAYOUT}; nothing is downloaded.")


@functools.lru_cache(maxsize=2)
def user_corpus(data_dir: str | None, min_bytes: int = 1024) -> Corpus:
    """The corpus under --data-dir; every problem is one OptbenchError naming the layout."""
    if data_dir is None:
        raise OptbenchError("char-lm's full preset trains on a corpus you supply, and no --data-dir was given.",
                            f"Pass --data-dir (or $OPTBENCH_DATA) holding {LAYOUT}.")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise _fail("the data directory does not exist", root)
    split_dir = root / "char-lm"
    if split_dir.is_dir():
        arrays = []
        for split in ("train", "val", "test"):
            path = split_dir / f"{split}.txt"
            if not path.is_file():
                raise _fail(f"char-lm/{split}.txt is missing", root)
            data = np.fromfile(path, dtype=np.uint8)
            if len(data) < min_bytes:
                raise _fail(f"char-lm/{split}.txt holds {len(data)} bytes, fewer than the {min_bytes} needed", root)
            arrays.append(data)
        return Corpus(f"user-corpus:{_digest(arrays)}", *arrays)
    enwik8 = root / "enwik8"
    if enwik8.is_file():
        data = np.fromfile(enwik8, dtype=np.uint8)
        if len(data) != sum(ENWIK8_SPLIT):
            raise _fail(f"enwik8 is {len(data):,} bytes, not {sum(ENWIK8_SPLIT):,}: it is truncated or not enwik8",
                        root)
        a, b = ENWIK8_SPLIT[0], ENWIK8_SPLIT[0] + ENWIK8_SPLIT[1]
        return Corpus("enwik8", data[:a], data[a:b], data[b:])
    raise _fail("found neither char-lm/ nor enwik8", root)


def _digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(len(a).to_bytes(8, "little") + a.tobytes())
    return "sha256:" + h.hexdigest()[:16]
