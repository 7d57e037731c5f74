"""Our SORT/ByteTrack against the `trackers` package (Roboflow) on the same detections.

    cnnlab detect train --name det12        # the detector (ResNet-20, 2,000 scenes, 12 epochs)
    python benchmarks/trackers_compare.py --detector runs/det12 --trackers-python /tmp/trk/bin/python

`trackers` pulls OpenCV, so it lives in its own venv (``python -m venv /tmp/trk &&
/tmp/trk/bin/pip install trackers``) and runs as a subprocess (trackers_runner.py) on the
detections this script saves: the detector of ``--detector`` on 50 seeded clips of 48 frames
(64 px, seed 3), threshold 0.1. Every tracker's output is scored here with the same
motmetrics code. Appends one row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import append_result, machine

from cnnlab.data.videos import make_videos
from cnnlab.evaluate.tracking import mot_metrics
from cnnlab.run import load_run
from cnnlab.tracking.clips import _stack, detector_detections
from cnnlab.tracking.sort import track_video


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--detector", required=True, help="a run that cnnlab detect train wrote")
    ap.add_argument("--trackers-python", required=True, help="python of a venv with `trackers`")
    ap.add_argument("--clips", type=int, default=50)
    args = ap.parse_args()
    detector = load_run(args.detector).load_model()
    videos = make_videos(args.clips, 64, 48, seed=3)
    detections = [detector_detections(detector, clip, 0.1) for clip in videos.x]
    truth = _stack([np.asarray(t) for t in videos.tracks], 48)
    results = {f"{name} (ours)": _stack([track_video(d, byte=byte) for d in detections], 48)
               for name, byte in (("SORT", False), ("ByteTrack", True))}
    with tempfile.TemporaryDirectory() as tmp:
        flat = [(c, f + 1, b, s) for c, clip in enumerate(detections) for f, (bs, ss) in enumerate(clip)
                for b, s in zip(bs, ss, strict=True)]
        saved, hyp_file = Path(tmp) / "d.npz", Path(tmp) / "h.npz"
        np.savez(saved, clip=np.array([r[0] for r in flat]), frame=np.array([r[1] for r in flat]),
                 boxes=np.array([r[2] for r in flat]).reshape(-1, 4), scores=np.array([r[3] for r in flat]),
                 frames=48)
        runner = Path(__file__).with_name("trackers_runner.py")
        subprocess.run([args.trackers_python, str(runner), str(saved), str(hyp_file)], check=True)
        with np.load(hyp_file) as h:
            for name in h.files:
                rows = h[name]
                rows = [rows[rows[:, 0] == c][:, 1:] for c in range(args.clips)]
                results[name] = _stack(rows, 48)
    parts = []
    for name, hyp in results.items():
        m = mot_metrics(truth, hyp)
        parts.append(f"{name}: MOTA {m['mota']:.3f}, IDF1 {m['idf1']:.3f}, "
                     f"{int(m['num_switches'])} ID switches")
    line = "; ".join(parts) + f" ({args.clips} clips of 48 frames, the same detections for all)"
    print(line)
    append_result("our trackers vs the trackers package", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
