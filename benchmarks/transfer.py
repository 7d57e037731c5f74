"""Transfer learning on split CIFAR-10: pretrain on five classes, fine-tune on the other five
with 10, 50 and 250 images per class, against training from scratch.

    python benchmarks/transfer.py                     # the benchmark copy of CIFAR-10
    python benchmarks/transfer.py --sizes 50 --seeds 2

The 50,000 benchmark images are split once (seed 0): 5,000 held out that nothing is chosen on
(the scores below), 5,000 validation (unused here), the rest the pool. Pretraining: fastnet on
every pool image of classes 0-4 (airplane .. deer). Fine-tuning data: N pool images of each of
classes 5-9 (dog .. truck), drawn anew for each seed. Three arms on the same images, recipe
and epochs: from scratch; a linear probe (the pretrained body frozen throughout, BatchNorm
too: --freeze-epochs = epochs); fine-tuned (the body frozen for 3 epochs, then everything at a
tenth of the head's learning rate). Scored on the held-out images of classes 5-9; the gain of
each arm over scratch is a Welch interval over seeds. Appends a row to RESULTS.md.
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
from cnnlab.evaluate.stats import difference_words, mean_difference_ci
from cnnlab.log import silent
from cnnlab.run import train_run

ROOT = Path(__file__).resolve().parents[1]
RECIPE = dict(model="fastnet", model_kwargs={"widths": [32, 64, 128]}, batch_size=64,
              optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
              warmup_epochs=1, schedule="cosine", label_smoothing=0.1, crop_padding=2, flip=True,
              threads=1, checkpoints=0)


def splits(data: Path, out: Path) -> tuple[Path, dict, np.ndarray, np.ndarray]:
    """The pretraining npz (classes 0-4), and the pool and held-out images of classes 5-9."""
    d = np.load(data)
    x, y, classes = d["x"], d["y"].astype(np.int64), [str(c) for c in d["classes"]]
    order = np.random.default_rng(0).permutation(len(y))
    held, pool = order[:5000], order[10_000:]
    a = pool[y[pool] < 5]
    ha = held[y[held] < 5]
    pre = out / "pretrain.npz"
    np.savez(pre, x=x[a], y=y[a], x_test=x[ha], y_test=y[ha], classes=np.array(classes[:5]))
    hb = held[y[held] >= 5]
    return pre, {"x": x, "y": y, "classes": classes[5:]}, pool[y[pool] >= 5], hb


def small_set(src: dict, pool: np.ndarray, held: np.ndarray, n: int, seed: int, out: Path) -> Path:
    rng = np.random.default_rng(100 + seed)
    pick = np.concatenate([rng.choice(pool[src["y"][pool] == c], n, replace=False)
                           for c in range(5, 10)])
    path = out / f"b-{n}-{seed}.npz"
    np.savez(path, x=src["x"][pick], y=src["y"][pick] - 5, x_test=src["x"][held],
             y_test=src["y"][held] - 5, classes=np.array(src["classes"]))
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"))
    p.add_argument("--sizes", default="10,50,250", help="images per class for fine-tuning")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=30, help="epochs of every small-data arm")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp())
    pre_npz, src, pool, held = splits(Path(a.data), out)
    pre = train_run(TrainConfig(dataset=f"npz:{pre_npz}", epochs=a.pretrain_epochs, out_dir=str(out),
                                name="pretrain", **RECIPE | {"batch_size": 256, "lr": 0.4}),
                    log=silent, progress=False)
    print(f"pretrained on {len(pre.data().train):,} images of classes 0-4: held-out accuracy "
          f"{100 * pre.metrics['accuracy']:.2f}% ({pre.metrics['train_time_s']:.0f} s)", flush=True)
    arms = {"scratch": {}, "linear probe": {"init_from": str(pre.path), "freeze_epochs": a.epochs},
            "fine-tuned": {"init_from": str(pre.path), "freeze_epochs": 3, "body_lr_scale": 0.1}}
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        acc = {arm: [] for arm in arms}
        for seed in range(a.seeds):
            data = small_set(src, pool, held, n, seed, out)
            for arm, change in arms.items():
                cfg = TrainConfig(dataset=f"npz:{data}", epochs=a.epochs, seed=seed, out_dir=str(out),
                                  name=f"{arm.replace(' ', '-')}-{n}-{seed}", **RECIPE | change)
                acc[arm].append(train_run(cfg, log=silent, progress=False).metrics["accuracy"])
        for arm, values in acc.items():
            line = f"{n}/class, {arm}: {100 * statistics.mean(values):.2f}% (seeds: " + ", ".join(
                f"{100 * v:.1f}" for v in values) + ")"
            if arm != "scratch":
                ci = mean_difference_ci(acc["scratch"], values)
                line += f"; minus scratch {difference_words(ci)}"
            print(line, flush=True)
            rows.append(line)
    summary = (f"pretrained fastnet (32/64/128) on {len(pre.data().train):,} images of classes 0-4 "
               f"({100 * pre.metrics['accuracy']:.1f}% held out); fine-tuned on classes 5-9, "
               f"{a.epochs} epochs, scored on {len(held):,} held-out images: " + "; ".join(rows))
    append_result("transfer learning, split CIFAR-10 (benchmark copy)", summary,
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
