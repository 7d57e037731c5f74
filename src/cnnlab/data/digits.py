"""scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits test set): works offline."""

from __future__ import annotations

import numpy as np

from cnnlab.data.base import DatasetSplits, from_numpy
from cnnlab.errors import CnnlabError

FOLDS = 5
"""``digits:fold=K``: the digits in five stratified parts of about 360. Fold 0 is the plain
digits' test split; folds 1-4 cut its training split in four. Each fold's model trains on the
other four, so the five models together predict every one of the 1,797 images once, from a
model that never saw it: the test a one-point gap needs (360 images cannot resolve it)."""


def load_digits_splits(test_fraction: float = 0.2, fold: int = 0) -> DatasetSplits:
    """The digits with a fixed stratified 80/20 train/test split (seed 0, same for every run);
    ``fold`` 1-4 tests on a fifth of that training split instead (see ``FOLDS``).

    Pixel values 0..16 are scaled to 0..255.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold, train_test_split

    bunch = load_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    y = bunch.target.astype(np.int64)
    index = np.arange(len(y))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, stratify=y, random_state=0)
    if fold:
        parts = StratifiedKFold(FOLDS - 1, shuffle=True, random_state=0).split(train_idx, y[train_idx])
        test_idx = train_idx[list(parts)[fold - 1][1]]
        train_idx = np.setdiff1d(index, test_idx)
    classes = [str(c) for c in range(10)]
    train = from_numpy(x[np.sort(train_idx)], y[np.sort(train_idx)], classes, "digits", flip_ok=False)
    test = from_numpy(x[np.sort(test_idx)], y[np.sort(test_idx)], classes, "digits", flip_ok=False)
    where = f", fold {fold} of {FOLDS} as the test split" if fold else ""
    return DatasetSplits(train, test, f"scikit-learn load_digits (UCI optdigits), 8x8 grayscale{where}")


def parse_digits_arg(arg: str) -> int:
    """``digits:fold=K`` (K from 0 to 4) as the fold; plain ``digits``: 0."""
    key, _, value = arg.partition("=")
    if not arg:
        return 0
    if key == "fold" and value in [str(k) for k in range(FOLDS)]:
        return int(value)
    raise CnnlabError(f"digits:{arg} is not understood; write digits, or digits:fold=K with K from 0 "
                      f"to {FOLDS - 1} (which fifth of the digits to test on; 0 is the plain split)")
