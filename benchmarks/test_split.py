"""The untouched test split of the CIFAR-10 benchmark copy, fixed once.

    python benchmarks/test_split.py          # writes ~/.cache/cnnlab/bench/cifar10_split.npz

The benchmark copy holds the 50,000 CIFAR-10 training images (../shared/data/cifar10/train.npz;
the official test images are not provided on purpose). One seeded permutation, never to
change, sets 5,000 of them aside as the *test* split: ``x_test`` and ``y_test`` of the written
file. The other 45,000 stay ``x`` and ``y``, so a benchmark trains as before with
``--val-split 5000`` (40,000 training images, 5,000 for choosing recipes) and nothing is ever
chosen on the test images: ``cnnlab evaluate RUN`` scores a run on them (a run's test split is
the file's ``x_test``), and every speed claim is stated on them.

The file is derived, not stored in the repository (150 MB); its SHA-256 is printed so that a
RESULTS.md row can name the exact images it was measured on.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261204
"""Fixed once (the day the split was drawn). Changing it would make a new test split, and
every figure stated on the old one incomparable."""
TEST = 5000
DEFAULT_OUT = Path("~/.cache/cnnlab/bench/cifar10_split.npz").expanduser()


def write_split(source: Path, out: Path = DEFAULT_OUT) -> str:
    """Write the split file (if missing) and return its SHA-256."""
    if not out.is_file():
        with np.load(source, allow_pickle=False) as f:
            x, y, classes = f["x"], f["y"], f["classes"]
        order = np.random.default_rng(SEED).permutation(len(y))
        test, rest = np.sort(order[:TEST]), np.sort(order[TEST:])
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, x=x[rest], y=y[rest], x_test=x[test], y_test=y[test], classes=classes)
        tmp.replace(out)
    digest = hashlib.sha256()
    with open(out, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"))
    p.add_argument("--out", default=str(DEFAULT_OUT))
    a = p.parse_args()
    out = Path(a.out).expanduser()
    sha = write_split(Path(a.data), out)
    with np.load(out, allow_pickle=False) as f:
        sizes = len(f["y"]), len(f["y_test"])
        counts = np.bincount(f["y_test"], minlength=10)
    print(f"{out}: {sizes[0]} images to train and validate on, {sizes[1]} test images "
          f"(per class {counts.min()}-{counts.max()}); sha256 {sha}")


if __name__ == "__main__":
    main()
