"""MNIST and Fashion-MNIST from their official IDX files (gzip), as published by LeCun et al.

IDX format: 2 zero bytes, a type code (0x08 = uint8), the number of dimensions, one
big-endian uint32 per dimension, then the data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from cnnlab.data.base import DatasetSplits, from_numpy
from cnnlab.data.download import fetch
from cnnlab.errors import CnnlabError

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

FILES = {  # name -> [(file, md5)] in order: train images, train labels, test images, test labels
    "mnist": [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ],
    "fashion-mnist": [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ],
}
CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}


def read_idx(path: Path) -> np.ndarray:
    """Read an uint8 IDX file, gzipped or not; a malformed file raises one clear error."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise CnnlabError(f"{path} is not a readable IDX file ({e}); download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CnnlabError(f"{path} is not an uint8 IDX file (bad header); download it again")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise CnnlabError(
            f"{path} is truncated or corrupt: header says {shape}, file holds "
            f"{len(raw) - header} data bytes; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _local_or_fetched(url: str, folder: Path, f: str, md5: str, name: str) -> Path:
    """The .gz file (checked against its MD5, downloaded if missing), or the file already
    un-gzipped beside where it would be (as many copies hold them; checked by its IDX header
    and size, since the published MD5 is the .gz's)."""
    plain = folder / f.removesuffix(".gz")
    if not (folder / f).is_file() and plain.is_file():
        return plain
    return fetch(url + f, folder, f, md5, name)


def load_idx_splits(name: str, data_dir: Path) -> DatasetSplits:
    folder = data_dir / name
    url = MNIST_URL if name == "mnist" else FASHION_URL
    arrays = [read_idx(_local_or_fetched(url, folder, f, md5, name)) for f, md5 in FILES[name]]
    xtr, ytr, xte, yte = arrays
    for x, y in ((xtr, ytr), (xte, yte)):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise CnnlabError(f"{name}: images {x.shape} and labels {y.shape} do not match")
    classes = CLASSES[name]
    flip = name == "fashion-mnist"
    return DatasetSplits(
        from_numpy(xtr, ytr, classes, name, flip_ok=flip),
        from_numpy(xte, yte, classes, name, flip_ok=flip),
        f"{name} official IDX files in {folder}",
    )
