"""Our detector against torchvision's FCOS on the same data, backbone and wall-clock budget.

    python benchmarks/detect_reference.py [--seeds 0 1] [--epochs 12] [--n 2000]

Both train through cnnlab's one trainer (`cnnlab detect train`, head centernet or fcos) on
scenes (2,000 training images, 64 px; scored on the 500-image test split) on a ResNet-20
backbone. Ours trains for ``--epochs``; FCOS then gets as many epochs as fit in the same
training time (measured from its own first run's epoch time), so neither gets more time.
Prints and appends to RESULTS.md: mAP@0.5:0.95 and mAP@0.5 per seed, mean and spread,
parameters, training time, training and inference images per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from common import append_result, machine

import cnnlab
from cnnlab.config import TrainConfig
from cnnlab.data import data_for
from cnnlab.tasks.detect import detect_images

RECIPE = dict(task="detect", model="resnet20", batch_size=32, optimizer="adamw",
              lr=0.003, weight_decay=0.0005)


def train(head: str, seed: int, epochs: int, n: int, out: str):
    cfg = TrainConfig(**RECIPE, head=head, seed=seed, epochs=epochs, dataset=f"scenes:n={n}",
                      out_dir=out, name=f"{head}-{seed}")
    return cnnlab.train(cfg, log=lambda s: None, report=False)


def inference_speed(run) -> float:
    """Evaluation images per second of ``detect`` (decoding and NMS included), batch 100."""
    model, x = run.load_model(), data_for(run.config).eval.x
    detect_images(model, x[:100])  # warm-up
    t0 = time.perf_counter()
    detect_images(model, x, bf16=run.metrics["precision"] == "bf16")
    return len(x) / (time.perf_counter() - t0)


def train_seconds(run) -> float:
    """Training time alone (the per-epoch evaluations excluded), from results.csv."""
    import csv

    with open(run.path / "results.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1]["train_elapsed"])


def row(run) -> dict:
    m = run.metrics
    return {"map": m["map"], "map_50": m["map_50"], "params": m["params"], "time": train_seconds(run),
            "train_ips": m["train_images_per_s"], "infer_ips": inference_speed(run),
            "epochs": m["epochs"]}


def summary(name: str, rows: list[dict]) -> str:
    maps = [r["map"] for r in rows]
    spread = f" ± {statistics.stdev(maps):.3f}" if len(maps) > 1 else ""
    return (f"{name}: mAP@0.5:0.95 {statistics.mean(maps):.3f}{spread} "
            f"({', '.join(f'{v:.3f}' for v in maps)}), mAP@0.5 "
            f"{statistics.mean(r['map_50'] for r in rows):.3f}, {rows[0]['params']:,} parameters, "
            f"{rows[0]['epochs']} epochs in {statistics.mean(r['time'] for r in rows):.0f} s, "
            f"train {statistics.mean(r['train_ips'] for r in rows):.0f} img/s, inference "
            f"{statistics.mean(r['infer_ips'] for r in rows):.0f} img/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    ours, ref = [], []
    with tempfile.TemporaryDirectory() as out:
        for seed in args.seeds:
            ours.append(row(train("centernet", seed, args.epochs, args.n, out)))
        budget = statistics.mean(r["time"] for r in ours)
        probe = train_seconds(train("fcos", 100, 1, args.n, out))
        fcos_epochs = max(1, int(budget // probe))
        for seed in args.seeds:
            ref.append(row(train("fcos", seed, fcos_epochs, args.n, out)))
    lines = [summary("ours (CenterNet-style, ResNet-20)", ours),
             summary("torchvision FCOS (ResNet-20, 2 levels)", ref)]
    gap = statistics.mean(r["map"] for r in ours) - statistics.mean(r["map"] for r in ref)
    lines.append(f"difference (ours - FCOS): {gap:+.3f} mAP@0.5:0.95 at "
                 f"{statistics.mean(r['time'] for r in ours):.0f} s vs "
                 f"{statistics.mean(r['time'] for r in ref):.0f} s of training")
    for line in lines:
        print(line)
    append_result("detection vs reference (scenes 64 px)", "; ".join(lines),
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
