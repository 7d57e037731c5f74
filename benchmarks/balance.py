"""Class imbalance: does --balance sampler or loss help the rare classes, and at what cost?

    python benchmarks/balance.py               # digits skewed 20:1, LeNet-5, 3 seeds
    python benchmarks/balance.py --ratio 50

The digits training split is thinned so class k keeps a share that falls geometrically from
all of class 0 to 1/ratio of class 9; the test split stays balanced. Three arms on the same
images: as the data comes, --balance sampler, --balance loss. Per arm: accuracy, balanced
accuracy (the mean of per-class recalls) and the worst class's recall; each fix minus plain
training as a Welch interval over seeds. Appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import append_result, machine

from cnnlab.config import TrainConfig
from cnnlab.data import load_dataset
from cnnlab.evaluate.stats import difference_words, mean_difference_ci
from cnnlab.io import load_npz
from cnnlab.log import silent
from cnnlab.run import train_run


def skewed(out: Path, ratio: float) -> tuple[Path, list[int]]:
    d = load_dataset("digits")
    x, y = d.train.x.numpy()[:, 0], d.train.y.numpy()
    rng = np.random.default_rng(0)
    keep = []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        keep.append(idx[:max(2, round(len(idx) * ratio ** (-c / 9)))])
    keep = np.concatenate(keep)
    path = out / "skewed.npz"
    np.savez(path, x=x[keep], y=y[keep], x_test=d.test.x.numpy()[:, 0], y_test=d.test.y.numpy())
    return path, np.bincount(y[keep], minlength=10).tolist()


def scores(run) -> dict:
    pred = load_npz(run.path / "predictions.npz")
    hit, y = pred["probs"].argmax(1) == pred["y"], pred["y"]
    recall = [hit[y == c].mean() for c in range(10)]
    return {"accuracy": hit.mean(), "balanced": float(np.mean(recall)), "worst": float(min(recall))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ratio", type=float, default=20.0)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp())
    data, counts = skewed(out, a.ratio)
    res = {arm: [] for arm in ("none", "sampler", "loss")}
    for seed in range(a.seeds):
        for arm in res:
            cfg = TrainConfig(dataset=f"npz:{data}", model="lenet5", epochs=a.epochs, seed=seed,
                              balance="" if arm == "none" else arm, threads=1, checkpoints=0,
                              out_dir=str(out), name=f"{arm}-{seed}")
            res[arm].append(scores(train_run(cfg, log=silent, progress=False)))
    parts = [f"training images per class {counts}"]
    for arm, runs in res.items():
        line = f"{arm}: " + ", ".join(f"{k} {100 * statistics.mean(r[k] for r in runs):.2f}%"
                                      for k in ("accuracy", "balanced", "worst"))
        if arm != "none":
            for k in ("balanced", "worst"):
                ci = mean_difference_ci([r[k] for r in res["none"]], [r[k] for r in runs])
                line += f"; {k} minus none {difference_words(ci)}"
        print(line, flush=True)
        parts.append(line)
    append_result(f"class imbalance, digits skewed {a.ratio:g}:1 (LeNet-5, {a.epochs} epochs, "
                  f"{a.seeds} seeds, balanced test split)", "; ".join(parts),
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
