"""Multi-object tracking by detection: SORT with ByteTrack's second association.

SORT (Bewley et al. 2016, "Simple Online and Realtime Tracking"): each track is a
constant-velocity Kalman filter on the box (centre x, centre y, area, aspect ratio); every frame
the filters predict, the predicted boxes are matched one-to-one to the detections by the
Hungarian algorithm on IoU (pairs below ``iou_threshold`` rejected), matched filters are updated,
unmatched detections start tracks, and tracks unmatched for more than ``max_age`` frames die.

ByteTrack (Zhang et al. 2022, "ByteTrack: Multi-Object Tracking by Associating Every Detection
Box"): detections at or above ``high`` are associated first; tracks left unmatched are then
matched to the low-score detections (``low <= score < high``), which are often occluded objects
rather than background. Low-score detections never start tracks. ``byte=False`` is plain SORT,
which drops every detection below ``high`` (SORT applies the detector's threshold beforehand).

Two simplifications of ByteTrack, both in the direction of SORT: one IoU threshold for both
stages, and every track (tentative or confirmed, recently seen or not) takes part in both.
One departure from SORT, as in ByteTrack and DeepSORT: a confirmed track stays confirmed. SORT
resets a track's hit streak after a missed frame, so a track re-found after an occlusion would be
hidden for ``min_hits`` more frames; here it is reported with its id as soon as it is matched.
Track ids are handed out when a track is first reported, so they run 1, 2, 3, .. with no gaps
left by tentative tracks that never got confirmed, and are never reused.

Reported boxes are the Kalman filter's posterior (as in SORT and ByteTrack), not the raw
detections, and only tracks matched in the frame are reported: a track bridged over an occlusion
by its prediction is absent for the frames it was missed and keeps its id when it is found again.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), both xyxy: (N, M)."""
    a, b = np.asarray(a, dtype=float).reshape(-1, 4), np.asarray(b, dtype=float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def xyxy_to_z(box: np.ndarray) -> np.ndarray:
    """A box (x0, y0, x1, y1) as SORT's measurement (cx, cy, area, aspect ratio w / h): (4, 1)."""
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + w / 2, box[1] + h / 2, w * h, w / h], dtype=float).reshape(4, 1)


def z_to_xyxy(z: np.ndarray) -> np.ndarray:
    """SORT's (cx, cy, area, aspect ratio, ..) back to a box (x0, y0, x1, y1): (4,)."""
    cx, cy, s, r = np.asarray(z, dtype=float).reshape(-1)[:4]
    w = np.sqrt(max(s * r, 0.0))
    h = s / w if w > 0 else 0.0
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class KalmanBoxTracker:
    """One track: a constant-velocity Kalman filter on (cx, cy, area, ratio), SORT's settings.

    State (cx, cy, s, r, vx, vy, vs): the aspect ratio r is taken as constant. Noise as in SORT's
    reference code: measurement noise 10x larger on area and ratio than on the centre, the
    unobserved initial velocities very uncertain (P 10000), and small process noise on velocities.
    """

    def __init__(self, box: np.ndarray):
        from filterpy.kalman import KalmanFilter  # optional dependency (the ``video`` extra)

        self.kf = KalmanFilter(dim_x=7, dim_z=4)
        self.kf.F = np.eye(7)
        self.kf.F[0, 4] = self.kf.F[1, 5] = self.kf.F[2, 6] = 1.0  # position += velocity
        self.kf.H = np.eye(4, 7)
        self.kf.R[2:, 2:] *= 10.0
        self.kf.P[4:, 4:] *= 1000.0
        self.kf.P *= 10.0
        self.kf.Q[-1, -1] *= 0.01
        self.kf.Q[4:, 4:] *= 0.01
        self.kf.x[:4] = xyxy_to_z(np.asarray(box, dtype=float))
        self.id = 0  # 0 until the track is first reported
        self.hits, self.hit_streak, self.time_since_update = 1, 1, 0

    def predict(self) -> np.ndarray:
        """Advance one frame and return the predicted box (x0, y0, x1, y1)."""
        if self.kf.x[6, 0] + self.kf.x[2, 0] <= 0:  # the area would turn negative
            self.kf.x[6, 0] = 0.0
        self.kf.predict()
        if self.time_since_update > 0:
            self.hit_streak = 0
        self.time_since_update += 1
        return self.box

    def update(self, box: np.ndarray) -> None:
        """Correct the state with a matched detection (x0, y0, x1, y1)."""
        self.kf.update(xyxy_to_z(np.asarray(box, dtype=float)))
        self.hits += 1
        self.hit_streak += 1
        self.time_since_update = 0

    @property
    def box(self) -> np.ndarray:
        """The current state as a box (x0, y0, x1, y1)."""
        return z_to_xyxy(self.kf.x)


