"""Base CNN versus CNN tree, measured on held-out images, recorded in RESULTS.md.

    python benchmarks/cnn_tree.py --dataset digits        # trains the base LeNet-5 first
    python benchmarks/cnn_tree.py --dataset shapes
    python benchmarks/cnn_tree.py --run runs/bench/RUN    # a trained run (e.g. CIFAR-10 ResNet-20)
    python benchmarks/cnn_tree.py --run RUN --existing    # record the run's stored tree result

Half of the evaluation images choose the confusion sets; accuracies are on the other half, and
the gain is tested with McNemar (fixed against broken images).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import append_result, machine

import cnnlab
from cnnlab.analysis import load_results, run_analysis
from cnnlab.pipeline import recipe


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run")
    p.add_argument("--dataset")
    p.add_argument("--model", default="lenet5", help="base model when training one (--dataset)")
    p.add_argument("--existing", action="store_true")
    a = p.parse_args()
    if a.run:
        run = cnnlab.load_run(a.run)
    else:
        cfg = recipe(a.dataset, model=a.model)
        cfg.out_dir, cfg.name = tempfile.mkdtemp(), "base"
        run = cnnlab.train(cfg, progress=False, report=False)
    if a.existing:
        res = load_results(run.path, "tree")[0][0].result
    else:
        res = run_analysis(run, "tree")
    line = (f"{run.config.model} on {run.config.dataset}: base {100 * res['base_acc']:.2f}% -> tree "
            f"{100 * res['tree_acc']:.2f}% on {res['n_held']} held-out images; confused classes "
            f"({res['n_confused']} images) {100 * res['base_confused_acc']:.2f}% -> "
            f"{100 * res['tree_confused_acc']:.2f}%; {res['verdict']}; groups {res['groups']}")
    print(line)
    append_result("CNN tree vs base", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
