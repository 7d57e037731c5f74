"""Is the learning-rate range test's suggestion near the best learning rate of a sweep?

    python benchmarks/lr_find.py                 # digits (LeNet-5) and shapes (fastnet)
    python benchmarks/lr_find.py --seeds 3

For each dataset: the range test on the recipe (cnnlab lr-find), then the same recipe trained
at every learning rate of a factor-2 grid, each with --seeds seeds, scored on a validation
hold-out (the official test split is never used to choose). Prints the suggestion, the best
learning rate of the sweep, their ratio (the target: within 2x) and the accuracy each gives,
and appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

import torch
from common import append_result, machine

from cnnlab.config import TrainConfig
from cnnlab.data import data_for
from cnnlab.log import silent
from cnnlab.run import train_run
from cnnlab.tasks.runs import prepare_task_data
from cnnlab.training.lr_find import lr_range_test

RECIPES = {
    "digits": dict(dataset="digits", model="lenet5", epochs=30, batch_size=64, val_split=300),
    "shapes": dict(dataset="shapes", image_size=24, limit_train=2000, model="fastnet",
                   model_kwargs={"widths": [16, 32, 64]}, epochs=10, batch_size=64, val_split=500,
                   label_smoothing=0.0),
}
GRID = [0.00625 * 2**k for k in range(10)]  # 0.00625 .. 3.2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--only", default="", help="comma-separated recipes (default: all)")
    a = p.parse_args()
    torch.set_num_threads(1)
    out, rows = tempfile.mkdtemp(), []
    for name, recipe in RECIPES.items():
        if a.only and name not in a.only.split(","):
            continue
        cfg = TrainConfig(**recipe, threads=1, checkpoints=0, out_dir=out)
        found = lr_range_test(cfg, prepare_task_data(cfg.task, data_for(cfg)), log=silent)
        scores = {}
        for lr in GRID:
            accs = [train_run(cfg.derive(lr=lr, seed=s, name=f"{name}-{lr:g}-{s}"), log=silent,
                              progress=False).metrics["accuracy"] for s in range(a.seeds)]
            scores[lr] = statistics.mean(accs)
            print(f"{name}: lr {lr:<8g} validation accuracy {100 * scores[lr]:.2f}%", flush=True)
        best = max(scores, key=scores.get)
        s = found["suggestion"]
        at = train_run(cfg.derive(lr=s, name=f"{name}-suggested"), log=silent, progress=False)
        ratio = max(s, best) / min(s, best)
        line = (f"{name} ({cfg.model}, {cfg.epochs} epochs): suggestion {s:.3g} (steepest "
                f"{found['steepest']:.3g}, minimum/10 {found['minimum_over_10']:.3g}); sweep best "
                f"{best:g} ({100 * scores[best]:.2f}% over {a.seeds} seeds); ratio {ratio:.2f}x "
                f"({'within' if ratio <= 2 else 'NOT within'} 2x); at the suggestion "
                f"{100 * at.metrics['accuracy']:.2f}% (seed 0)")
        print(line, flush=True)
        rows.append(line)
    append_result("learning-rate range test vs a factor-2 sweep (validation hold-out)",
                  "; ".join(rows), " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
