"""Inference speed: images per second for resnet20 and fastnet on the CPU.

    python benchmarks/predict_throughput.py --run runs/bench/RESNET20_RUN

Two numbers per model: the model alone (``Run.predict`` on 10,000 in-memory images, batches
of 500, torch.inference_mode, channels_last), and the whole ``cnnlab predict`` command on a
folder of 10,000 PNG files (start-up, decoding, resizing and the CSV included). Without a
fastnet run, one is trained for a single short epoch: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import append_result, machine
from PIL import Image

import cnnlab

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/cifar10/train.npz"


def fastnet_run() -> cnnlab.Run:
    cfg = cnnlab.TrainConfig.load(ROOT / "configs/cifar10_fast.yaml")
    cfg.dataset, cfg.val_split, cfg.epochs, cfg.limit_train = f"npz:{DATA}", 5000, 1, 2000
    cfg.out_dir, cfg.name = tempfile.mkdtemp(), "fastnet"
    return cnnlab.train(cfg, progress=False, report=False, log=lambda s: None)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", help="a resnet20 run folder")
    p.add_argument("--n", type=int, default=10_000)
    a = p.parse_args()
    images = np.load(DATA)["x"][: a.n]  # (N, 32, 32, 3) uint8
    folder = Path(tempfile.mkdtemp())
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    runs = [cnnlab.load_run(a.run)] if a.run else []
    for run in [*runs, fastnet_run()]:
        run.predict(images[:500])  # warm-up
        t0 = time.perf_counter()
        run.predict(images)
        model_ips = len(images) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(run.path), str(folder),
                        "--out", str(folder / "preds.csv")], check=True, stdout=subprocess.DEVNULL)
        cli_ips = len(images) / (time.perf_counter() - t0)
        line = (f"{run.config.model} (tta {run.config.tta}): model alone {model_ips:,.0f} img/s; "
                f"`cnnlab predict` on {len(images):,} PNG files {cli_ips:,.0f} img/s end to end")
        print(line)
        append_result("inference speed", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
