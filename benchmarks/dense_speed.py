"""Segmentation and pose on scenes with the full recipe: score, training and inference speed.

    python benchmarks/dense_speed.py [--epochs 12] [--n 2000] [--tasks segment pose-regression pose-heatmap]

Each task trains through `cnnlab detect train` (ResNet-20 backbone, AdamW 0.003, batch 32) on
2,000 scenes of 64 px and is scored on the 500-image test split: mIoU for segmentation;
PCK@0.1 and OKS keypoint AP on ground-truth boxes for pose (whose images are the objects'
32 px crops, about 2.5 per scene). Detection's numbers come from detect_reference.py; the
pose heads' McNemar test on the same keypoints is in `cnnlab scenes`. Appends rows to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from common import append_result, machine

import cnnlab
from cnnlab.config import TrainConfig
from cnnlab.data import data_for
from cnnlab.tasks import get_task

RECIPE = dict(model="resnet20", batch_size=32, optimizer="adamw", lr=0.003, weight_decay=0.0005)
TASKS = {"segment": ("segment", ""), "pose-regression": ("pose", "regression"),
         "pose-heatmap": ("pose", "heatmap")}


def inference_speed(run) -> float:
    """Evaluation images (crops for pose) per second of the task's own evaluation pass."""
    task = get_task(run.config.task)
    val = task.prepare(data_for(run.config)).eval
    model = run.load_model()
    bf16 = run.metrics["precision"] == "bf16"
    t0 = time.perf_counter()
    task.evaluate(model, val, "cpu", bf16)
    return len(val) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        for label in args.tasks:
            task, head = TASKS[label]
            cfg = TrainConfig(**RECIPE, task=task, head=head, dataset=f"scenes:n={args.n}",
                              epochs=args.epochs, out_dir=out, name=label)
            run = cnnlab.train(cfg, log=lambda s: None, report=False)
            m = run.metrics
            extra = (f", keypoint AP {m['ap']:.3f} (AP50 {m['ap50']:.3f}), {m['n_objects']} objects"
                     if task == "pose" else f", pixel accuracy {m['pixel_accuracy']:.3f}")
            line = (f"{label}: {m['score_name']} {m['score']:.3f}{extra}; {m['params']:,} parameters, "
                    f"{args.epochs} epochs in {m['train_time_s']:.0f} s, train "
                    f"{m['train_images_per_s']:.0f} img/s, inference {inference_speed(run):.0f} img/s")
            print(line, flush=True)
            append_result(f"{label} (scenes 64 px)", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
