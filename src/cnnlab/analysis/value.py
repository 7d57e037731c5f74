"""Which training images drive the model, and which are bad: data valuation, measured.

Every training image gets its exact KNN-Shapley value (Jia et al. 2019, explain/valuation.py)
on the model's embedding, for K = 5 and K = 10. The lowest-valued images are the ones users
should look at first. With ``noise`` > 0 the analysis trains a copy of the run on labels of
which that fraction was flipped on purpose (seeded, recorded) and measures how well each
ranking finds the flipped images: precision at k (k = the number flipped, where precision
equals recall), against the training loss and a random order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run


def value(run: Run, *, noise: float = 0.0, ks: tuple[str, ...] = ("5", "10"), lowest: int = 16,
          export_review: str = "", log: Log = print) -> dict:
    """KNN-Shapley value of every training image; with noise, how well it finds flipped labels.

    Args:
        noise: train a copy of the run with this fraction of labels flipped, and measure how
            well each ranking finds them (0: value the run's own training images).
        ks: the K of the nearest-neighbour utility (comma-separated); the first ranks images.
        lowest: how many of the lowest-valued images to show.
        export_review: write the lowest-valued images (index, label, suggested label, value)
            to this CSV file, for relabelling.
    """
    import numpy as np

    from cnnlab.explain.valuation import knn_shapley

    if not 0 <= noise < 1 or lowest < 1 or not ks or not all(k.isdigit() and int(k) > 0 for k in ks):
        raise CnnlabError("value needs 0 <= noise < 1, lowest >= 1 and ks of positive whole numbers")
    subject = run if not noise else run.subrun(replace(run.config, label_noise=noise), "noisy", log)
    train_out, data = subject.train_outputs(), subject.data()
    val_emb = _embed(subject, data.val.x)
    values = {}
    for k in ks:
        values[k] = knn_shapley(train_out["embeddings"], train_out["y"], val_emb,
                                data.val.y.numpy(), int(k))
        log(f"KNN-Shapley (K={k}) of {len(values[k]):,} training images against {len(val_emb):,} "
            f"evaluation images: {int((values[k] < 0).sum()):,} have a negative value")
    main = values[ks[0]]
    order = np.argsort(main, kind="stable")[:lowest]
    suggested = train_out["logits"].argmax(1)
    result = {"subject": str(subject.path), "noise": noise, "ks": list(ks), "n_train": len(main),
              "classes": subject.classes, "per_class": _per_class(main, train_out["y"], subject.classes),
              "lowest": [{"index": int(i), "label": subject.classes[train_out["y"][i]],
                          "suggested": subject.classes[suggested[i]], "value": float(main[i])}
                         for i in order],
              "arrays": {"lowest_images": data.train.x[order].numpy(), "values": main.astype(np.float32)}}
    if data.flipped is not None:
        result["detection"] = _detection(values, train_out["losses"], data.flipped.numpy(), log)
    if export_review:
        _export(export_review, result["lowest"])
    return result


def _embed(run: Run, x, batch: int = 500):
    import numpy as np
    import torch

    model = run.load_model()
    with torch.inference_mode():
        return np.concatenate([model.embed(x[i: i + batch].float() / 255).float().numpy()
                               for i in range(0, len(x), batch)])


def _per_class(values, y, classes: list[str]) -> list[dict]:
    import numpy as np

    return [{"class": c, "n": int((y == k).sum()), "mean": float(values[y == k].mean()),
             "negative": int((values[y == k] < 0).sum())} for k, c in enumerate(classes)
            if (y == k).any()] if len(classes) <= 50 else [
        {"class": "all", "n": len(values), "mean": float(np.mean(values)),
         "negative": int((values < 0).sum())}]


def _detection(values: dict, losses, flipped, log: Log) -> dict:
    """Precision at k (k = number flipped) of each ranking at finding the flipped images."""
    import numpy as np

    from cnnlab.evaluate.stats import proportion_ci

    k = len(flipped)
    truth = np.zeros(len(losses), bool)
    truth[flipped] = True
    rankings = {f"KNN-Shapley K={key}": np.argsort(v, kind="stable") for key, v in values.items()}
    rankings["training loss"] = np.argsort(-losses, kind="stable")
    rankings["random"] = np.random.default_rng(0).permutation(len(losses))
    rows = []
    for name, order in rankings.items():
        hits = int(truth[order[:k]].sum())
        ci = proportion_ci(hits, k).to_dict()
        rows.append({"ranking": name, "k": k, "found": hits, "precision": hits / k, "ci": ci})
        log(f"  {name:>16}: {hits} of the {k} flipped labels among its first {k} "
            f"(precision = recall = {100 * hits / k:.1f}%, 95% CI {100 * ci['low']:.1f}-"
            f"{100 * ci['high']:.1f})")
    return {"k": k, "rankings": rows}


def _export(path: str, rows: list[dict]) -> None:
    from pathlib import Path

    from cnnlab.analysis.registry import write_csv

    write_csv(Path(path), rows)


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res, arrays = ctx.result, ctx.arrays
    body = para(f"Exact KNN-Shapley values (Jia et al. 2019) of the {res['n_train']:,} training "
                f"images on the model's embedding, K = {', '.join(res['ks'])}: how much each image "
                "helps its neighbours be classified right. Negative values pull neighbours towards "
                "a wrong label; mislabelled images typically end up there.")
    if res["noise"]:
        body += para(f"Measured on a copy of the run trained with {100 * res['noise']:.0f}% of its "
                     "training labels flipped on purpose (seeded; analysis of the known answer).")
    if res.get("detection"):
        d = res["detection"]
        rows = [[r["ranking"], f"{r['found']} / {d['k']}", f"{100 * r['precision']:.1f}% "
                 f"({100 * r['ci']['low']:.1f}-{100 * r['ci']['high']:.1f})"] for r in d["rankings"]]
        header = ["ranking (lowest value, highest loss first)", f"flipped among its first {d['k']}",
                  "precision = recall at k (95% CI)"]
        body += "<h3>Finding the flipped labels</h3>" + table(header, rows)
    body += "<h3>Value per class</h3>" + table(
        ["class", "images", "mean value", "negative values"],
        [[r["class"], r["n"], f"{r['mean']:.2e}", r["negative"]] for r in res["per_class"]])
    if arrays:
        body += "<h3>The lowest-valued training images (check these first)</h3>"
        body += img(P.save(_lowest_figure(arrays["lowest_images"], res["lowest"]), ctx.plots_dir,
                           "lowest_value"), "lowest-valued training images", "900px")
        body += para("Above each image: its label; below: the model's own prediction for it (the "
                     "suggested label). `cnnlab value RUN --export-review review.csv` lists them.",
                     note=True)
    return body


def _lowest_figure(images, rows: list[dict]):
    from cnnlab.viz.plots import plt, show

    cols = min(8, len(rows))
    lines = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(lines, cols, figsize=(1.6 * cols, 2.0 * lines), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, r in zip(axes.ravel(), images, rows, strict=False):
        show(ax, image)
        ax.set_title(f"label {r['label']}", fontsize=10, color="tab:red")
        ax.set_xlabel(f"model: {r['suggested']}", fontsize=10)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def quick(run: Run) -> dict:
    """In ``cnnlab run``: 10% of the labels flipped, so that P@k has a known answer."""
    return {"noise": 0.1}


ANALYSIS = register(Analysis(
    name="value", title="Which training images: data value", compute=value, section=section,
    order=90, verb=("value",), quick=quick, full=quick,
))
