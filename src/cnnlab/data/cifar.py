"""CIFAR-10 and CIFAR-100 from the official *binary* release (Krizhevsky 2009): no pickle.

Each record is the label byte(s) (CIFAR-100: coarse, then fine) followed by 3,072 pixel bytes,
the red, green and blue 32x32 planes in row-major order. We read the records straight from
the verified archive, or from an already extracted ``cifar-10-batches-bin`` folder.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from cnnlab.data.base import DatasetSplits, from_numpy
from cnnlab.data.download import fetch
from cnnlab.errors import CnnlabError

URL = "https://www.cs.toronto.edu/~kriz/"
SPECS = {
    # name: (archive, md5, folder in archive, train files, test file, label bytes, classes file)
    "cifar10": ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin",
                [f"data_batch_{i}.bin" for i in range(1, 6)], "test_batch.bin", 1,
                "batches.meta.txt"),
    "cifar100": ("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary",
                 ["train.bin"], "test.bin", 2, "fine_label_names.txt"),
}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]
PIXELS = 3 * 32 * 32


def parse_records(raw: bytes, label_bytes: int, num_classes: int, where: str):
    """Split binary CIFAR records into images (N, 3, 32, 32) and (fine) labels."""
    record = label_bytes + PIXELS
    if len(raw) == 0 or len(raw) % record:
        raise CnnlabError(
            f"{where} is corrupt: {len(raw)} bytes is not a whole number of {record}-byte CIFAR "
            f"records; download the binary release again"
        )
    table = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = table[:, label_bytes - 1].astype(np.int64)
    if labels.max() >= num_classes:
        raise CnnlabError(f"{where} is corrupt: label {labels.max()} >= {num_classes} classes")
    return table[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def load_cifar_splits(name: str, data_dir: Path) -> DatasetSplits:
    archive, md5, inner, train_files, test_file, label_bytes, names_file = SPECS[name]
    root = data_dir / name
    extracted = root / inner
    if extracted.is_dir():
        read = lambda f: (extracted / f).read_bytes()  # noqa: E731
        for f in [*train_files, test_file]:
            if not (extracted / f).is_file():
                raise CnnlabError(f"{name}: {extracted / f} is missing; restore it or delete "
                                  f"{extracted} to use the archive")
        source = str(extracted)
    else:
        tar = tarfile.open(fetch(URL + archive, root, archive, md5, name))
        read = lambda f: tar.extractfile(f"{inner}/{f}").read()  # noqa: E731
        source = str(root / archive)
    classes = _class_names(name, read, names_file)
    parts = [parse_records(read(f), label_bytes, len(classes), f"{name}/{f}") for f in train_files]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = parse_records(read(test_file), label_bytes, len(classes), f"{name}/{test_file}")
    return DatasetSplits(
        from_numpy(xtr, ytr, classes, name), from_numpy(xte, yte, classes, name),
        f"{name} official binary release ({source})",
    )


def _class_names(name: str, read, names_file: str) -> list[str]:
    if name == "cifar10":
        return CIFAR10_CLASSES
    try:
        names = [line.strip() for line in read(names_file).decode().splitlines() if line.strip()]
    except (OSError, KeyError):
        names = []
    return names if len(names) == 100 else [f"class_{i}" for i in range(100)]
