"""CIFAR-10 loader on tiny files in the official formats, its errors, the synthetic set and the on-device
augmentation. Everything here is fast (no model is trained)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from optbench.tasks.cifar10 import (
    BIN_DIR,
    OFFICIAL_URL,
    PY_DIR,
    RECORD_BYTES,
    load_cifar10,
    synthetic_cifar10,
)
from optbench.tasks.image_batches import DeviceImages

from optbench.errors import OptbenchError

PER_FILE = 6  # images per fixture file (the official files hold 10,000)


def fixture_records(file_index: int, n: int = PER_FILE) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic labels and (n, 3072) pixel rows; pixel values encode (file, image, position)."""
    rng = np.random.default_rng(file_index)
    labels = ((np.arange(n) + file_index) % 10).astype(np.uint8)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return labels, pixels


def write_binary(root: Path, n_per_file: int = PER_FILE) -> Path:
    d = root / BIN_DIR
    d.mkdir(parents=True)
    for i, stem in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels, pixels = fixture_records(i, n_per_file)
        records = np.concatenate([labels[:, None], pixels], axis=1)
        assert records.shape[1] == RECORD_BYTES
        (d / f"{stem}.bin").write_bytes(records.tobytes())
    return d


def write_python(root: Path) -> Path:
    d = root / PY_DIR
    d.mkdir(parents=True)
    for i, stem in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels, pixels = fixture_records(i)
        with (d / stem).open("wb") as f:
            pickle.dump({b"data": pixels, b"labels": [int(v) for v in labels], b"batch_label": stem.encode()}, f)
    return d


def test_binary_format_shapes_dtypes_labels_and_pixel_order(tmp_path):
    write_binary(tmp_path)
    data = load_cifar10(tmp_path)
    assert data.name == "cifar10-bin"
    assert data.train_x.shape == (5 * PER_FILE, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (PER_FILE, 3, 32, 32) and data.test_x.dtype == torch.uint8
    assert data.train_y.dtype == torch.int64 and data.test_y.dtype == torch.int64
    expected_train = np.concatenate([fixture_records(i)[0] for i in range(5)])
    assert data.train_y.tolist() == expected_train.tolist()
    assert data.test_y.tolist() == fixture_records(5)[0].tolist()
    # channel-major: bytes 0..1023 are red row by row, then green, then blue
    _, pixels = fixture_records(1)
    img = data.train_x[PER_FILE + 2]
    row = pixels[2]
    assert int(img[0, 0, 0]) == row[0]
    assert int(img[0, 0, 31]) == row[31]
    assert int(img[0, 1, 0]) == row[32]
    assert int(img[1, 0, 0]) == row[1024]
    assert int(img[2, 31, 31]) == row[3071]


def test_python_format_reads_the_same_images(tmp_path):
    write_binary(tmp_path / "a")
    write_python(tmp_path / "b")
    from_bin, from_py = load_cifar10(tmp_path / "a"), load_cifar10(tmp_path / "b")
    assert from_py.name == "cifar10-py"
    assert torch.equal(from_bin.train_x, from_py.train_x) and torch.equal(from_bin.train_y, from_py.train_y)
    assert torch.equal(from_bin.test_x, from_py.test_x) and torch.equal(from_bin.test_y, from_py.test_y)


def test_binary_preferred_and_batches_dir_itself_accepted(tmp_path):
    write_python(tmp_path)
    bin_dir = write_binary(tmp_path)
    assert load_cifar10(tmp_path).name == "cifar10-bin"
    assert load_cifar10(bin_dir).train_x.shape[0] == 5 * PER_FILE


def _error(data_dir) -> OptbenchError:
    with pytest.raises(OptbenchError) as info:
        load_cifar10(data_dir)
    return info.value


def _assert_helpful(err: OptbenchError, looked_in: Path) -> None:
    text = str(err)
    assert str(looked_in) in err.message
    assert OFFICIAL_URL in err.hint
    assert "data_batch_1.bin" in err.hint and "test_batch" in err.hint
    assert "Traceback" not in text


def test_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    err = _error(missing)
    assert "does not exist" in err.message
    _assert_helpful(err, missing)


def test_no_data_dir_given():
    err = _error(None)
    assert "--data-dir" in err.hint and OFFICIAL_URL in err.hint and "--synthetic" in err.hint


def test_directory_without_cifar(tmp_path):
    (tmp_path / "something_else.txt").write_text("hi")
    err = _error(tmp_path)
    assert "found neither" in err.message
    _assert_helpful(err, tmp_path)


def test_truncated_file(tmp_path):
    d = write_binary(tmp_path)
    path = d / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    err = _error(tmp_path)
    assert "data_batch_3.bin" in err.message and "truncated" in err.message
    _assert_helpful(err, d)


def test_file_cut_at_a_record_boundary(tmp_path):
    d = write_binary(tmp_path)
    path = d / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-RECORD_BYTES])
    err = _error(tmp_path)
    assert "different numbers of images" in err.message and "data_batch_2: 5" in err.message


