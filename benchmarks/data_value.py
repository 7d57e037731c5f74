"""Finding bad training data, measured: flip 10% of the labels, rank, remove, retrain.

    python benchmarks/data_value.py [--datasets digits,shapes,cifar10] [--noise 0.1] [--folds 3]

For each dataset a clean model is trained with its recipe, then the value analysis
(src/cnnlab/analysis/value.py) trains a copy on labels of which `noise` were flipped (seeded,
recorded), ranks the training images by KNN-Shapley (K = 5, 10), TracIn self-influence,
training loss, cleanlab on k-fold out-of-fold probabilities, and at random, and reports
precision = recall at k (k = the number flipped). It then removes the lowest-ranked 10% by each
ranking, retrains, and compares accuracy with the noisy model (McNemar, paired). Budgets:

    digits   LeNet-5, the main job's recipe (30 epochs), all 1,437 training images
    shapes   fastnet 16/32/64 on 32x32 shapes, 2,000 training images, 8 epochs
    cifar10  fastnet 32/128/128 with cifar10_fast.yaml, a 10,000-image subset of the provided
             training images (5,000 others held out for validation), 8 epochs

Prints every row and appends a summary per dataset to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import append_result, machine

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.pipeline import recipe

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared/data/cifar10/train.npz"


def config(name: str) -> cnnlab.TrainConfig:
    if name == "digits":
        return recipe("digits", threads=0)
    if name == "shapes":
        return cnnlab.TrainConfig(dataset="shapes", image_size=32, limit_train=2000, epochs=8,
                                  model="fastnet", model_kwargs={"widths": [16, 32, 64]}, lr=0.2,
                                  label_smoothing=0.2, crop_padding=2)
    cfg = cnnlab.TrainConfig.load(ROOT / "configs/cifar10_fast.yaml")
    cfg.dataset, cfg.val_split, cfg.limit_train = f"npz:{CIFAR}", 5000, 10_000
    cfg.epochs = cfg.eval_every = 8
    return cfg


def measure(name: str, noise: float, folds: int, out: str) -> None:
    cfg = config(name)
    cfg.out_dir, cfg.name = out, name
    t0 = time.perf_counter()
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    res = run_analysis(run, "value", noise=noise, folds=folds, retrain=noise, log=print)
    seconds = time.perf_counter() - t0
    found = ", ".join(f"{r['ranking']} {100 * r['precision']:.1f}%"
                      for r in res["detection"]["rankings"])
    retrain = res["retrain"]["rows"]
    before = retrain[0]["accuracy"]
    after = "; ".join(f"{r['ranking']} {100 * r['accuracy']:.2f}% ({r['verdict']})" for r in retrain[1:])
    line = (f"{name}, {res['n_train']:,} training images, {100 * noise:.0f}% flipped (k = "
            f"{res['detection']['k']}): P@k {found}. Remove {100 * noise:.0f}% and retrain, "
            f"accuracy before {100 * before:.2f}%: {after}. All trainings {seconds:.0f} s")
    print(line)
    append_result("finding flipped labels, remove and retrain", line,
                  " ".join(["python", *sys.argv]), machine())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", default="digits,shapes,cifar10")
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--folds", type=int, default=3)
    a = p.parse_args()
    out = tempfile.mkdtemp()
    for name in a.datasets.split(","):
        if name == "cifar10" and not CIFAR.is_file():
            print(f"skipped cifar10: {CIFAR} not found")
            continue
        measure(name, a.noise, a.folds, out)


if __name__ == "__main__":
    main()
