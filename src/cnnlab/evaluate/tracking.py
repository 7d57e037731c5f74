"""Multi-object tracking metrics, computed by ``motmetrics`` (py-motmetrics), never by hand.

CLEAR MOT (Bernardin & Stiefelhagen 2008, "Evaluating Multiple Object Tracking Performance: The
CLEAR MOT Metrics"): frame by frame, ground truth is matched to hypotheses (keeping last frame's
pairs where still valid, the rest by the Hungarian algorithm), and

    MOTA = 1 - (misses + false positives + ID switches) / ground-truth boxes,
    MOTP = mean distance of the matched pairs.

IDF1 (Ristani et al. 2016, "Performance Measures and a Data Set for Multi-Target, Multi-Camera
Tracking"): one global one-to-one matching of ground-truth ids to hypothesis ids maximising the
boxes they share, IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN).

The distance is 1 - IoU, and a pair with IoU below ``iou_threshold`` cannot match (MOTChallenge's
0.5). So motmetrics' ``motp`` is a mean *distance*, lower is better; MOTChallenge's devkit reports
the mean IoU, which is ``1 - motp``. motmetrics 1.4's own ``distances.iou_matrix`` calls
``np.asfarray``, removed in numpy 2, so the distance matrix is computed here.

Rows are MOTChallenge-style arrays (frame, id, x, y, w, h, ...): top-left corner, width, height.

Both scores are ratios of counts, and identities never cross clips, so the scores of several
clips are those of their summed counts: ``clip_intervals`` resamples clips, not frames (a
tracker's errors in one clip are not independent). Below ``MIN_CLIPS`` clips a percentile
bootstrap says too little (one clip: an interval of width zero), so the interval is infinite.
"""

from __future__ import annotations

import numpy as np

from cnnlab.evaluate.stats import Interval
from cnnlab.tracking.sort import box_iou

METRICS = ["mota", "motp", "idf1", "idp", "idr", "num_switches", "num_false_positives", "num_misses",
           "num_objects", "num_predictions", "num_matches", "num_frames", "idtp", "idfp", "idfn"]
COUNTS = ["num_misses", "num_false_positives", "num_switches", "num_objects", "idtp", "idfp", "idfn"]
"""The counts MOTA and IDF1 are made of, in the order ``clip_intervals`` stacks them."""
MIN_CLIPS = 8
"""The fewest clips a bootstrap interval over clips is drawn from."""


def _rows(rows: np.ndarray, name: str) -> np.ndarray:
    rows = np.asarray(rows, dtype=float)
    if rows.size == 0:
        return np.zeros((0, 6))
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise ValueError(f"{name} must be (K, >=6) rows (frame, id, x, y, w, h, ...), got {rows.shape}")
    return rows[:, :6]


def iou_distance(gt_xywh: np.ndarray, hyp_xywh: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """motmetrics' distance matrix (G, H): 1 - IoU, NaN (no match possible) where IoU < threshold."""
    def to_xyxy(b: np.ndarray) -> np.ndarray:
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)

    iou = box_iou(to_xyxy(gt_xywh), to_xyxy(hyp_xywh))
    return np.where(iou >= iou_threshold, 1.0 - iou, np.nan)


