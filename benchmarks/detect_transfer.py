"""Detection on small data: a detector whose backbone was pretrained on a classification task,
against the same detector from scratch, on the same 100 scenes and epochs.

    python benchmarks/detect_transfer.py                 # 100 scenes, 3 seeds
    python benchmarks/detect_transfer.py --scenes 200 --seeds 2

Pretraining: ResNet-20 (width 16) classifies 4,000 single shapes (64 px, seed 0). Then
CenterNet on ``scenes:n=N`` (the same four shapes, several per scene) for the same epochs,
from that backbone (``--init-from``, the classifier's head dropped) or from scratch; mAP@0.5:0.95
on the scenes' test split for each seed, the gain a Welch interval over seeds. Appends a row to
RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from common import append_result, machine

from cnnlab.config import TrainConfig
from cnnlab.evaluate.stats import difference_words, mean_difference_ci
from cnnlab.log import silent
from cnnlab.run import Run, train_run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--pretrain-epochs", type=int, default=8)
    p.add_argument("--out", default="", help="folder of the runs (a finished pretraining there is reused)")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = a.out or tempfile.mkdtemp()
    body = {"model": "resnet20", "model_kwargs": {"width": 16}, "threads": 1, "checkpoints": 0,
            "out_dir": out}
    pre_cfg = TrainConfig(dataset="shapes", image_size=64, limit_train=4000, epochs=a.pretrain_epochs,
                          batch_size=64, lr=0.1, name="pretrain", **body)
    done = Path(out) / "pretrain" / "metrics.json"
    pre = Run(done.parent) if done.is_file() else train_run(pre_cfg, log=silent, progress=False)
    print(f"pretrained classifier: {100 * pre.metrics['accuracy']:.1f}% on shapes "
          f"({pre.metrics['train_time_s']:.0f} s)", flush=True)
    maps = {"from scratch": [], "from the classifier": []}
    for seed in range(a.seeds):
        for arm, start in (("from scratch", ""), ("from the classifier", str(pre.path))):
            cfg = TrainConfig(task="detect", dataset=f"scenes:n={a.scenes}", image_size=64, epochs=a.epochs,
                              batch_size=16, optimizer="adamw", lr=0.003, weight_decay=5e-4, seed=seed,
                              eval_every=a.epochs, init_from=start,
                              name=f"{'start' if start else 'scratch'}-{seed}", **body)
            run = train_run(cfg, log=silent, progress=False)
            maps[arm].append(run.metrics["map"])
            print(f"seed {seed}, {arm}: mAP@0.5:0.95 {run.metrics['map']:.3f} "
                  f"({run.metrics['train_time_s']:.0f} s)", flush=True)
    ci = mean_difference_ci(maps["from scratch"], maps["from the classifier"])
    line = (f"{a.scenes} training scenes, {a.epochs} epochs, {a.seeds} seeds: mAP@0.5:0.95 from scratch "
            f"{statistics.mean(maps['from scratch']):.3f}, from the pretrained classifier "
            f"{statistics.mean(maps['from the classifier']):.3f}; the start minus scratch "
            f"{difference_words(ci, scale=1.0, what='mAP')} (classifier pretrained "
            f"{a.pretrain_epochs} epochs on 4,000 shapes, {100 * pre.metrics['accuracy']:.1f}%)")
    print(line)
    append_result("detection on small data: a pretrained backbone vs scratch", line,
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
