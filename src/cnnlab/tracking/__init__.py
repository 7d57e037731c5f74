"""Multi-object tracking by detection: SORT (Bewley et al. 2016) with ByteTrack's second
association (Zhang et al. 2022). Metrics live in ``cnnlab.evaluate.tracking``."""

from cnnlab.tracking.sort import KalmanBoxTracker, Tracker, box_iou, track_video

__all__ = ["KalmanBoxTracker", "Tracker", "box_iou", "track_video"]
