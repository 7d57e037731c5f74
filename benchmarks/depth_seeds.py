"""The depth claim at several seeds: ResNet-20 against LeNet-5 on the digits' test split alone
(360 images) and on all 1,797 digits through their five folds, as `cnnlab run` tests it.

    python benchmarks/depth_seeds.py                 # seeds 0-4, about a minute each
    python benchmarks/depth_seeds.py --seeds 3,7

For each seed: the main job's LeNet-5 (its recipe, one thread), then MLP versus CNN at its quick
budget with the depth pair only. Prints, per seed, the gap and McNemar's discordant images and
p on the test split and on all the digits, and how many seeds each test found the gap at.
Appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch
from common import append_result, machine

from cnnlab.analysis import run_analysis
from cnnlab.analysis.mlp_vs_cnn import DEPTH
from cnnlab.log import silent
from cnnlab.pipeline import main_config, main_run


def words(c: dict) -> str:
    return f"{c['difference_points']:+.2f} points, {c['a_only']} vs {c['b_only']}, p = {c['p_value']:.3g}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds")
    a = p.parse_args()
    torch.set_num_threads(1)  # cnnlab run's count
    rows, found = [], {"test split": 0, "all digits": 0}
    seeds = [int(s) for s in a.seeds.split(",")]
    for seed in seeds:
        with tempfile.TemporaryDirectory() as out:
            run = main_run(main_config("digits", 0, seed, "depth", out, "~/.cache/cnnlab", 0, threads=1),
                           silent, False)
            res = run_analysis(run, "mlp_vs_cnn", models=DEPTH[::-1], log=silent)
        split = next(c for c in res["comparisons"] if (c["model"], c["reference"]) == DEPTH)
        pooled = res["depth_folds"]["comparison"]
        for name, c in (("test split", split), ("all digits", pooled)):
            found[name] += c["p_value"] < 0.05 and c["difference_points"] > 0
        rows.append(f"seed {seed}: all 1,797 digits {words(pooled)}; test split alone {words(split)}")
        print(rows[-1], flush=True)
    summary = (f"{DEPTH[0]} against {DEPTH[1]} (the digits' recipe, 30 epochs, 1 thread), found at "
               f"{found['all digits']} of {len(seeds)} seeds on all 1,797 digits (5 folds) and at "
               f"{found['test split']} on the 360 test images alone. " + "; ".join(rows))
    print(summary)
    append_result("The depth claim at several seeds: on the test split and on all the digits",
                  summary, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
