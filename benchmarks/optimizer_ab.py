"""Recipes side by side on CIFAR-10's untouched test split: Muon against SGD (or any flags).

    python benchmarks/optimizer_ab.py                      # the default three recipes, 2 seeds
    python benchmarks/optimizer_ab.py --seeds 3 --recipes "sgd5=" "muon4=--optimizer muon --epochs 4"
    python benchmarks/optimizer_ab.py --config configs/cifar10_fast90_bf16.yaml --seeds 2 \
        --recipes "sgd10=--epochs 10" "muon9=--optimizer muon --epochs 9"

Each recipe is a config (``configs/cifar10_fast.yaml`` unless ``--config``) plus its flags, trained
by the real ``cnnlab train`` command on benchmarks/test_split.py's file (40,000 training images,
5,000 validation images to choose on) and scored on the file's 5,000 test images, which nothing was
chosen on. Recipes alternate within each seed (A, B, C, A, B, C, ...), so a slow spell of the
machine falls on all of them. Each row gives validation and test accuracy, the whole command's wall
time and the training steps' time; each recipe after the first is compared with the first on the
test images: the paired difference over seeds (t interval) and McNemar's exact test within each
seed (the same images: seeds are not pooled into one test).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import append_result, machine
from test_split import DEFAULT_OUT, write_split

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/cifar10_fast.yaml"
RECIPES = ["sgd5=", "sgd4=--epochs 4", "muon4=--optimizer muon --epochs 4"]


def train(config: str, flags: str, seed: int, split_file: Path, out: Path) -> dict:
    """One ``cnnlab train`` command; its accuracies, times and test-image correctness."""
    import cnnlab
    from cnnlab.data import load_dataset

    name = f"s{seed}-{time.time_ns()}"
    extra = flags.split()
    if "--epochs" in extra:  # validate once, after the last epoch
        extra += ["--eval-every", extra[extra.index("--epochs") + 1]]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnlab", "train", "--config", config, "--dataset",
                    f"npz:{split_file}", "--val-split", "5000", "--seed", str(seed), "--threads",
                    "2", "--out-dir", str(out), "--name", name, *extra],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    run = cnnlab.load_run(out / name)
    test = load_dataset(run.config.dataset, run.config.data_dir, run.config.image_size).test
    correct = run.predict(test.x, calibrated=False).argmax(1) == test.y.numpy()  # with its TTA
    return {"val": run.metrics["accuracy"], "test": float(correct.mean()), "correct": correct,
            "wall_s": wall, "steps_s": run.metrics["train_steps_s"]}


def compare(base: list[dict], other: list[dict]) -> str:
    from cnnlab.evaluate.stats import difference_words, mcnemar, paired_difference_ci

    ci = paired_difference_ci([r["test"] for r in base], [r["test"] for r in other])
    tests = [mcnemar(a["correct"], b["correct"]) for a, b in zip(base, other, strict=True)]
    return (f"{difference_words(ci)} over {len(base)} seeds; McNemar per seed (test images right "
            "only here / only there, p): " + ", ".join(
                f"{m.b_only} / {m.a_only}, p = {m.p_value:.3g}" for m in tests))


def summary(name: str, flags: str, rows: list[dict]) -> str:
    def mean(k: str) -> float:
        return float(np.mean([r[k] for r in rows]))

    seeds = " / ".join(f"{100 * r['test']:.2f}" for r in rows)
    return (f"{name} ({flags or 'the config as it is'}): test {100 * mean('test'):.2f}% "
            f"({seeds}), val {100 * mean('val'):.2f}%, wall {mean('wall_s'):.1f} s, "
            f"training steps {mean('steps_s'):.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"),
                   help="the benchmark copy (the split file is derived from it)")
    p.add_argument("--recipes", nargs="+", default=RECIPES, help="NAME=FLAGS; the first is the base")
    p.add_argument("--config", default=CONFIG, help="the recipe every flag set starts from")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", default="/tmp/cnnlab_optimizer_ab")
    a = p.parse_args()
    split_file = DEFAULT_OUT
    sha = write_split(Path(a.data), split_file)
    if bad := [r for r in a.recipes if "=" not in r]:
        p.error(f"--recipes {bad[0]!r}: write NAME=FLAGS, e.g. \"muon4=--optimizer muon --epochs 4\"")
    recipes = [r.split("=", 1) for r in a.recipes]
    results: dict[str, list[dict]] = {name: [] for name, _ in recipes}
    for seed in range(a.seeds):
        for name, flags in recipes:
            r = train(a.config, flags, seed, split_file, Path(a.out))
            results[name].append(r)
            print(json.dumps({"recipe": name, "seed": seed} | {k: v for k, v in r.items()
                                                                 if k != "correct"}), flush=True)
    (base, _), lines = recipes[0], []
    for name, flags in recipes:
        line = summary(name, flags, results[name])
        if name != base:
            line += f"; test minus {base}: " + compare(results[base], results[name])
        lines.append(line)
        print(line)
    append_result("recipes side by side on the untouched test split (fastnet, "
                  f"{a.config} plus flags, trained on 40,000)",
                  "; ".join(lines) + f"; split sha256 {sha[:12]}",
                  f"python benchmarks/optimizer_ab.py --config {a.config} --seeds {a.seeds} --recipes "
                  + " ".join(f'"{r}"' for r in a.recipes),
                  machine())


if __name__ == "__main__":
    main()
