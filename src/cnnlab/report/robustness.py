"""The robustness section: robust accuracy, adversarial gallery, curve, corruptions."""

from __future__ import annotations

import numpy as np

from cnnlab.analysis.experiments import load_result
from cnnlab.report import ReportContext, Section, esc, img, pct, section, table
from cnnlab.report import plots as P
from cnnlab.report.plots import plt, show


@section(86, "robustness")
def robustness_section(ctx: ReportContext) -> Section | None:
    res, arrays = load_result(ctx.run.path, "robustness")
    if res is None:
        return None
    classes = ctx.run.classes
    eps = res["eps"]
    body = (f"<p>Small, well-chosen noise fools a CNN. On {res['n']} evaluation images, at "
            f"L-inf radius {eps * 255:.1f}/255: clean accuracy <b>{pct(res['clean_accuracy'])}</b>, "
            f"robust accuracy <b>{pct(res['robust_accuracy'])}</b> (an image counts as robust only "
            f"if every attack below fails on it).</p>")
    rows = [[name, r["paper"], r["norm"], pct(r["accuracy"]), f"{r['mean_perturbation']:.4f}",
             f"{r['seconds']:.1f}"] for name, r in res["per_attack"].items()]
    body += table(["attack", "paper", "ball", "accuracy under attack", "mean perturbation norm",
                   "seconds"], rows)
    if res.get("adversarially_trained"):
        body += f"<p>This model was adversarially trained ({esc(res['adversarially_trained'])}).</p>"
    if arrays and len(arrays.get("original", [])):
        body += f"<h3>Adversarial examples ({esc(res['gallery_attack'])})</h3>"
        body += img(P.save(_gallery(arrays, classes, eps), ctx.plots_dir, "adversarial_gallery"),
                    "adversarial examples", "100%")
    if res.get("curve"):
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for attack in dict.fromkeys(r["attack"] for r in res["curve"]):
            pts = [r for r in res["curve"] if r["attack"] == attack]
            ax.plot([255 * r["eps"] for r in pts], [100 * r["accuracy"] for r in pts], marker="o",
                    label=attack)
        ax.set(xlabel="eps (x 1/255, L-inf)", ylabel="accuracy (%)", ylim=(0, 100),
               title="Accuracy versus attack radius")
        ax.legend()
        fig.tight_layout()
        body += "<h3>Robustness curve</h3>" + img(P.save(fig, ctx.plots_dir, "robustness_curve"),
                                                  "robustness curve", "620px")
        body += '<p class="note">Also in analysis/robustness.csv.</p>'
    if res.get("corruptions"):
        names = list(res["corruptions"])
        grid = np.array([res["corruptions"][n] for n in names]) * 100
        fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(names) + 1.4))
        im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        ax.grid(False)
        ax.set_yticks(range(len(names)), names)
        ax.set_xticks(range(5), [str(s) for s in range(1, 6)])
        ax.set(xlabel="severity", title="Accuracy (%) under common corruptions")
        for i in range(len(names)):
            for j in range(5):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.04)
        fig.tight_layout()
        body += (f"<h3>Common corruptions</h3><p>Mean corruption accuracy "
                 f"<b>{pct(res['mean_corruption_accuracy'])}</b> (CIFAR-10-C style, Hendrycks & "
                 "Dietterich 2019).</p>")
        body += img(P.save(fig, ctx.plots_dir, "corruptions"), "corruption heat map", "620px")
    return Section("Adversarial robustness", body)


def _gallery(a: dict, classes: list[str], eps: float):
    n = len(a["original"])
    fig, axes = plt.subplots(3, n, figsize=(1.9 * n, 6.6), squeeze=False)
    for j in range(n):
        show(axes[0, j], a["original"][j])
        delta = a["delta"][j]
        amp = np.clip(delta / (2 * max(eps, 1e-8)) + 0.5, 0, 1)
        show(axes[1, j], (amp * 255).astype(np.uint8))
        show(axes[2, j], a["adversarial"][j])
        axes[0, j].set_title(f"clean: {classes[a['clean_pred'][j]]} ({100 * a['clean_conf'][j]:.0f}%)",
                             fontsize=10, color="tab:green")
        axes[2, j].set_xlabel(f"attacked: {classes[a['adv_pred'][j]]} ({100 * a['adv_conf'][j]:.0f}%)",
                              fontsize=10, color="tab:red")
    axes[0, 0].set_ylabel("original", fontsize=10)
    axes[1, 0].set_ylabel("noise (amplified)", fontsize=10)
    axes[2, 0].set_ylabel("adversarial", fontsize=10)
    fig.tight_layout()
    return fig
