"""char-lm: the byte-level transformer task, its stdlib corpus (named by version and hash) and the user corpus
read from --data-dir in its real on-disk layouts, with one clear sentence for every bad directory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from optbench.tasks import char_lm, text_corpus
from task_checks import check_task_instance

from optbench.errors import OptbenchError


def _fake_stdlib(root, n=40):
    root.mkdir()
    for i in range(n):
        (root / f"mod{i:02d}.py").write_text(f'"""module {i}"""\n' + "x = 1\n" * (i + 1))
    (root / "notes.txt").write_text("not python")
    return root


def test_stdlib_corpus_splits_by_file_and_hashes_the_bytes(tmp_path):
    root = _fake_stdlib(tmp_path / "lib")
    corpus = text_corpus.stdlib_corpus(str(root))
    val = b"\n".join((root / f"mod{i:02d}.py").read_bytes() for i in (18, 38))
    test = b"\n".join((root / f"mod{i:02d}.py").read_bytes() for i in (19, 39))
    assert corpus.val.tobytes() == val and corpus.test.tobytes() == test
    assert b"not python" not in corpus.train.tobytes() and b"module 0" in corpus.train.tobytes()
    assert corpus.name.startswith("python3.") and "sha256:" in corpus.name
    (root / "mod05.py").write_text("changed")
    text_corpus.stdlib_corpus.cache_clear()
    assert text_corpus.stdlib_corpus(str(root)).name != corpus.name  # a different library, a different name


def test_smoke_task_conforms_on_the_real_stdlib():
    quality = check_task_instance(char_lm.build, "smoke")
    assert {"val_perplexity", "test_bits_per_byte"} <= set(quality)
    task = char_lm.build("smoke", 0, "cpu")
    assert task.dataset.startswith("python") and not task.dataset.startswith("synthetic")
    assert 0 < quality["val_loss"] < 6.0  # near log(256) = 5.55 at initialisation


def _write_split_corpus(root, sizes=(4000, 1500, 1500)):
    d = root / "char-lm"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        (d / f"{split}.txt").write_bytes(rng.integers(32, 127, n, dtype=np.uint8).tobytes())
    return d


def test_user_corpus_in_train_val_test_files_trains(tmp_path):
    d = _write_split_corpus(tmp_path)
    corpus = text_corpus.user_corpus(str(tmp_path))
    assert corpus.val.tobytes() == (d / "val.txt").read_bytes() and corpus.name.startswith("user-corpus:sha256:")
    cfg = dataclasses.replace(char_lm.CONFIGS["smoke"], budget=2)
    task = char_lm.CharLM(cfg, corpus, seed=0, device=torch.device("cpu"))
    loss = task.loss(next(task.batches()))
    loss.backward()
    assert torch.isfinite(loss) and set(task.evaluate()) >= {"val_loss", "test_loss"}


def test_enwik8_layout_is_split_90_5_5(tmp_path, monkeypatch):
    monkeypatch.setattr(text_corpus, "ENWIK8_SPLIT", (900, 50, 50))  # the real file is 100 MB; same layout
    (tmp_path / "enwik8").write_bytes(bytes(range(256)) * 3 + bytes(232))
    corpus = text_corpus.user_corpus(str(tmp_path))
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (900, 50, 50) and corpus.name == "enwik8"


@pytest.mark.parametrize("layout, problem", [
    ("empty", "found neither char-lm/ nor enwik8"),
    ("missing-test", "char-lm/test.txt is missing"),
    ("tiny-val", "char-lm/val.txt holds 10 bytes"),
    ("short-enwik8", "enwik8 is 1,000 bytes"),
])
def test_bad_data_dir_is_one_sentence(tmp_path, cli, layout, problem):
    text_corpus.user_corpus.cache_clear()
    if layout == "missing-test":
        (_write_split_corpus(tmp_path) / "test.txt").unlink()
    elif layout == "tiny-val":
        (_write_split_corpus(tmp_path) / "val.txt").write_bytes(b"0123456789")
    elif layout == "short-enwik8":
        (tmp_path / "enwik8").write_bytes(bytes(1000))
    with pytest.raises(OptbenchError) as info:
        text_corpus.user_corpus(str(tmp_path))
    assert problem in info.value.message and str(tmp_path) in info.value.message
    out = cli("run", "-o", "adamw", "-t", "char-lm", "--preset", "full", "--data-dir", str(tmp_path),
              "--no-metrics", "--results", str(tmp_path / "results"))
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert problem in out.output


def test_full_preset_without_data_dir_says_what_to_pass(monkeypatch):
    monkeypatch.delenv("OPTBENCH_DATA", raising=False)
    with pytest.raises(OptbenchError, match="no --data-dir was given"):
        char_lm.build("full", 0, "cpu", None)
