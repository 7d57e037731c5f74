"""Time to accuracy: run a training recipe over N seeds and measure everything a user waits for.

    python benchmarks/time_to_accuracy.py configs/cifar10_fast.yaml --seeds 3

Each seed runs the real command, `cnnlab train --config RECIPE --dataset npz:... --val-split
5000 --seed S`, in a subprocess: the wall time covers start-up, data loading, training and
evaluation. Printed per seed and as mean +- std: validation accuracy, wall time, training
images per second, nominal GFLOP/s and peak memory. A row goes to RESULTS.md with the date,
the machine, the load average and the exact command.

"Nominal" GFLOP/s are the FLOPs torch.utils.flop_counter counts for a direct convolution
(one forward+backward step) over the measured time. oneDNN may compute some convolutions
with fewer real operations (Winograd), so nominal GFLOP/s can exceed what the arithmetic
units do; they are set beside a measured peak, the GFLOP/s of a large fp32 matrix product
(torch.mm) on the same machine and threads, not beside a formula.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import append_result, machine
from torch.utils.flop_counter import FlopCounterMode

import cnnlab

ROOT = Path(__file__).resolve().parents[1]


def train_flops_per_image(cfg: cnnlab.TrainConfig, shape=(3, 32, 32), classes: int = 10) -> float:
    """FLOPs of one training step (forward + backward) per image."""
    model = cnnlab.create_model(cfg.model, num_classes=classes, in_channels=shape[0],
                                image_size=shape[1], **cfg.model_kwargs)
    x, y = torch.rand(8, *shape), torch.randint(0, classes, (8,))
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 8


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 GFLOP/s of torch.mm on n x n matrices: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def reached(times: dict) -> str:
    """'85%: 427 s, 90%: 877 s, 93%: never' from the trainer's time to accuracy."""
    return ", ".join(f"{100 * float(t):.0f}%: " + ("never" if s is None else f"{s:.0f} s")
                     for t, s in times.items())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("recipe")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first_seed .. first_seed+seeds-1")
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"))
    p.add_argument("--extra", default="", help="extra flags for cnnlab train, e.g. '--epochs 5'")
    a = p.parse_args()
    cfg = cnnlab.TrainConfig.load(a.recipe)
    flops_img = train_flops_per_image(cfg)
    peak = gemm_gflops()
    out = tempfile.mkdtemp()
    rows = []
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        cmd = [sys.executable, "-m", "cnnlab", "train", "--config", a.recipe, "--dataset",
               f"npz:{a.data}", "--val-split", "5000", "--seed", str(seed), "--out-dir", out,
               "--name", f"s{seed}", *a.extra.split()]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        m = json.loads((Path(out) / f"s{seed}" / "metrics.json").read_text())
        gflops = flops_img * m["train_images_per_s"] / 1e9
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows.append({"acc": m["accuracy"], "wall": wall, "ips": m["train_images_per_s"],
                     "gflops": gflops, "rss": rss, "reach": m.get("time_to_accuracy", {})})
        print(f"seed {seed}: val acc {100 * m['accuracy']:.2f}%  wall {wall:.1f}s  "
              f"{m['train_images_per_s']:.0f} img/s  {gflops:.1f} nominal GFLOP/s  "
              f"peak RSS {rss:.0f} MiB  training seconds to reach {reached(rows[-1]['reach'])}",
              flush=True)

    def ms(key: str, scale: float = 1.0) -> str:
        vals = [r[key] * scale for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.2f} ± {sd:.2f}"

    reach = "; ".join(f"seed {a.first_seed + i}: {reached(r['reach'])}" for i, r in enumerate(rows)
                      if any(v is not None for v in r["reach"].values()))
    summary = (f"val acc {ms('acc', 100)}% over {len(rows)} seeds; wall {ms('wall')} s; "
               f"{ms('ips')} img/s; {ms('gflops')} nominal GFLOP/s (a 2048x2048 fp32 torch.mm "
               f"measures {peak:.0f} GFLOP/s here); peak RSS {max(r['rss'] for r in rows):.0f} MiB"
               + (f"; training seconds to reach each accuracy (evaluated epochs only): {reach}"
                  if reach else ""))
    print(summary)
    recipe = f"{Path(a.recipe).name} ({cfg.model} {cfg.model_kwargs}, {cfg.epochs} epochs) {a.extra}"
    append_result(f"time to accuracy, {recipe}".strip(), summary,
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
