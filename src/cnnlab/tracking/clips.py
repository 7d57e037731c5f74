"""Tracking by detection on clips: a detector on every frame, then SORT or ByteTrack, scored
with MOTA, IDF1 and identity switches (motmetrics).

Two sources of detections separate the two sources of error: the ground-truth boxes (the
tracker alone: every error is the association's) and a trained detector (the whole system).
Several clips are scored as one sequence: clip i's frames and ids are shifted so that no two
clips share a frame or an identity.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.data.videos import VideoSet, boxes_at
from cnnlab.evaluate.tracking import mot_metrics
from cnnlab.tracking.sort import track_video

ID_STRIDE = 10_000
"""Identities of clip i are shifted by i * ID_STRIDE when clips are scored together."""


def truth_detections(tracks: np.ndarray, frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each frame's ground-truth boxes (xyxy) as detections of score 1."""
    out = []
    for f in range(1, frames + 1):
        boxes, _, _ = boxes_at(tracks, f)
        out.append((boxes, np.ones(len(boxes), np.float32)))
    return out


@torch.inference_mode()
def detector_detections(detector, frames: torch.Tensor, threshold: float = 0.1,
                        batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """The detector's boxes and scores on every frame of one clip (T, 3, H, W) uint8."""
    detector.eval()
    out = []
    for start in range(0, len(frames), batch_size):
        found = detector.detect(frames[start: start + batch_size].float() / 255, threshold=threshold)
        out += [(f["boxes"].float().numpy(), f["scores"].float().numpy()) for f in found]
    return out


def _stack(rows: list[np.ndarray], frames: int) -> np.ndarray:
    """Rows (frame, id, x, y, w, h, ...) of several clips as one sequence."""
    shifted = []
    for i, r in enumerate(rows):
        r = np.array(r, dtype=float).reshape(-1, r.shape[1] if len(r) else 6)
        r[:, 0] += i * frames
        r[:, 1] += i * ID_STRIDE
        shifted.append(r[:, :6])
    return np.concatenate(shifted) if shifted else np.zeros((0, 6))


def evaluate_tracking(videos: VideoSet, detector=None, threshold: float = 0.1, **params) -> dict:
    """MOTA, IDF1, ID switches, misses and false positives of SORT and ByteTrack on ``videos``,
    with ground-truth detections and (if given) with ``detector``'s."""
    frames = videos.x.shape[1]
    truth = [np.asarray(t) for t in videos.tracks]
    sources = {"ground-truth boxes": [truth_detections(t, frames) for t in truth]}
    if detector is not None:
        sources["detector"] = [detector_detections(detector, clip, threshold) for clip in videos.x]
    result = {}
    for source, detections in sources.items():
        for name, byte in (("SORT", False), ("ByteTrack", True)):
            hyp = [track_video(d, byte=byte, **params) for d in detections]
            result[f"{name}, {source}"] = mot_metrics(_stack(truth, frames), _stack(hyp, frames))
    return result
