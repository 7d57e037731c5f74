"""`cnnlab scenes` at its full budget: the four heads, the pose comparison, pose on detected boxes.

    python benchmarks/scenes_full.py

Trains a small digits run to hang the analysis on, then the detector, the U-Net and both pose
heads on 2,000 scenes (ResNet-20, 12 epochs each) as its sub-runs, and appends one row to
RESULTS.md: each task's score, the McNemar test of the pose heads on the same keypoints, and
keypoint AP on ground-truth and on detected boxes.
"""

from __future__ import annotations

import sys
import tempfile

from common import append_result, machine

import cnnlab
from cnnlab.analysis import run_analysis


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        run = cnnlab.train(cnnlab.TrainConfig(epochs=1, out_dir=out, name="base"), log=lambda s: None,
                           report=False)
        res = run_analysis(run, "scenes", log=lambda s: None)
    scores = ", ".join(f"{r['task']} {r['score_name']} {r['score']:.3f} ({r['train_time_s']:.0f} s)"
                       for r in res["rows"])
    system = "; ".join(f"{k.replace('pose-', '')}: keypoint AP {v['gt_boxes']['ap']:.3f} on true boxes, "
                       f"{v['detected_boxes']['ap']:.3f} on detected boxes "
                       f"(AP50 {v['detected_boxes']['ap50']:.3f})" for k, v in res["system"].items())
    line = f"{scores}. {res['pose']['words']} {system}"
    print(line)
    append_result("cnnlab scenes, full budget (2,000 scenes, 12 epochs)", line,
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