def test_wrong_record_size(tmp_path):
    d = write_binary(tmp_path)
    # CIFAR-100 binary records: coarse label, fine label, 3072 pixels
    (d / "test_batch.bin").write_bytes(np.zeros((7, RECORD_BYTES + 1), dtype=np.uint8).tobytes())
    err = _error(tmp_path)
    assert "test_batch.bin" in err.message and "3073-byte records" in err.message and "CIFAR-100" in err.message
    _assert_helpful(err, d)


def test_missing_test_file_and_bad_labels(tmp_path):
    d = write_binary(tmp_path / "a")
    (d / "test_batch.bin").unlink()
    assert "test_batch.bin is missing" in _error(tmp_path / "a").message
    d = write_binary(tmp_path / "b")
    raw = bytearray((d / "data_batch_1.bin").read_bytes())
    raw[0] = 42
    (d / "data_batch_1.bin").write_bytes(bytes(raw))
    assert "labels outside 0..9" in _error(tmp_path / "b").message


def test_malformed_python_batch(tmp_path):
    d = write_python(tmp_path)
    (d / "data_batch_4").write_bytes(b"\x80\x04not a pickle")
    err = _error(tmp_path)
    assert "data_batch_4" in err.message
    _assert_helpful(err, d)
    with (d / "data_batch_4").open("wb") as f:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, f)
    assert "expected uint8 (N, 3072)" in _error(tmp_path).message


def test_synthetic_is_deterministic_labelled_and_balanced():
    a, b = synthetic_cifar10(300, 50), synthetic_cifar10(300, 50)
    assert a.name == "synthetic-cifar10"
    assert a.train_x.shape == (300, 3, 32, 32) and a.train_x.dtype == torch.uint8
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert set(a.train_y.tolist()) == set(range(10))
    assert 20 < float(a.train_x.float().std()) < 100  # neither blank nor saturated


def _images(seed: int, augment: bool = True) -> DeviceImages:
    data = synthetic_cifar10(64, 16)
    return DeviceImages(data.train_x, data.train_y, data.test_x, data.test_y, torch.device("cpu"),
                        batch_size=16, seed=seed, augment=augment)


def test_normalisation_uses_training_statistics():
    images = _images(0, augment=False)
    x = images.normalise(images.train_x)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_crop_flip_is_a_padded_crop_or_its_mirror_and_seeded():
    images = _images(3)
    x = images.train_x[:12]
    out = images.crop_flip(x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flips = 0
    for i in range(len(x)):
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(2) if f else c)(padded[i, :, dy:dy + 32, dx:dx + 32]))]
        assert matches, f"image {i} is not a 4-px-padded crop of its source, mirrored or not"
        flips += matches[0][2]
    again = _images(3).crop_flip(x)
    assert torch.equal(out, again)
    assert not torch.equal(out, _images(4).crop_flip(x))


def test_batches_cover_an_epoch_without_repeats():
    images = _images(0, augment=False)
    stream = images.batches()
    seen = torch.cat([next(stream)[1] for _ in range(4)])  # 4 batches of 16 = one epoch of 64
    assert sorted(seen.tolist()) == sorted(images.train_y.tolist())
