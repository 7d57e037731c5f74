"""Tracking by detection on clips: a detector on every frame, then SORT or ByteTrack, scored
with MOTA, IDF1 and identity switches (motmetrics).

Two sources of detections separate the two sources of error: the ground-truth boxes (the
tracker alone: every error is the association's) and a trained detector (the whole system).
Several clips are scored as one sequence: clip i's frames and ids are shifted so that no two
clips share a frame or an identity.

A detector's scores are its own: what counts as a confident box differs from one training to the
next, so a tracker's score threshold and confirmation count are chosen on validation clips
(``tune_tracker``), never on the clips scored, as ByteTrack's authors set theirs per benchmark.

A tracker follows objects, not classes, so a frame's detections go through one more,
class-agnostic NMS (YOLOv5's ``agnostic`` option): a detector's NMS runs per class, and a small
shape whose class it is unsure of comes out as two boxes in one place, a circle and a square,
one of them a false positive that also starts a track. On ``cnnlab run``'s quick detector this
took ByteTrack's MOTA from 0.704 to 0.843 and SORT's from 0.642 to 0.830 over 96 clips, each with
its threshold chosen on validation clips (benchmarks/RESULTS.md, 2026-12-07).
"""

from __future__ import annotations

from itertools import product

import numpy as np
import torch

from cnnlab.data.videos import VideoSet, boxes_at
from cnnlab.evaluate.tracking import COUNTS, clip_intervals, mot_metrics
from cnnlab.tracking.sort import track_video

ID_STRIDE = 10_000
"""Identities of clip i are shifted by i * ID_STRIDE when clips are scored together."""
TRACKERS = (("SORT", False), ("ByteTrack", True))
"""(name, ByteTrack's second association) of the trackers compared."""
NMS_IOU = 0.5
"""The class-agnostic NMS's overlap, that of CenterNet's own per-class NMS (``models.centernet``)."""
TUNED = {"high": (0.3, 0.45, 0.6, 0.75), "min_hits": (1, 3)}
"""What ``tune_tracker`` chooses among: the score that starts tracks and is matched first, and
the detections in a row before a track is reported."""


def truth_detections(tracks: np.ndarray, frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each frame's ground-truth boxes (xyxy) as detections of score 1."""
    out = []
    for f in range(1, frames + 1):
        boxes, _, _ = boxes_at(tracks, f)
        out.append((boxes, np.ones(len(boxes), np.float32)))
    return out


@torch.inference_mode()
def detector_detections(detector, frames: torch.Tensor, threshold: float = 0.1, batch_size: int = 64,
                        agnostic: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """The detector's boxes and scores on every frame of one clip (T, 3, H, W) uint8; with
    ``agnostic``, whatever their class: where two boxes overlap by more than ``NMS_IOU``, the
    lower-scored goes (without, the detector's per-class NMS alone, as before 2026-12-07)."""
    from torchvision.ops import nms

    detector.eval()
    out = []
    for start in range(0, len(frames), batch_size):
        for f in detector.detect(frames[start: start + batch_size].float() / 255, threshold=threshold):
            boxes, scores = f["boxes"].float(), f["scores"].float()
            keep = nms(boxes, scores, NMS_IOU) if agnostic else slice(None)
            out.append((boxes[keep].numpy(), scores[keep].numpy()))
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


def evaluate_tracking(videos: VideoSet, detector=None, threshold: float = 0.1,
                      tuned: dict[str, dict] | None = None, agnostic: bool = True, **params) -> dict:
    """MOTA, IDF1, ID switches, misses and false positives of SORT and ByteTrack on ``videos``,
    with ground-truth detections and (if given) with ``detector``'s (``agnostic``: see
    ``detector_detections``). ``tuned`` (tracker name -> ``Tracker`` arguments, from
    ``tune_tracker``) sets each tracker on the detector's boxes."""
    frames = videos.x.shape[1]
    truth = [np.asarray(t) for t in videos.tracks]
    sources = {"ground-truth boxes": [truth_detections(t, frames) for t in truth]}
    if detector is not None:
        sources["detector"] = [detector_detections(detector, clip, threshold, agnostic=agnostic)
                               for clip in videos.x]
    result = {}
    for source, detections in sources.items():
        for name, byte in TRACKERS:
            mine = (tuned or {}).get(name, {}) if source == "detector" else {}
            result[f"{name}, {source}"] = _score(truth, detections, frames, intervals=True, byte=byte,
                                                 **(params | mine))
    return result


def tune_tracker(videos: VideoSet, detections: list, byte: bool) -> dict:
    """The ``TUNED`` setting with the best MOTA of the tracker on ``detections`` (per clip of
    ``videos``, from ``detector_detections``): validation clips, never the ones scored."""
    frames = videos.x.shape[1]
    truth = [np.asarray(t) for t in videos.tracks]
    settings = [dict(zip(TUNED, values, strict=True)) for values in product(*TUNED.values())]
    return max(settings, key=lambda s: _score(truth, detections, frames, byte=byte, **s)["mota"])


def _score(truth: list[np.ndarray], detections: list, frames: int, intervals: bool = False,
           **params) -> dict:
    """MOTA and the rest of one tracker on every clip's detections, the clips as one sequence;
    with ``intervals``, MOTA's and IDF1's bootstrap intervals over clips too."""
    hyp = [track_video(d, **params) for d in detections]
    out = mot_metrics(_stack(truth, frames), _stack(hyp, frames))
    if intervals:
        per_clip = [{k: m[k] for k in COUNTS} for m in map(mot_metrics, truth, hyp)]
        ci = clip_intervals(per_clip)
        out |= {"mota_ci": ci["mota"], "idf1_ci": ci["idf1"], "per_clip": per_clip}
    return out
