"""scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits test set): works offline."""

from __future__ import annotations

import numpy as np

from cnnlab.data.base import DatasetSplits, from_numpy


def load_digits_splits(test_fraction: float = 0.2) -> DatasetSplits:
    """The digits with a fixed stratified 80/20 train/test split (seed 0, same for every run).

    Pixel values 0..16 are scaled to 0..255.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    y = bunch.target.astype(np.int64)
    index = np.arange(len(y))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, stratify=y, random_state=0)
    classes = [str(c) for c in range(10)]
    train = from_numpy(x[np.sort(train_idx)], y[np.sort(train_idx)], classes, "digits", flip_ok=False)
    test = from_numpy(x[np.sort(test_idx)], y[np.sort(test_idx)], classes, "digits", flip_ok=False)
    return DatasetSplits(train, test, "scikit-learn load_digits (UCI optdigits), 8x8 grayscale")
