"""Are the probabilities honest? Calibration metrics, temperature scaling, selective prediction.

A model is calibrated when, of the images it gives 80% confidence, 80% are right. Measures:
the expected calibration error over equal-width confidence bins (ECE, Guo et al. 2017) and
over equal-mass bins (adaptive ECE, Nixon et al. 2019), the negative log-likelihood and the
Brier score. Temperature scaling divides the log-probabilities by one number T fitted by
likelihood on held-out images: T > 1 softens an over-confident model, and the predicted class
never changes. Every function takes probabilities (N, K) and labels (N,).
"""

from __future__ import annotations

import numpy as np

TINY = 1e-12


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15, adaptive: bool = False) -> float:
    """Expected calibration error: the image-weighted mean |accuracy - confidence| over bins
    of equal width in confidence, or (adaptive) of equal numbers of images."""
    confidence, correct = probs.max(1), (probs.argmax(1) == y).astype(float)
    if adaptive:
        order = np.argsort(confidence, kind="stable")
        groups = np.array_split(order, min(bins, len(order)))
    else:
        which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1], right=True),
                        0, bins - 1)
        groups = [np.flatnonzero(which == b) for b in range(bins)]
    return float(sum(len(g) * abs(correct[g].mean() - confidence[g].mean())
                     for g in groups if len(g)) / len(y))


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], TINY, None)).mean())


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score: mean squared distance between the probabilities and the
    one-hot label (0 is perfect, 2 the worst)."""
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(y)), y] = 1
    return float(((probs - onehot) ** 2).sum(1).mean())


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities a temperature-scaled model gives."""
    z = np.log(np.clip(probs, TINY, None)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the negative log-likelihood of ``y`` (Guo et al. 2017)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda log_t: nll(apply_temperature(probs, np.exp(log_t)), y),
                          bounds=(np.log(0.05), np.log(20)), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def selective(probs: np.ndarray, y: np.ndarray,
              coverages: tuple[float, ...] = (1.0, 0.95, 0.9, 0.8, 0.7, 0.5)) -> list[dict]:
    """Accuracy when the model answers only its most confident ``coverage`` fraction of images
    and abstains on the rest, with the confidence threshold that does it."""
    order = np.argsort(-probs.max(1), kind="stable")
    correct = (probs.argmax(1) == y)[order]
    rows = []
    for c in coverages:
        n = max(1, int(round(c * len(y))))
        rows.append({"coverage": c, "answered": n, "accuracy": float(correct[:n].mean()),
                     "threshold": float(probs.max(1)[order][n - 1])})
    return rows


def risk_coverage(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The whole curve: (coverage, accuracy of the answered images), most confident first."""
    correct = (probs.argmax(1) == y)[np.argsort(-probs.max(1), kind="stable")]
    n = np.arange(1, len(y) + 1)
    return n / len(y), np.cumsum(correct) / n
