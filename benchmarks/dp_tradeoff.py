"""The privacy-utility trade-off: DP-SGD at several epsilons, and membership inference on each.

    python benchmarks/dp_tradeoff.py [--epsilons 1,2,4,8,0] [--epochs 10]

For each epsilon (0 = no DP, epsilon infinite) the privacy analysis trains a target LeNet-5
on 500 digits (900 other training digits are the non-members; no augmentation, no weight
decay, lr 0.5, 20 epochs, one recipe for every epsilon) and attacks it with the loss
threshold. (On 1,000 16x16 shapes a small fastnet stayed at chance under DP-SGD at epsilon 8
in 15 epochs, so the curve is measured where DP training learns at a CPU budget.) Prints and
appends to RESULTS.md: test accuracy, the epsilon the accountant reports, the attack's AUC and
TPR at 1% FPR; writes dp_tradeoff.png (accuracy and attack AUC against epsilon).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import append_result, machine

import cnnlab
from cnnlab.analysis import run_analysis


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epsilons", default="1,2,4,8,0")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--members", type=int, default=500)
    p.add_argument("--nonmembers", type=int, default=900)
    p.add_argument("--dataset", default="digits", help="e.g. shapes, or npz:PATH for CIFAR-10")
    p.add_argument("--image-size", type=int, default=0)
    p.add_argument("--model", default="lenet5")
    p.add_argument("--model-kwargs", default="{}", help="JSON, e.g. {\"widths\": [32, 64, 128]}")
    p.add_argument("--lr", type=float, default=0.5)
    a = p.parse_args()
    run = cnnlab.train(cnnlab.TrainConfig(epochs=1, out_dir=tempfile.mkdtemp(), name="r"),
                       log=lambda s: None, report=False)
    rows = []
    for eps in (float(e) for e in a.epsilons.split(",")):
        res = run_analysis(run, "privacy", dataset=a.dataset, image_size=a.image_size,
                           members=a.members, nonmembers=a.nonmembers, shadows=0,
                           random_labels=False, epochs=a.epochs, model=a.model,
                           model_kwargs=json.loads(a.model_kwargs),
                           recipe={"dp_epsilon": eps, "lr": a.lr}, log=print)
        m = json.loads((Path(res["target"]) / "metrics.json").read_text())
        loss = next(r for r in res["attacks"] if r["attack"] == "loss")
        spent = (m.get("dp") or {}).get("epsilon_spent")
        rows.append({"epsilon": eps or float("inf"), "spent": spent, "accuracy": m["accuracy"],
                     "auc": loss["auc"], "tpr1": loss["tpr_at_1%"]})
        spent_words = "no DP" if spent is None else f"spent {spent:.2f}"
        name = f"{eps:g}" if eps else "inf"
        line = (f"epsilon {name} ({spent_words}): "
                f"test accuracy {100 * m['accuracy']:.1f}%, loss-attack AUC {loss['auc']:.3f} "
                f"(95% CI {loss['auc_ci']['low']:.3f}-{loss['auc_ci']['high']:.3f}), TPR at 1% FPR "
                f"{100 * loss['tpr_at_1%']:.1f}%")
        print(line)
        data = a.dataset.split("/")[-2] if a.dataset.startswith("npz:") else a.dataset
        append_result(f"DP-SGD trade-off ({a.model}, {a.members} {data} members, "
                      f"{a.nonmembers} non-members, {a.epochs} epochs, lr {a.lr:g})", line,
                      " ".join(["python", *sys.argv]), machine())
    if len(rows) >= 3:
        plot(rows, Path(__file__).with_name("dp_tradeoff.png"))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['epsilon']:g}" for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(labels, [100 * r["accuracy"] for r in rows], "o-", label="test accuracy (%)")
    ax.plot(labels, [100 * r["auc"] for r in rows], "s-", label="membership attack AUC (x100)")
    ax.axhline(50, color="grey", ls="--", lw=1, label="attack at chance (AUC 0.5)")
    ax.set(xlabel="epsilon (DP-SGD budget; inf = no DP)", title="Privacy against utility")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
