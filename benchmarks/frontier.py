"""The compute-optimal frontier of fastnet on CIFAR-10: test accuracy against wall time, for
several widths and epoch counts, with one recipe (configs/cifar10_fast.yaml's tricks).

    python benchmarks/frontier.py --widths 0.25 0.5 1 --epochs 3 5 8 --seeds 1
    python benchmarks/frontier.py --plot-only          # redraw benchmarks/frontier.png

Each point runs the real command, `cnnlab train --config configs/cifar10_fast.yaml --model-kwargs
{widths: [...]} --epochs E --eval-every E`, in a subprocess, so the wall time covers everything a
user waits for. It trains on benchmarks/test_split.py's file: 40,000 training images and 5,000
validation images (``--val-split 5000``), and is then scored on that file's 5,000 untouched test
images, which no recipe was chosen on. Width w scales full-width fastnet's (64, 256, 256)
channels. Points are appended to benchmarks/frontier.csv and RESULTS.md; the plot draws this
machine's test-split points, marks the frontier (no other point is both faster and more
accurate) and the CPU budgets the record-speed issue sets (86% in 100 s, 90% in 15 minutes,
92.5% in 45 minutes). Rows from before the test split (validation only, 45,000 training
images) stay in the CSV, with an empty ``test_acc``, and are not drawn.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import append_result, machine
from test_split import DEFAULT_OUT, write_split

from cnnlab.env import cpu_model


def device() -> str:
    """What trained the point: the GPU's name, else the CPU's model."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_model()

ROOT = Path(__file__).resolve().parents[1]
CSV = Path(__file__).with_name("frontier.csv")
FIELDS = ["date", "width", "widths", "epochs", "seed", "precision", "val_acc", "test_acc",
          "wall_s", "train_s", "machine"]
BUDGETS = [(100, 86.0), (15 * 60, 90.0), (45 * 60, 92.5)]
"""The CPU budgets of the record-speed issue (#26, part 3), on the test split: (seconds, test
accuracy in %). The recipes' own older targets (README) were set on the validation split."""


def point(width: float, epochs: int, seed: int, split_file: Path, precision: str) -> dict:
    """One training of the recipe at this width and length, scored on the test split.
    Progressive resizing is off (``--resize-start 0``): its schedule is tied to the first
    epochs, so a 3-epoch run would never see full-size images; the frontier compares widths
    and lengths alone."""
    import cnnlab

    widths = [max(8, round(c * width)) for c in (64, 256, 256)]
    out = tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "cnnlab", "train", "--config", str(ROOT / "configs/cifar10_fast.yaml"),
           "--dataset", f"npz:{split_file}", "--val-split", "5000", "--seed", str(seed),
           "--model-kwargs", json.dumps({"widths": widths}), "--epochs", str(epochs),
           "--eval-every", str(epochs), "--precision", precision, "--resize-start", "0",
           "--out-dir", out, "--name", "p"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    run = cnnlab.load_run(Path(out) / "p")
    m = run.metrics
    return {"date": time.strftime("%Y-%m-%d"), "width": width, "widths": "/".join(map(str, widths)),
            "epochs": epochs, "seed": seed, "precision": m.get("precision", precision),
            "val_acc": m["accuracy"], "test_acc": run.evaluate()["accuracy"],
            "wall_s": round(wall, 1), "train_s": round(m["train_time_s"], 1),
            "machine": device()}


def frontier(rows: list[dict], key: str = "test_acc") -> list[dict]:
    """The points that no other point beats on both wall time and accuracy, fastest first."""
    rows = sorted(rows, key=lambda r: (float(r["wall_s"]), -float(r[key])))
    best, out = -1.0, []
    for r in rows:
        if float(r[key]) > best:
            out.append(r)
            best = float(r[key])
    return out


