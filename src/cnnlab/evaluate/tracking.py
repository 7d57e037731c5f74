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
"""

from __future__ import annotations

import numpy as np

from cnnlab.tracking.sort import box_iou

METRICS = ["mota", "motp", "idf1", "idp", "idr", "num_switches", "num_false_positives", "num_misses",
           "num_objects", "num_predictions", "num_matches", "num_frames"]


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
        (ground-truth boxes), num_predictions, num_matches and num_frames (frames with a box in
        either array).
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