def associate(track_boxes: np.ndarray, det_boxes: np.ndarray,
              iou_threshold: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian matching on IoU; pairs below ``iou_threshold`` are rejected.

    Returns:
        (matches as (track index, detection index) pairs, unmatched tracks, unmatched detections).
    """
    iou = box_iou(track_boxes, det_boxes)
    rows, cols = linear_sum_assignment(-iou) if iou.size else (np.array([], int), np.array([], int))
    matches = [(int(t), int(d)) for t, d in zip(rows, cols, strict=True) if iou[t, d] >= iou_threshold]
    matched_t, matched_d = {t for t, _ in matches}, {d for _, d in matches}
    return (matches, [t for t in range(len(track_boxes)) if t not in matched_t],
            [d for d in range(len(det_boxes)) if d not in matched_d])


class Tracker:
    """SORT, optionally with ByteTrack's second association of low-score detections.

    Args:
        iou_threshold: least IoU between a predicted track box and a detection to match them
            (SORT's 0.3).
        min_hits: consecutive detections, the first included, before a track is reported
            (SORT's 3; SORT's reference code does not count the first, so confirms one frame
            later). In the first ``min_hits`` frames of a video tracks are reported at once.
        max_age: frames a track may go unmatched before it dies. SORT uses 1 (no occlusion
            handling); 5 bridges short occlusions, while a constant-velocity prediction held
            much longer drifts and invites identity switches (ByteTrack keeps 30 at 30 fps).
        high: detections at or above this score are associated first and may start tracks
            (ByteTrack's 0.5).
        low: detections below this score are dropped (ByteTrack's 0.1).
        byte: ByteTrack's second association of tracks left unmatched to detections with
            ``low <= score < high``; ``False`` is plain SORT.
    """

    def __init__(self, iou_threshold: float = 0.3, min_hits: int = 3, max_age: int = 5,
                 high: float = 0.5, low: float = 0.1, byte: bool = True):
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
        if min_hits < 0 or max_age < 0:
            raise ValueError(f"min_hits and max_age must be >= 0, got {min_hits}, {max_age}")
        self.iou_threshold, self.min_hits, self.max_age = iou_threshold, min_hits, max_age
        self.high, self.low, self.byte = high, low, byte
        self.tracks: list[KalmanBoxTracker] = []
        self.frame_count = 0
        self.next_id = 1

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Take one frame's detections, boxes (N, 4) xyxy and scores (N,); call it every frame,
        with empty arrays when there are none.

        Returns:
            (M, 5) float array of [x0, y0, x1, y1, track_id], one row per track reported this frame.
        """
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        scores = np.asarray(scores, dtype=float).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        self.frame_count += 1
        predicted = np.array([t.predict() for t in self.tracks]).reshape(-1, 4)
        alive = np.isfinite(predicted).all(axis=1)
        self.tracks = [t for t, ok in zip(self.tracks, alive, strict=True) if ok]
        predicted = predicted[alive]

        # ByteTrack's first association: confident detections against every track
        high_idx = np.flatnonzero(scores >= self.high)
        lost, unmatched = self._match(list(range(len(self.tracks))), predicted, boxes, high_idx)
        if self.byte:  # second association: tracks left over against low-score detections
            low_idx = np.flatnonzero((scores >= self.low) & (scores < self.high))
            self._match(lost, predicted, boxes, low_idx)
        self.tracks += [KalmanBoxTracker(boxes[d]) for d in unmatched]
        return self._report()

    def _report(self) -> np.ndarray:
        """Rows [x0, y0, x1, y1, id] of the tracks matched this frame that are (or now become)
        confirmed; tracks unmatched for more than ``max_age`` frames are dropped."""
        rows = []
        for t in self.tracks:
            if t.time_since_update > 0:
                continue
            if t.id == 0 and (t.hit_streak >= self.min_hits or self.frame_count <= self.min_hits):
                t.id, self.next_id = self.next_id, self.next_id + 1
            if t.id > 0:
                rows.append([*t.box, t.id])
        self.tracks = [t for t in self.tracks if t.time_since_update <= self.max_age]
        return np.array(rows, dtype=float).reshape(-1, 5)

    def _match(self, track_idx: list[int], predicted: np.ndarray, boxes: np.ndarray,
               det_idx: np.ndarray) -> tuple[list[int], list[int]]:
        """Associate tracks ``track_idx`` with detections ``det_idx``, update the matched tracks.

        Returns:
            (unmatched track indices, unmatched detection indices), both into the full lists.
        """
        matches, lost, unmatched = associate(predicted[track_idx], boxes[det_idx], self.iou_threshold)
        for t, d in matches:
            self.tracks[track_idx[t]].update(boxes[det_idx[d]])
        return [track_idx[t] for t in lost], [int(det_idx[d]) for d in unmatched]


def track_video(detections: list[tuple[np.ndarray, np.ndarray]], **params) -> np.ndarray:
    """Track a whole video given its detections, one (boxes (N, 4) xyxy, scores (N,)) per frame.

    Args:
        detections: per frame, the detector's boxes and scores (empty arrays for a frame without).
        **params: ``Tracker``'s arguments.

    Returns:
        (K, 6) float array of rows (frame, id, x, y, w, h) in the MOTChallenge layout, frames
        counted from 1 and boxes as top-left corner, width and height.
    """
    tracker = Tracker(**params)
    rows = []
    for frame, (boxes, scores) in enumerate(detections, start=1):
        out = tracker.update(boxes, scores)
        xywh = np.concatenate([out[:, :2], out[:, 2:4] - out[:, :2]], axis=1)
        rows.append(np.column_stack([np.full(len(out), frame), out[:, 4], xywh]))
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, 6))
