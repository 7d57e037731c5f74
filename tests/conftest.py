"""Tiny files in the official formats, written by the tests themselves (never downloaded)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

# Under pytest-xdist (make test: one worker per core) each worker's torch takes one thread: a
# second thread beside a busy core makes a step many times slower (benchmarks/threads.py).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uint8 IDX file (LeCun's MNIST format), gzipped when the name ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_cifar_bin(path: Path, images: np.ndarray, labels: np.ndarray, coarse: bool = False) -> None:
    """CIFAR binary records: [coarse label] label, then 3,072 bytes (R, G, B planes)."""
    rows = []
    for img, y in zip(images, labels, strict=True):
        prefix = bytes([y % 20, y]) if coarse else bytes([y])
        rows.append(prefix + img.astype(np.uint8).tobytes())
    path.write_bytes(b"".join(rows))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def cifar10_dir(tmp_path, rng) -> tuple[Path, np.ndarray, np.ndarray]:
    """A data dir holding a tiny extracted CIFAR-10 binary release (6 files, 4 images each)."""
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(24) % 10
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for k, name in enumerate(names):
        write_cifar_bin(folder / name, images[4 * k: 4 * k + 4], labels[4 * k: 4 * k + 4])
    return tmp_path / "data", images, labels


@pytest.fixture
def digits_npz(tmp_path) -> Path:
    """The real digits as an npz file (N, 8, 8) with class names."""
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path / "digits.npz"
    np.savez(path, x=np.round(d.images * 255 / 16).astype(np.uint8), y=d.target,
             classes=np.array([str(i) for i in range(10)]))
    return path


def assert_generator_resumes_exactly(run: Path) -> None:
    """Train ``run``'s recipe again as "cut", interrupted (Ctrl-C) after epoch 1, resume it, and
    check that it ends with the very weights ``run`` ended with."""
    from cnnlab.config import TrainConfig
    from cnnlab.generation import train_generator
    from cnnlab.training import checkpoint as ckpt

    cfg = TrainConfig.load(run / "config.yaml")
    cfg.name = "cut"

    def interrupt_after_epoch_1(line: str) -> None:
        if line.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_generator(cfg, log=interrupt_after_epoch_1, report=False)
    train_generator(cfg, resume=True, log=lambda s: None, report=False)
    a, _ = ckpt.load_tensors(run / "weights" / "last.safetensors")
    b, _ = ckpt.load_tensors(Path(cfg.out_dir) / "cut" / "weights" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resume differs"
