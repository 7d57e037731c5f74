"""The compute-optimal frontier of fastnet on CIFAR-10: validation accuracy against wall time,
for several widths and epoch counts, with one recipe (configs/cifar10_fast.yaml's tricks).

    python benchmarks/frontier.py --widths 0.25 0.5 0.75 1 --epochs 3 5 8 --seeds 1
    python benchmarks/frontier.py --plot-only          # redraw benchmarks/frontier.png

Each point runs the real command, `cnnlab train --config configs/cifar10_fast.yaml --model-kwargs
{widths: [...]} --epochs E --eval-every E`, on the provided CIFAR-10 (45,000 train / 5,000
validation, fixed hold-out), in a subprocess; the wall time covers everything a user waits for.
Width w scales full-width fastnet's (64, 256, 256) channels. Points are appended to
benchmarks/frontier.csv and RESULTS.md; the plot marks the frontier (no other point is both
faster and more accurate). The recipes for each time budget are read off that frontier.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import append_result, machine

ROOT = Path(__file__).resolve().parents[1]
CSV = Path(__file__).with_name("frontier.csv")
FIELDS = ["date", "width", "widths", "epochs", "seed", "precision", "val_acc", "wall_s", "train_s"]


def point(width: float, epochs: int, seed: int, data: str, precision: str) -> dict:
    """One training of the recipe at this width and length. Progressive resizing is off
    (``--resize-start 0``): its schedule is tied to the first epochs, so a 3-epoch run would
    never see full-size images; the frontier compares widths and lengths alone."""
    widths = [max(8, round(c * width)) for c in (64, 256, 256)]
    out = tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "cnnlab", "train", "--config", str(ROOT / "configs/cifar10_fast.yaml"),
           "--dataset", f"npz:{data}", "--val-split", "5000", "--seed", str(seed),
           "--model-kwargs", json.dumps({"widths": widths}), "--epochs", str(epochs),
           "--eval-every", str(epochs), "--precision", precision, "--resize-start", "0",
           "--out-dir", out, "--name", "p"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    m = json.loads((Path(out) / "p" / "metrics.json").read_text())
    return {"date": time.strftime("%Y-%m-%d"), "width": width, "widths": "/".join(map(str, widths)),
            "epochs": epochs, "seed": seed, "precision": m.get("precision", precision),
            "val_acc": m["accuracy"],
            "wall_s": round(wall, 1), "train_s": round(m["train_time_s"], 1)}


def frontier(rows: list[dict]) -> list[dict]:
    """The points that no other point beats on both wall time and accuracy, fastest first."""
    rows = sorted(rows, key=lambda r: (float(r["wall_s"]), -float(r["val_acc"])))
    best, out = -1.0, []
    for r in rows:
        if float(r["val_acc"]) > best:
            out.append(r)
            best = float(r["val_acc"])
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for width in sorted({float(r["width"]) for r in rows}):
        pts = sorted((r for r in rows if float(r["width"]) == width), key=lambda r: float(r["wall_s"]))
        ax.plot([float(r["wall_s"]) / 60 for r in pts], [100 * float(r["val_acc"]) for r in pts],
                marker="o", label=f"width {width:g} ({pts[0]['widths']})")
        for r in pts:
            ax.annotate(f"{r['epochs']}", (float(r["wall_s"]) / 60, 100 * float(r["val_acc"])),
                        textcoords="offset points", xytext=(4, -10), fontsize=8)
    best = frontier(rows)
    ax.plot([float(r["wall_s"]) / 60 for r in best], [100 * float(r["val_acc"]) for r in best],
            color="black", lw=1, ls="--", label="frontier")
    ax.set_xscale("log")
    minutes = [float(r["wall_s"]) / 60 for r in rows]
    ticks = [t for t in (0.5, 1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90)
             if min(minutes) / 1.5 <= t <= max(minutes) * 1.5]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(xlabel="wall time of the whole cnnlab train command (min, log scale)",
           ylabel="validation accuracy (%)", title="fastnet on CIFAR-10: accuracy against time "
           "(labels: epochs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def read_rows() -> list[dict]:
    if not CSV.is_file():
        return []
    with open(CSV, newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--epochs", type=int, nargs="+", default=[3, 5, 8])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--precision", default="auto")
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"))
    p.add_argument("--plot-only", action="store_true")
    a = p.parse_args()
    if not a.plot_only:
        for width in a.widths:
            for epochs in a.epochs:
                for seed in range(a.seeds):
                    r = point(width, epochs, seed, a.data, a.precision)
                    new = not CSV.is_file()
                    with open(CSV, "a", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=FIELDS)
                        if new:
                            w.writeheader()
                        w.writerow(r)
                    line = (f"width {width:g} ({r['widths']}), {epochs} epochs, seed {seed}, "
                            f"{r['precision']}: val acc {100 * r['val_acc']:.2f}% in "
                            f"{r['wall_s']:.0f} s wall ({r['train_s']:.0f} s training)")
                    print(line, flush=True)
                    append_result("frontier point, cifar10_fast.yaml tricks", line,
                                  " ".join(["python", *sys.argv]), machine())
    rows = read_rows()
    plot(rows, Path(__file__).with_name("frontier.png"))
    for r in frontier(rows):
        print(f"frontier: {float(r['wall_s']):.0f} s -> {100 * float(r['val_acc']):.2f}% "
              f"(width {r['width']}, {r['epochs']} epochs)")


if __name__ == "__main__":
    main()
