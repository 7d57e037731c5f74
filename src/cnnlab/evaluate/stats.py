"""The uncertainty of every number the report states as a verdict.

- ``proportion_ci``: a Wilson score interval for an accuracy measured on n images (Wilson 1927).
- ``proportion_difference_ci``: Newcombe's interval for the difference of two independent
  proportions, from their Wilson intervals (Newcombe 1998, method 10).
- ``mcnemar``: the exact McNemar test for two classifiers on the same images: only the
  discordant images count, and under "no difference" each is a fair coin (McNemar 1947).
- ``mean_difference_ci``: Welch's t interval for a difference of means over seeds.
- ``bootstrap_ci``: a percentile bootstrap interval for a statistic of per-image values.

Each returns plain floats; ``verdict`` turns an interval into words, and says "no significant
difference" whenever the interval contains zero. scipy does the distributions; tests check
the results against hand computations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

LEVEL = 0.95


@dataclass
class Interval:
    estimate: float
    low: float
    high: float
    level: float = LEVEL

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict:
        return asdict(self)


def proportion_ci(successes: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson score interval for ``successes`` of ``n`` (e.g. correct images)."""
    from scipy.stats import binomtest

    if n == 0:
        return Interval(float("nan"), 0.0, 1.0, level)
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return Interval(successes / n, float(ci.low), float(ci.high), level)


def proportion_difference_ci(x1: int, n1: int, x2: int, n2: int, level: float = LEVEL) -> Interval:
    """Newcombe's hybrid score interval for x1/n1 - x2/n2 (two independent samples): each
    proportion's Wilson limits combined in quadrature. Unlike the Wald interval it stays within
    [-1, 1] and keeps its coverage near 0 and 1."""
    a, b = proportion_ci(x1, n1, level), proportion_ci(x2, n2, level)
    d = a.estimate - b.estimate
    low = d - float(np.hypot(a.estimate - a.low, b.high - b.estimate))
    high = d + float(np.hypot(a.high - a.estimate, b.estimate - b.low))
    return Interval(d, low, high, level)


def accuracy_ci(correct: np.ndarray, level: float = LEVEL) -> Interval:
    correct = np.asarray(correct, dtype=bool)
    return proportion_ci(int(correct.sum()), len(correct), level)


@dataclass
class McNemar:
    a_only: int
    """Images model A gets right and model B wrong."""
    b_only: int
    """Images model B gets right and model A wrong."""
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact (binomial) McNemar test that A and B are equally accurate on the same images."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs the same images for both models: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if a_only + b_only == 0 else binomtest(a_only, a_only + b_only, 0.5).pvalue
    return McNemar(a_only, b_only, float(p))


def mean_difference_ci(a: list[float], b: list[float], level: float = LEVEL) -> Interval:
    """Welch's t interval for mean(b) - mean(a) (e.g. accuracy after minus before, over seeds).

    With fewer than two values on a side the spread is unknown: the interval is infinite."""
    from scipy.stats import t

    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return Interval(diff, -np.inf, np.inf, level)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = np.sqrt(va + vb)
    if se == 0:
        return Interval(diff, diff, diff, level)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(t.ppf(0.5 + level / 2, dof) * se)
    return Interval(diff, diff - half, diff + half, level)


def paired_difference_ci(a: list[float], b: list[float], level: float = LEVEL) -> Interval:
    """The paired t interval for mean(b - a): a[i] and b[i] share something (a seed, a judge),
    so their differences vary less than the values do and Welch's interval would be too wide.

    With fewer than two pairs the spread is unknown: the interval is infinite."""
    from scipy.stats import t

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    d = b - a
    diff = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2:
        return Interval(diff, -np.inf, np.inf, level)
    se = d.std(ddof=1) / np.sqrt(len(d))
    if se == 0:
        return Interval(diff, diff, diff, level)
    half = float(t.ppf(0.5 + level / 2, len(d) - 1) * se)
    return Interval(diff, diff - half, diff + half, level)


def bootstrap_ci(values: np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean,
                 resamples: int = 2000, level: float = LEVEL, seed: int = 0,
                 batched: bool = False) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over resampled rows of ``values``.

    ``batched``: ``statistic`` takes every resample at once (an array with a leading axis of
    ``resamples``) and returns one value per resample; the same draws, so the same interval,
    in one vectorised call instead of a Python loop."""
    values = np.asarray(values)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (resamples, len(values)))
    if batched:
        stats, estimate = np.asarray(statistic(values[idx])), statistic(values[None])[0]
    else:
        stats, estimate = np.array([statistic(values[i]) for i in idx]), statistic(values)
    lo, hi = np.quantile(stats, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(float(estimate), float(lo), float(hi), level)


def difference_words(ci: Interval, what: str = "points", scale: float = 100.0) -> str:
    """'+3.10 points (95% CI +1.20 to +5.00)', the way the report writes a difference."""
    pct = f"{100 * ci.level:.4g}"  # 95, 97.5, 98.75
    if np.isinf(ci.low):
        return f"{scale * ci.estimate:+.2f} {what} (too few seeds for a {pct}% CI)"
    return (f"{scale * ci.estimate:+.2f} {what} ({pct}% CI {scale * ci.low:+.2f} to "
            f"{scale * ci.high:+.2f})")


def bonferroni(tests: int, level: float = LEVEL) -> float:
    """The level at which to run each of ``tests`` tests when any one passing carries a claim,
    so that some test passing by luck stays under 1 - ``level`` (Bonferroni)."""
    return 1 - (1 - level) / max(tests, 1)


def significant(ci: Interval) -> bool:
    """Whether the interval excludes zero."""
    return not ci.contains(0.0)
