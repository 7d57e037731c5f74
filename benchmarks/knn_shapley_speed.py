"""Seconds for exact KNN-Shapley at CIFAR-10 scale: 45,000 training x 5,000 validation images.

    python benchmarks/knn_shapley_speed.py [--dim 256] [--k 5]

Random embeddings of the given size (fastnet's is 256): the time depends on the sizes only.
Appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import append_result, machine

from cnnlab.explain.valuation import knn_shapley


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=int, default=45_000)
    p.add_argument("--val", type=int, default=5_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=5)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    train = rng.normal(size=(a.train, a.dim)).astype(np.float32)
    val = rng.normal(size=(a.val, a.dim)).astype(np.float32)
    t0 = time.perf_counter()
    knn_shapley(train, rng.integers(0, 10, a.train), val, rng.integers(0, 10, a.val), a.k)
    seconds = time.perf_counter() - t0
    line = f"{a.train:,} training x {a.val:,} validation, {a.dim}-d, K={a.k}: {seconds:.1f} s"
    print(line)
    append_result("exact KNN-Shapley", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
