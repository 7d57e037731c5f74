"""The main job's dense quick budget: one backbone shared by the heads, against every head
from scratch at the same epochs.

    python benchmarks/scenes_quick.py

Trains a small digits run to hang the analysis on, then the scenes analysis at `cnnlab run`'s
quick budget twice: as the main job runs it (the detector first, its backbone starting the
U-Net and both pose heads: ``share_backbone``) and with every head from scratch on the same
data and epochs. Prints each task's score and training time per arm and appends one row to
RESULTS.md: what sharing the backbone buys at a quick budget.
"""

from __future__ import annotations

import sys
import tempfile

from common import append_result, machine

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.analysis.scenes import QUICK


def main() -> None:
    arms = {}
    with tempfile.TemporaryDirectory() as out:
        run = cnnlab.train(cnnlab.TrainConfig(epochs=1, threads=1, out_dir=out, name="base"),
                           log=lambda s: None, report=False)
        for arm, share in (("shared backbone", True), ("from scratch", False)):
            options = QUICK | {"share_backbone": share}
            res = run_analysis(run, "scenes", log=lambda s: None, threads=1, **options)
            arms[arm] = ", ".join(f"{r['task']} {r['score_name']} {r['score']:.3f} "
                                  f"({r['train_time_s']:.0f} s)" for r in res["rows"])
            print(f"{arm}: {arms[arm]}", flush=True)
    line = "; ".join(f"{arm}: {scores}" for arm, scores in arms.items())
    append_result("scenes at cnnlab run's quick budget (1,000 scenes, at most 2 objects, 48 px; detector "
                  "10 epochs, heads 3-5)", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