def mot_metrics(gt_rows: np.ndarray, hyp_rows: np.ndarray, iou_threshold: float = 0.5) -> dict:
    """CLEAR MOT and identity metrics of a tracker's output against ground truth.

    Args:
        gt_rows: (K, >=6) ground truth rows (frame, id, x, y, w, h, ...).
        hyp_rows: (L, >=6) tracker rows in the same layout.
        iou_threshold: least IoU for a ground-truth box and a hypothesis to match.

    Returns:
        ``{name: value}`` for ``METRICS`` (motmetrics' names): mota, motp (mean 1 - IoU of the
        matches), idf1, idp, idr, num_switches, num_false_positives, num_misses, num_objects
        (ground-truth boxes), num_predictions, num_matches, num_frames (frames with a box in
        either array) and idtp, idfp, idfn (the identity matching's counts).
    """
    import motmetrics as mm  # optional dependency (the ``video`` extra)

    gt, hyp = _rows(gt_rows, "gt_rows"), _rows(hyp_rows, "hyp_rows")
    acc = mm.MOTAccumulator(auto_id=True)
    for frame in np.union1d(gt[:, 0], hyp[:, 0]):
        g, h = gt[gt[:, 0] == frame], hyp[hyp[:, 0] == frame]
        acc.update(g[:, 1].astype(int).tolist(), h[:, 1].astype(int).tolist(),
                   iou_distance(g[:, 2:6], h[:, 2:6], iou_threshold))
    summary = mm.metrics.create().compute(acc, metrics=METRICS, name="all")
    return {k: float(summary.loc["all", k]) for k in METRICS}


def _summed(counts: np.ndarray) -> dict[str, np.ndarray]:
    """``counts`` (..., clips, len(COUNTS)) summed over clips, by name."""
    total = counts.sum(-2)
    return {name: total[..., i] for i, name in enumerate(COUNTS)}


def _mota(counts: np.ndarray) -> np.ndarray:
    """MOTA of the clips' summed counts: 1 - (misses + false positives + switches) / objects."""
    c = _summed(counts)
    errors = c["num_misses"] + c["num_false_positives"] + c["num_switches"]
    return 1 - errors / np.maximum(c["num_objects"], 1)


def _idf1(counts: np.ndarray) -> np.ndarray:
    """IDF1 of the clips' summed counts: 2 IDTP / (2 IDTP + IDFP + IDFN)."""
    c = _summed(counts)
    return 2 * c["idtp"] / np.maximum(2 * c["idtp"] + c["idfp"] + c["idfn"], 1)


def _too_few(estimate: float) -> dict:
    """The score without an interval (infinite ends), for fewer than ``MIN_CLIPS`` clips."""
    return Interval(float(estimate), -np.inf, np.inf).to_dict()


def _counts(per_clip: list[dict]) -> np.ndarray:
    return np.array([[clip[k] for k in COUNTS] for clip in per_clip], dtype=float)


def mota_difference(per_clip_a: list[dict], per_clip_b: list[dict], resamples: int = 2000,
                    seed: int = 0) -> dict:
    """B's MOTA minus A's on the same clips (in the same order), with a paired percentile
    bootstrap interval over clips."""
    from cnnlab.evaluate.stats import bootstrap_ci

    if len(per_clip_a) != len(per_clip_b):
        raise ValueError(f"mota_difference pairs clips: {len(per_clip_a)} against {len(per_clip_b)}")
    counts = np.stack([_counts(per_clip_a), _counts(per_clip_b)], 1)  # (clips, 2, COUNTS)

    def difference(c: np.ndarray) -> np.ndarray:
        return _mota(c[..., 1, :]) - _mota(c[..., 0, :])

    if len(counts) < MIN_CLIPS:
        return _too_few(difference(counts[None])[0])
    return bootstrap_ci(counts, difference, resamples=resamples, seed=seed, batched=True).to_dict()


def clip_intervals(per_clip: list[dict], resamples: int = 2000, seed: int = 0) -> dict:
    """MOTA and IDF1 with percentile bootstrap intervals over clips (each from ``mot_metrics``
    of one clip; the same draws for both scores).

    Returns:
        ``{"mota": {"estimate", "low", "high", "level"}, "idf1": {...}, "clips": n}``.
    """
    from cnnlab.evaluate.stats import bootstrap_ci

    counts = _counts(per_clip)
    if len(counts) < MIN_CLIPS:
        return {"mota": _too_few(_mota(counts)), "idf1": _too_few(_idf1(counts)), "clips": len(counts)}
    return {name: bootstrap_ci(counts, score, resamples=resamples, seed=seed, batched=True).to_dict()
            for name, score in (("mota", _mota), ("idf1", _idf1))} | {"clips": len(per_clip)}
