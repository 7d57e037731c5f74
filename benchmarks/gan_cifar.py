"""A conditional DCGAN on the benchmark copy of CIFAR-10: samples and domain FID after 15 and 45
minutes of training on 2 CPU cores.

    python benchmarks/gan_cifar.py                    # 45,000 training images, judge fastnet
    python benchmarks/gan_cifar.py --minutes 15 45 --width 32
    python benchmarks/gan_cifar.py --r1-gamma 0             # without the R1 penalty
    python benchmarks/gan_cifar.py --head ddpm-conditional --minutes 15   # a diffusion model

The 50,000 images are split once (seed 0, as every CIFAR benchmark here): the first 5,000 of
the permutation are held out (the FID is measured against them), the other 45,000 train both
the judge (fastnet, configs/cifar10_fast.yaml, 5 epochs) and the GAN. No recipe is chosen on
the held-out images: the GAN runs cnnlab generate train's defaults. Each evaluation scores
1,000 samples against 1,000 held-out images (a fixed half); the floor is the same measure
between those and 1,000 of the other half. The FIDs are domain FIDs (the judge's embedding), not
comparable with published Inception FIDs (DCGAN's CIFAR-10 figure is an Inception FID).
Appends a row to RESULTS.md; the snapshot grids nearest each budget are copied beside it.
``--head ddpm-conditional`` trains the class-conditional diffusion model instead, from its own
defaults (DIFFUSION_DEFAULTS), on the same images, judge and clock (training steps alone: the
per-epoch evaluations, 25 DDIM steps per image, are not counted), so the two families compare
at equal training time.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import append_result, machine

from cnnlab.config import GENERATE_DEFAULTS, TrainConfig, generate_defaults, is_diffusion
from cnnlab.evaluate.generation import fid_kid, halves, judge_outputs
from cnnlab.generation import train_generator
from cnnlab.run import train_run
from cnnlab.tasks.generate import load_judge

ROOT = Path(__file__).resolve().parents[1]


def split(data: Path, out: Path) -> Path:
    d = np.load(data)
    order = np.random.default_rng(0).permutation(len(d["y"]))
    held, train = order[:5000], order[5000:]
    path = out / "cifar45k.npz"
    np.savez(path, x=d["x"][train], y=d["y"][train], x_test=d["x"][held], y_test=d["y"][held],
             classes=d["classes"])
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"))
    p.add_argument("--minutes", type=float, nargs="+", default=[15, 45])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--r1-gamma", type=float, default=GENERATE_DEFAULTS["r1_gamma"],
                   help="the R1 penalty (default: generate train's; 0: none, with which the "
                        "discriminator wins after about 4 epochs, RESULTS.md)")
    p.add_argument("--r1-every", type=int, default=GENERATE_DEFAULTS["r1_every"],
                   help="R1 on every Kth discriminator step, K times as strong (lazy R1)")
    p.add_argument("--epochs", type=int, default=0, help="0: enough for the longest budget")
    p.add_argument("--head", default="conditional", choices=["conditional", "ddpm-conditional"],
                   help="the conditional GAN or the class-conditional diffusion model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out or tempfile.mkdtemp(prefix="gan-cifar-"))
    out.mkdir(parents=True, exist_ok=True)
    data = split(Path(a.data), out)
    judge_cfg = TrainConfig.load(ROOT / "configs" / "cifar10_fast.yaml")
    judge_cfg = judge_cfg.derive(dataset=f"npz:{data}", out_dir=str(out), name="judge",
                                 threads=a.threads, val_split=0.0)
    judge = train_run(judge_cfg, progress=False, log=lambda s: None)
    print(f"judge: fastnet {100 * judge.metrics['accuracy']:.2f}% on the held-out 5,000", flush=True)
    epochs = a.epochs or 1000  # a cap: the budget ends the run first
    diffusion = is_diffusion(a.head)
    penalty = {} if diffusion else {"r1_gamma": a.r1_gamma, "r1_every": a.r1_every}  # no discriminator
    cfg = TrainConfig(**generate_defaults(a.head)).derive(
        dataset=f"npz:{data}", head=a.head, epochs=epochs, eval_every=1,
        judge=str(judge.path),
        model_kwargs={"width": a.width}, out_dir=str(out), name="gan", threads=a.threads, **penalty)
    budget = max(a.minutes) * 60

    def stop_after_budget(line: str) -> None:  # the run is cut once the longest budget is spent
        print(line, flush=True)
        results = out / "gan" / "results.csv"
        rows = list(csv.DictReader(open(results))) if results.is_file() else []
        if rows and float(rows[-1]["train_elapsed"]) >= budget:
            raise KeyboardInterrupt

    try:
        train_generator(cfg, log=stop_after_budget, progress=False, report=False)
    except KeyboardInterrupt:
        pass
    rows = [r for r in csv.DictReader(open(out / "gan" / "results.csv")) if r["val_score"]]
    held = load_judge(str(judge.path))
    d = np.load(data)
    x_held = torch.from_numpy(d["x_test"]).permute(0, 3, 1, 2).contiguous()
    f_held = judge_outputs(held, x_held)[0]
    first, second = halves(len(x_held), 1000)  # the halves each evaluation compares with
    floor = fid_kid(f_held[first], f_held[second])["fid"]
    parts = [f"judge fastnet {100 * judge.metrics['accuracy']:.1f}% on the held-out 5,000; floor "
             f"(1,000 held-out images against 1,000 others) {floor:.3f}"]
    for minutes in a.minutes:
        r = min(rows, key=lambda r: abs(float(r["train_elapsed"]) - 60 * minutes))
        e = int(r["epoch"])
        fid = float(r["val_score"])
        parts.append(f"after {float(r['train_elapsed']) / 60:.1f} min (epoch {e}): domain FID "
                     f"{fid:.3f} ({fid / floor:.1f}x the floor), KID {float(r['val_kid']):.4f}, "
                     f"classes produced {100 * float(r['val_coverage']):.0f}%")
        shot = out / "gan" / "snapshots" / f"epoch-{e:03d}.png"
        if shot.is_file():
            stem = "ddpm_cifar" if diffusion else "gan_cifar"
            shutil.copy(shot, ROOT / "benchmarks" / f"{stem}_{int(minutes)}min.png")
    words = "; ".join(parts)
    print(words)
    if diffusion:
        what = (f"class-conditional diffusion model on CIFAR-10 (45,000 images, UNet width {a.width}, "
                f"cnnlab generate train --head {a.head}'s defaults, DDIM 25 steps)")
    else:
        r1 = f"R1 gamma {a.r1_gamma:g} every {a.r1_every} steps" if a.r1_gamma else "no R1"
        what = (f"conditional DCGAN on CIFAR-10 (45,000 images, width {a.width}, cnnlab generate "
                f"train's defaults, {r1})")
    append_result(f"{what}, domain FID against the held-out 5,000", words,
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
