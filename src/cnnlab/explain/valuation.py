"""Which training images drive the model: data valuation by exact KNN-Shapley.

Jia et al. 2019 ("Efficient task-specific data valuation for nearest neighbor algorithms"):
for a K-nearest-neighbour classifier on an embedding, whose utility on a validation image is
the fraction of its K nearest training images that carry its label, the Shapley value of
every training image has a closed form. Sort the N training images by distance to the
validation image (a_1 nearest ... a_N farthest) and let m_i = 1 if a_i has the validation
image's label:

    s(a_N) = m_N / N
    s(a_i) = s(a_{i+1}) + (m_i - m_{i+1}) / K * min(K, i) / i

The value of a training image is its s averaged over the validation images. Images that
pull neighbours towards wrong labels (mislabelled ones, typically) get negative values. The
test checks the closed form against brute-force Shapley over all subsets of 8 images.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import torch


def knn_shapley(train_emb: np.ndarray, train_y: np.ndarray, val_emb: np.ndarray,
                val_y: np.ndarray, k: int = 5, chunk: int = 256) -> np.ndarray:
    """Exact KNN-Shapley value of every training image (N,), averaged over validation images.

    Distances are Euclidean on the embeddings; validation images go in chunks so memory stays
    at chunk x N."""
    train = torch.as_tensor(np.asarray(train_emb, np.float32))
    ty = torch.as_tensor(np.asarray(train_y)).long()
    n = len(train)
    pos = torch.arange(1, n + 1, dtype=torch.float64)  # 1-based rank i
    weight = torch.clamp(pos, max=k) / pos / k  # min(K, i) / (i K)
    values = torch.zeros(n, dtype=torch.float64)
    for start in range(0, len(val_emb), chunk):
        v = torch.as_tensor(np.asarray(val_emb[start: start + chunk], np.float32))
        vy = torch.as_tensor(np.asarray(val_y[start: start + chunk])).long()
        order = torch.cdist(v, train).argsort(dim=1, stable=True)  # (B, N), nearest first
        match = (ty[order] == vy[:, None]).double()  # m_i
        step = torch.zeros_like(match)
        step[:, :-1] = (match[:, :-1] - match[:, 1:]) * weight[:-1]  # s_i - s_{i+1}
        last = match[:, -1:] / n  # s_N
        s = last + step.flip(1).cumsum(1).flip(1)  # s_i = s_N + sum_{j >= i} (s_j - s_{j+1})
        values.scatter_add_(0, order.flatten(), s.flatten())
    return (values / len(val_emb)).numpy()


def knn_utility(subset: list[int], train_emb: np.ndarray, train_y: np.ndarray,
                val_emb: np.ndarray, val_y: np.ndarray, k: int) -> float:
    """The KNN classifier's utility of a training subset: for each validation image, the
    fraction of its min(K, |S|) nearest images in S that share its label, divided by K (so an
    empty set is worth 0), averaged."""
    if not subset:
        return 0.0
    total = 0.0
    for v, y in zip(val_emb, val_y, strict=True):
        d = np.linalg.norm(train_emb[subset] - v, axis=1)
        nearest = np.asarray(subset)[np.argsort(d, kind="stable")[:k]]
        total += float((train_y[nearest] == y).sum()) / k
    return total / len(val_emb)


def brute_force_shapley(train_emb, train_y, val_emb, val_y, k: int) -> np.ndarray:
    """Shapley values by enumerating every subset (2^N utilities): for tests on tiny sets."""
    n = len(train_emb)
    values = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            w = factorial(size) * factorial(n - size - 1) / factorial(n)
            for s in combinations(others, size):
                s = list(s)
                gain = knn_utility(s + [i], train_emb, train_y, val_emb, val_y, k)
                values[i] += w * (gain - knn_utility(s, train_emb, train_y, val_emb, val_y, k))
    return values
