"""Action recognition on procedural clips: a per-frame CNN averaged over time against a (2+1)D CNN.

    python benchmarks/action.py [--n 1800] [--epochs 20]

Both train through `cnnlab train` on `videos:n=N` (8 frames of 32 px stacked as 24 channels,
9 actions) with one recipe, and are scored on the same 450 test clips: accuracy with its Wilson
interval, an exact McNemar test, and accuracy per action. Appends one row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import append_result, machine

import cnnlab
from cnnlab.evaluate.stats import mcnemar, proportion_ci
from cnnlab.io import load_npz


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1800)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    correct, parts = {}, []
    with tempfile.TemporaryDirectory() as out:
        for model in ("framepool", "r2plus1d"):
            cfg = cnnlab.TrainConfig(dataset=f"videos:n={args.n}", model=model, epochs=args.epochs,
                                     batch_size=32, optimizer="adamw", lr=0.003, out_dir=out, name=model)
            run = cnnlab.train(cfg, log=lambda s: None, report=False)
            pred = load_npz(run.path / "predictions.npz")
            hit = pred["probs"].argmax(1) == pred["y"]
            correct[model] = hit
            ci = proportion_ci(int(hit.sum()), len(hit))
            per = ", ".join(f"{c} {100 * hit[pred['y'] == k].mean():.0f}%" for k, c in enumerate(run.classes))
            parts.append(f"{model}: {100 * ci.estimate:.1f}% "
                         f"(95% CI {100 * ci.low:.1f}-{100 * ci.high:.1f}), "
                         f"{run.metrics['params']:,} parameters, {run.metrics['train_time_s']:.0f} s; per "
                         f"action: {per}")
    test = mcnemar(correct["framepool"], correct["r2plus1d"])
    parts.append(f"McNemar p = {test.p_value:.2g} ({test.b_only} clips only r2plus1d gets right, "
                 f"{test.a_only} only framepool; chance {100 / 9:.1f}%; "
                 f"{len(correct['r2plus1d'])} test clips)")
    line = "; ".join(parts)
    print(line)
    append_result(f"action recognition (videos:n={args.n}, {args.epochs} epochs)", line,
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
