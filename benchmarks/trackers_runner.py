"""Run the `trackers` package's SORT and ByteTrack on saved detections (called by
trackers_compare.py with the interpreter of a separate venv that has `trackers`, which pulls
OpenCV; cnnlab itself never installs it).

    python trackers_runner.py detections.npz hypotheses.npz
"""

from __future__ import annotations

import sys

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker, SORTTracker

SETTINGS = {
    "SORT (trackers, defaults)": (SORTTracker, {}),
    "ByteTrack (trackers, defaults)": (ByteTrackTracker, {}),
    "SORT (trackers, our settings)": (SORTTracker, dict(lost_track_buffer=5, minimum_consecutive_frames=3,
                                                         minimum_iou_threshold=0.3,
                                                         track_activation_threshold=0.5)),
    "ByteTrack (trackers, our settings)": (ByteTrackTracker, dict(
        lost_track_buffer=5, minimum_consecutive_frames=3, minimum_iou_threshold=0.3,
        track_activation_threshold=0.5, high_conf_det_threshold=0.5)),
}


def run(d: dict, make, kwargs: dict) -> np.ndarray:
    rows = []
    for clip in np.unique(d["clip"]):
        tracker = make(frame_rate=12.0, **kwargs)
        for frame in range(1, int(d["frames"]) + 1):
            keep = (d["clip"] == clip) & (d["frame"] == frame)
            det = sv.Detections(xyxy=d["boxes"][keep].reshape(-1, 4).astype(np.float32),
                                confidence=d["scores"][keep].astype(np.float32))
            out = tracker.update(det)
            for box, tid in zip(out.xyxy, out.tracker_id, strict=True):
                if tid is not None and tid >= 0:
                    x0, y0, x1, y1 = box
                    rows.append([clip, frame, tid, x0, y0, x1 - x0, y1 - y0])
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


def main() -> None:
    d = dict(np.load(sys.argv[1]))
    np.savez(sys.argv[2], **{name: run(d, make, kw) for name, (make, kw) in SETTINGS.items()})


if __name__ == "__main__":
    main()
