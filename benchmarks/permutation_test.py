"""The permutation test, measured: MLP and CNN on original and pixel-permuted images.

    python benchmarks/permutation_test.py --dataset shapes --seeds 3 --cnn resnet20
    python benchmarks/permutation_test.py --dataset npz:../shared/data/cifar10/train.npz \
        --val-split 5000 --limit-train 10000 --cnn lenet5

Trains the base recipe of `cnnlab run` and the four arms over the seeds; records mean +- std
per arm and the verdicts with their intervals (Welch over seeds, bootstrap over images).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import append_result, machine

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.pipeline import recipe


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--cnn", default="lenet5")
    p.add_argument("--epochs", type=int, default=0)
    p.add_argument("--val-split", type=float, default=0)
    p.add_argument("--limit-train", type=int, default=0)
    a = p.parse_args()
    cfg = recipe(a.dataset, a.epochs, limit_train=a.limit_train, model=a.cnn)
    cfg.val_split, cfg.out_dir, cfg.name = a.val_split, tempfile.mkdtemp(), "base"
    run = cnnlab.train(cfg, progress=False, report=False, log=lambda s: None)
    res = run_analysis(run, "permutation", cnn=a.cnn, seeds=a.seeds, log=lambda s: None)
    arms = "; ".join(f"{k} {100 * v['mean']:.2f} ± {100 * v['std']:.2f}%" for k, v in res["arms"].items())
    classes = len(run.metrics["per_class"])
    line = f"{a.dataset} ({classes} classes, {cfg.epochs} epochs): {arms}. {' '.join(res['verdicts'])}"
    print(line)
    append_result("permutation test", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
