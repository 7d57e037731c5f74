"""Tracking by detection on procedural clips: SORT against ByteTrack, tracker alone against the
whole system, and frames per second.

    python benchmarks/tracking.py [--clips 50] [--frames 48]

Trains the detector of `cnnlab detect train` (ResNet-20 on 2,000 scenes, 12 epochs), then on
``--clips`` seeded clips of 64 px (seed 3): SORT and ByteTrack on the ground-truth boxes (the
tracker alone) and on the detector's boxes (the whole system), scored by motmetrics (MOTA,
IDF1, ID switches), with the published settings. The detector's boxes go through a
class-agnostic NMS before tracking; the same clips with its per-class NMS alone (what tracking
took before 2026-12-07) are scored beside them. Speed: frames per second of detection +
tracking on CPU. Appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from common import append_result, machine

import cnnlab
from cnnlab.data.videos import make_videos
from cnnlab.tracking.clips import detector_detections, evaluate_tracking
from cnnlab.tracking.sort import track_video


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--frames", type=int, default=48)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cfg = cnnlab.TrainConfig(task="detect", dataset="scenes", model="resnet20", epochs=12, batch_size=32,
                                 optimizer="adamw", lr=0.003, weight_decay=5e-4, out_dir=out, name="det")
        detector = cnnlab.train(cfg, log=lambda s: None, report=False).load_model()
    videos = make_videos(args.clips, 64, args.frames, seed=3)
    result = evaluate_tracking(videos, detector)
    per_class = evaluate_tracking(videos, detector, agnostic=False)
    result |= {f"{k} with per-class NMS only": m for k, m in per_class.items() if k.endswith("detector")}
    t0 = time.perf_counter()
    for clip in videos.x[:10]:
        track_video(detector_detections(detector, clip), byte=True)
    fps = 10 * args.frames / (time.perf_counter() - t0)
    parts = [f"{k}: MOTA {m['mota']:.3f}, IDF1 {m['idf1']:.3f}, {int(m['num_switches'])} ID switches, "
             f"{int(m['num_misses'])} misses, {int(m['num_false_positives'])} false positives"
             for k, m in result.items()]
    n = int(result["SORT, detector"]["num_objects"])
    parts.append(f"{n} ground-truth boxes in {args.clips} clips of {args.frames} frames; detect + "
                 f"ByteTrack {fps:.0f} frames/s (detector batch of 64 frames)")
    line = "; ".join(parts)
    print(line)
    append_result("tracking by detection (videos, 64 px)", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
