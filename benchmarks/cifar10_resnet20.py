"""ResNet-20 on the provided CIFAR-10 copy: validation accuracy and wall time per epoch.

    python benchmarks/cifar10_resnet20.py --epochs 15

Trains configs/cifar10_resnet20.yaml on npz:../shared/data/cifar10/train.npz with 5,000
images held out for validation, prints the numbers and appends a row to
benchmarks/RESULTS.md with the date, the machine and the command.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

from common import append_result, machine

import cnnlab

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="runs/bench")
    p.add_argument("--from-run", help="record a finished run folder instead of training")
    a = p.parse_args()
    if a.from_run:
        record(cnnlab.load_run(a.from_run), None)
        return
    cfg = cnnlab.TrainConfig.load(ROOT / "configs/cifar10_resnet20.yaml")
    cfg.dataset, cfg.val_split, cfg.epochs, cfg.seed = f"npz:{a.data}", 5000, a.epochs, a.seed
    cfg.out_dir, cfg.name = a.out_dir, f"resnet20-e{a.epochs}-s{a.seed}-{time.strftime('%H%M%S')}"
    t0 = time.perf_counter()
    run = cnnlab.train(cfg, progress=False)
    record(run, time.perf_counter() - t0)


def record(run, wall: float | None) -> None:
    """Print and append the run's numbers; ``wall`` is the whole command's time, if measured."""
    m = run.metrics
    with open(run.path / "results.csv") as f:
        epoch_times = [float(r["epoch_time"]) for r in csv.DictReader(f)]
    per_epoch = statistics.median(epoch_times)
    total = f"whole command {wall / 60:.1f} min" if wall else f"training {sum(epoch_times) / 60:.1f} min"
    line = (f"val acc {100 * m['accuracy']:.2f}% ({m['epochs']} epochs, seed {run.config.seed}); "
            f"median {per_epoch:.1f} s/epoch; {m['train_images_per_s']:.0f} train img/s; {total}")
    print(line)
    append_result("resnet20, CIFAR-10 (45k train / 5k val)", line, " ".join(["python", *sys.argv]),
                  machine())


if __name__ == "__main__":
    main()
