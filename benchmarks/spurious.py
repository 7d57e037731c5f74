"""The spurious-correlation experiment at its full budget: ERM, group-balanced reweighting and
Group DRO on shapes whose colour gives away the class in 90% of training images.

    python benchmarks/spurious.py [--budget full|quick]

full (``cnnlab experiment spurious``'s defaults): 2,000 24x24 shapes, fastnet 16/32/64, 12
epochs, 5 seeds per method (15 trainings); quick (``cnnlab run``'s): 1,000 shapes at a colour
bias of 0.8, 10 epochs, 4 seeds.
Prints the analysis's lines and appends one row per method to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from common import append_result, machine

import cnnlab
from cnnlab.analysis import load_all, run_analysis
from cnnlab.analysis.spurious import MEASURES, NAMES


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget", choices=["full", "quick"], default="full")
    a = p.parse_args()
    cfg = cnnlab.TrainConfig(epochs=1, out_dir=tempfile.mkdtemp(), name="r")
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    spec = next(x for x in load_all() if x.name == "spurious")
    t0 = time.perf_counter()
    res = run_analysis(run, "spurious", log=print, **spec.budget(run, a.budget == "full"))
    seconds = time.perf_counter() - t0
    setting = (f"{res['n_train']:,} {res['image_size']}x{res['image_size']} shapes, colour bias "
               f"{res['bias']}, {res['model']}, {res['epochs']} epochs, {res['seeds']} seeds")
    for method in res["methods"]:
        runs = res["per_seed"][method]
        values = ", ".join(f"{MEASURES[k]} {100 * sum(x[k] for x in runs) / len(runs):.1f}%"
                           for k in MEASURES)
        vs = [c["verdict"] for c in res["comparisons"]
              if c["method"] == method and c["measure"] == "worst_group"]
        line = f"{NAMES[method]}: {values}" + (f"; worst group vs ERM {vs[0]}" if vs else "")
        append_result(f"spurious correlation ({setting})", line + f" ({seconds:.0f} s in all)",
                      " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
