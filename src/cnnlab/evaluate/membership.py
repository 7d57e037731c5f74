"""Membership inference: was this image in the training set? Scores and how to grade them.

An attack gives every image a score, higher meaning "member". Graded the way the literature
does (Carlini et al. 2022): the ROC curve over members and non-members (on log axes, where the
low false-positive end shows), its AUC, and the true-positive rate at 0.1% and 1% false
positives: an attack that confidently identifies a few members matters more than a good
average. Three attacks, weakest to strongest:

- loss threshold (Yeom et al. 2018): score = -loss of the image under its true label;
- shadow models (Shokri et al. 2017): models trained like the target on data whose
  membership is known teach a classifier (logistic regression on the sorted probabilities and
  the true label's probability) what members look like;
- offline LiRA (Carlini et al. 2022): for each image, the distribution of its logit-scaled
  confidence log(p / (1 - p)) under shadow models that did NOT train on it (Gaussian); the
  score is how far the target's value sits above it (one-sided, in standard deviations).
"""

from __future__ import annotations

import warnings

import numpy as np

TINY = 1e-12


def roc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> dict:
    """ROC of an attack (scikit-learn's roc_curve): fpr, tpr, auc, and TPR at 0.1% and 1% FPR."""
    from sklearn.metrics import auc, roc_curve

    y = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    fpr, tpr, _ = roc_curve(y, np.r_[member_scores, nonmember_scores])
    return {"fpr": fpr, "tpr": tpr, "auc": float(auc(fpr, tpr)),
            "tpr_at_0.1%": tpr_at(fpr, tpr, 0.001), "tpr_at_1%": tpr_at(fpr, tpr, 0.01),
            "n_members": len(member_scores), "n_nonmembers": len(nonmember_scores)}


def rank_auc(is_positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC along the last axis, from average ranks (the Mann-Whitney U statistic): the
    same value as scikit-learn's roc_auc_score, ties included, for many rows at once (a
    bootstrap's resamples in one call)."""
    from scipy.stats import rankdata

    positive = np.asarray(is_positive, bool)
    n1 = positive.sum(-1)
    n0 = positive.shape[-1] - n1
    if np.any(n1 == 0) or np.any(n0 == 0) or not np.isfinite(scores).all():
        raise ValueError("an AUC needs finite scores and both classes in every row")
    ranks = rankdata(scores, axis=-1)  # ties share their average rank
    return (np.where(positive, ranks, 0.0).sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The highest true-positive rate whose false-positive rate is at most ``target``."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def true_label_probs(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    return probs[np.arange(len(y)), y]


def loss_scores(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Yeom et al.: minus the cross-entropy loss; members have lower loss."""
    return np.log(np.clip(true_label_probs(probs, y), TINY, None))


def logit_confidence(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LiRA's statistic: log(p / (1 - p)) of the true label, roughly Gaussian across models."""
    p = np.clip(true_label_probs(probs, y), TINY, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def attack_features(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shokri-style features: the sorted probabilities and the true label's log-probability."""
    return np.c_[-np.sort(-probs, axis=1), loss_scores(probs, y)]


def shadow_attack(train_feats: np.ndarray, train_member: np.ndarray,
                  target_feats: np.ndarray) -> np.ndarray:
    """Fit a logistic-regression attack on shadow models' features (membership known) and
    score the target model's images (the probability of 'member')."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(train_feats, train_member)
    return clf.predict_proba(target_feats)[:, 1]


def lira_offline(target_stat: np.ndarray, shadow_stats: np.ndarray, shadow_in: np.ndarray,
                 min_out: int = 2) -> np.ndarray:
    """Offline LiRA scores. ``shadow_stats`` (S, N): each shadow's logit confidence on the N
    images; ``shadow_in`` (S, N): whether that shadow trained on the image. Per image, a
    Gaussian over the OUT values; with fewer than ``min_out`` OUT shadows (or a tiny spread)
    the standard deviation pooled over all images is used (Carlini et al.'s fixed variance)."""
    out = np.where(shadow_in, np.nan, shadow_stats)
    n_out = (~shadow_in).sum(0)
    mean = np.nanmean(np.where(n_out[None] > 0, out, 0.0), axis=0)
    pooled = float(np.nanstd(out - mean[None])) or 1.0
    with warnings.catch_warnings():  # images with no OUT shadow: nan, replaced just below
        warnings.simplefilter("ignore", RuntimeWarning)
        std = np.nanstd(out, axis=0)
    std = np.where((n_out >= min_out) & (std > 1e-3 * pooled), std, pooled)
    return (target_stat - mean) / std