def scored_rows(rows: list[dict]) -> list[dict]:
    """The points scored on the test split, measured on the machine of the newest one (the CSV
    is appended in time order; timings of two machines do not share an axis)."""
    scored = [r for r in rows if r.get("test_acc")]
    return [r for r in scored if r["machine"] == scored[-1]["machine"]] if scored else []


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for width in sorted({float(r["width"]) for r in rows}):
        pts = sorted((r for r in rows if float(r["width"]) == width), key=lambda r: float(r["wall_s"]))
        ax.plot([float(r["wall_s"]) / 60 for r in pts], [100 * float(r["test_acc"]) for r in pts],
                marker="o", label=f"width {width:g} ({pts[0]['widths']})")
        for r in pts:
            at = (float(r["wall_s"]) / 60, 100 * float(r["test_acc"]))
            near = any(abs(math.log(at[0] * 60 / s)) < 0.3 and abs(at[1] - a) < 1 for s, a in BUDGETS)
            ax.annotate(f"{r['epochs']}", at, textcoords="offset points", fontsize=8,  # clear of a star
                        xytext=(-5, 4) if near else (4, -10), ha="right" if near else "left")
    best = frontier(rows)
    ax.plot([float(r["wall_s"]) / 60 for r in best], [100 * float(r["test_acc"]) for r in best],
            color="black", lw=1, ls="--", label="frontier")
    for i, (seconds, acc) in enumerate(BUDGETS):
        # hollow and beneath the points, its words to its right: a point beside a star stays legible
        ax.plot([seconds / 60], [acc], marker="*", ms=13, mfc="none", mec="crimson", mew=1.3, ls="none",
                zorder=1, label="the issue's CPU budgets (reach up and left of a star)" if i == 0 else None)
        when = f"{seconds:g} s" if seconds < 300 else f"{seconds / 60:g} min"
        ax.annotate(f"{acc:g}% in {when}", (seconds / 60, acc), fontsize=8,
                    textcoords="offset points", xytext=(9, 3), ha="left", va="bottom", color="crimson")
    accs = [100 * float(r["test_acc"]) for r in rows] + [a for _, a in BUDGETS]
    ax.set_ylim(min(accs) - 1, max(accs) + 1)
    ax.set_xscale("log")
    minutes = [float(r["wall_s"]) / 60 for r in rows] + [s / 60 for s, _ in BUDGETS]
    ticks = [t for t in (0.5, 1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90)
             if min(minutes) / 1.5 <= t <= max(minutes) * 1.5]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlim(min(minutes) / 1.3, max(minutes) * 2.2)  # room for the last budget's words
    ax.minorticks_off()
    ax.set(xlabel="wall time of the whole cnnlab train command (min, log scale)",
           ylabel="accuracy on the untouched test split (%)",
           title=f"fastnet on CIFAR-10, {rows[0]['machine']} (labels: epochs)")
    ax.title.set_fontsize(10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def read_rows() -> list[dict]:
    if not CSV.is_file():
        return []
    with open(CSV, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(rows: list[dict]) -> None:
    """Rewrite the CSV whole (atomically), so that older rows gain the newer columns."""
    tmp = CSV.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(CSV)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--epochs", type=int, nargs="+", default=[3, 5, 8])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--precision", default="auto")
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"),
                   help="the benchmark copy (the split file is derived from it)")
    p.add_argument("--plot-only", action="store_true")
    a = p.parse_args()
    if not a.plot_only:
        sha = write_split(Path(a.data), DEFAULT_OUT)
        for width in a.widths:
            for epochs in a.epochs:
                for seed in range(a.seeds):
                    r = point(width, epochs, seed, DEFAULT_OUT, a.precision)
                    write_rows(read_rows() + [r])
                    line = (f"width {width:g} ({r['widths']}), {epochs} epochs, seed {seed}, "
                            f"{r['precision']}, trained on 40,000: test acc "
                            f"{100 * r['test_acc']:.2f}%, val acc {100 * r['val_acc']:.2f}% in "
                            f"{r['wall_s']:.0f} s wall ({r['train_s']:.0f} s training); split "
                            f"sha256 {sha[:12]}")
                    print(line, flush=True)
                    append_result("frontier point on the test split, cifar10_fast.yaml tricks",
                                  line, " ".join(["python", *sys.argv]), machine())
    rows = scored_rows(read_rows())
    if not rows:
        sys.exit("frontier: no point scored on the test split yet; run without --plot-only")
    plot(rows, Path(__file__).with_name("frontier.png"))
    for r in frontier(rows):
        print(f"frontier: {float(r['wall_s']):.0f} s -> {100 * float(r['test_acc']):.2f}% test "
              f"(width {r['width']}, {r['epochs']} epochs)")


if __name__ == "__main__":
    main()
