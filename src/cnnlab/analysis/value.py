"""Which training images drive the model, and which are bad: data valuation, measured.

Every training image gets its exact KNN-Shapley value (Jia et al. 2019, explain/valuation.py)
on the model's embedding, for K = 5 and K = 10. The lowest-valued images are the ones users
should look at first. With ``noise`` > 0 the analysis trains a copy of the run on labels of
which that fraction was flipped on purpose (seeded, recorded) and measures how well each
ranking finds the flipped images: precision at k (k = the number flipped, where precision
equals recall), against TracIn self-influence (over kept checkpoints), the training loss,
cleanlab's confident learning on k-fold out-of-fold probabilities (the reference library)
and a random order. With ``retrain`` it removes the lowest-ranked images by each ranking,
retrains, and tests the change in accuracy (McNemar, paired on the evaluation images).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run


def value(run: Run, *, noise: float = 0.0, ks: tuple[str, ...] = ("5", "10"), lowest: int = 16,
          folds: int = 3, retrain: float = 0.0, export_review: str = "", log: Log = print) -> dict:
    """KNN-Shapley value of every training image; with noise, how well it finds flipped labels.

    Args:
        noise: train a copy of the run with this fraction of labels flipped, and measure how
            well each ranking finds them (0: value the run's own training images).
        ks: the K of the nearest-neighbour utility (comma-separated); the first ranks images.
        lowest: how many of the lowest-valued images to show.
        folds: k of the k-fold cross-validation whose out-of-fold probabilities feed
            cleanlab's label-quality ranking (k extra trainings on (k-1)/k of the images;
            0: no cleanlab ranking).
        retrain: remove this fraction of the training images, lowest-ranked first by each
            ranking, retrain, and compare accuracy with the model before (0: off).
        export_review: write the lowest-valued images (index, label, suggested label, value)
            to this CSV file, for relabelling.
    """
    import numpy as np

    _check_options(run, noise, ks, lowest, folds, retrain)
    subject = run if not noise else run.subrun(
        run.config.fresh(label_noise=noise, checkpoints=4), "noisy", log)
    train_out, data = subject.train_outputs(), subject.data()
    valued, scored = evaluation_halves(len(data.eval), subject.config.seed)
    values = _knn_values(subject, train_out, ks, valued, log)
    main = values[ks[0]]
    order = np.argsort(main, kind="stable")[:lowest]
    suggested = train_out["logits"].argmax(1)
    result = {"subject": str(subject.path), "noise": noise, "ks": list(ks), "n_train": len(main),
              "n_valued_against": len(valued),
              "classes": subject.classes, "folds": folds,
              "per_class": _per_class(main, train_out["y"], subject.classes),
              "lowest": [{"index": int(i), "label": subject.classes[train_out["y"][i]],
                          "suggested": subject.classes[suggested[i]], "value": float(main[i])}
                         for i in order],
              "arrays": {"lowest_images": data.train.x[order].numpy(), "values": main.astype(np.float32),
                         "labels": train_out["y"].astype(np.int16)}}
    rankings = _rankings(subject, values, train_out, folds, log)
    if data.flipped is not None:
        result["detection"] = _detection(rankings, data.flipped.numpy(), log)
    if retrain:
        result["retrain"] = _retrain(subject, rankings, retrain, data.flipped, scored, log)
        result["retrain"]["n_valued_against"] = len(valued)
    if export_review:
        _export(export_review, result["lowest"])
    return result


def _check_options(run: Run, noise: float, ks, lowest: int, folds: int, retrain: float) -> None:
    if not (0 <= noise < 1 and 0 <= retrain < 1 and lowest >= 1 and folds >= 0 and folds != 1
            and ks and all(k.isdigit() and int(k) > 0 for k in ks)):
        raise CnnlabError("value needs 0 <= noise < 1, 0 <= retrain < 1, lowest >= 1, folds 0 or "
                          ">= 2, and ks of positive whole numbers")
    if max(int(k) for k in ks) >= len(run.data().train):
        raise CnnlabError(f"--ks {','.join(ks)}: K must be below the {len(run.data().train):,} "
                          "training images (it counts their nearest neighbours)")


def evaluation_halves(n: int, seed: int):
    """Two disjoint seeded halves of the evaluation images: KNN-Shapley values training images
    against the labels of the first; remove-and-retrain scores every ranking on the second, so
    no ranking has seen the labels it is scored on."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _knn_values(subject: Run, train_out: dict, ks: tuple[str, ...], valued, log: Log) -> dict:
    from cnnlab.explain.valuation import knn_shapley

    val = subject.data().eval.subset(valued)
    val_emb = _embed(subject, val.x)
    values = {}
    for k in ks:
        values[k] = knn_shapley(train_out["embeddings"], train_out["y"], val_emb, val.y.numpy(), int(k))
        log(f"KNN-Shapley (K={k}) of {len(values[k]):,} training images against {len(val_emb):,} "
            f"evaluation images: {int((values[k] < 0).sum()):,} have a negative value")
    return values


def _rankings(subject: Run, values: dict, train_out: dict, folds: int, log: Log) -> dict:
    """Training images in order of suspicion (most suspect first), by each method."""
    import numpy as np

    rankings = {f"KNN-Shapley K={key}": np.argsort(v, kind="stable") for key, v in values.items()}
    if subject.checkpoints():
        from cnnlab.explain.influence import self_influence

        rankings["TracIn self-influence"] = np.argsort(-self_influence(subject.tracin()), kind="stable")
    else:
        log("no kept checkpoints: no TracIn self-influence ranking (train with --checkpoints 4)")
    rankings["training loss"] = np.argsort(-train_out["losses"], kind="stable")
    if folds:
        rankings[f"cleanlab ({folds}-fold)"] = _cleanlab(subject, folds, log)
    rankings["random"] = np.random.default_rng(0).permutation(len(train_out["losses"]))
    return rankings


def _cleanlab(subject: Run, folds: int, log: Log):
    """cleanlab's label-quality ranking (confident learning, self-confidence scores), fed the
    out-of-fold probabilities of a k-fold cross-validation: every training image is scored by
    a model that did not train on it."""
    import numpy as np
    from cleanlab.rank import get_label_quality_scores

    train = subject.data().train
    probs = np.zeros((len(train), len(subject.classes)), np.float32)
    order = np.random.default_rng(subject.config.seed).permutation(len(train))
    for f in range(folds):
        held = np.sort(order[f::folds])
        fold = subject.subrun(subject.config.derive(drop_train=subject.index_file(held),
                                      checkpoints=0), f"fold{f + 1}of{folds}", log)
        probs[held] = fold.predict(train.x[held], tta=0)
    log(f"cleanlab: out-of-fold probabilities from {folds} trainings on {folds - 1}/{folds} of "
        f"the images, out-of-fold accuracy {100 * (probs.argmax(1) == train.y.numpy()).mean():.1f}%")
    scores = get_label_quality_scores(train.y.numpy(), probs, method="self_confidence")
    return np.argsort(scores, kind="stable")


def _retrain(subject: Run, rankings: dict, fraction: float, flipped, scored, log: Log) -> dict:
    """Remove the lowest-ranked ``fraction`` by each ranking (and, where flipped labels are
    known, exactly those), retrain, and compare with the model before on the ``scored`` half
    of the evaluation set (KNN-Shapley never saw its labels): accuracy with its Wilson CI, the
    paired difference by McNemar's test."""
    from pathlib import Path

    import numpy as np

    from cnnlab.evaluate.stats import accuracy_ci, mcnemar

    val = subject.data().eval.subset(scored)
    y = val.y.numpy()
    before = subject.predict(val.x).argmax(1) == y
    n = int(round(fraction * len(next(iter(rankings.values())))))
    first_knn = next(name for name in rankings if name.startswith("KNN-Shapley"))
    drops = {name: np.sort(order[:n]) for name, order in rankings.items()
             if not name.startswith("KNN-Shapley") or name == first_knn}
    if flipped is not None:
        drops["the flipped images (oracle)"] = flipped.numpy()
    rows = [{"ranking": "none (the model before)", "removed": 0, "accuracy": float(before.mean()),
             "ci": accuracy_ci(before).to_dict()}]
    for name, drop in drops.items():
        drop_file = subject.index_file(drop)
        cfg = subject.config.derive(drop_train=drop_file)  # the subject's own recipe and start
        after = subject.subrun(cfg, "retrain", log).predict(val.x).argmax(1) == y
        test = mcnemar(before, after)
        rows.append({"ranking": name, "removed": len(drop), "drop_file": Path(drop_file).name,
                     "accuracy": float(after.mean()),
                     "ci": accuracy_ci(after).to_dict(), "mcnemar_p": test.p_value,
                     "flipped_removed": (int(np.isin(drop, flipped.numpy()).sum())
                                         if flipped is not None else None),
                     "verdict": _verdict(test, after.mean() - before.mean())})
        log(f"  retrained without {len(drop)} images by {name}: accuracy "
            f"{100 * after.mean():.2f}% (before {100 * before.mean():.2f}%): {rows[-1]['verdict']}")
    return {"fraction": fraction, "n_eval": len(y), "rows": rows}


def _verdict(test, change: float) -> str:
    if test.p_value >= 0.05:
        return f"no significant difference (McNemar p = {test.p_value:.2g})"
    return f"{'better' if change > 0 else 'worse'} (McNemar p = {test.p_value:.2g})"


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


def _detection(rankings: dict, flipped, log: Log) -> dict:
    """Precision at k (k = number flipped) of each ranking at finding the flipped images."""
    import numpy as np

    from cnnlab.evaluate.stats import proportion_ci

    k = len(flipped)
    truth = np.zeros(len(next(iter(rankings.values()))), bool)
    truth[flipped] = True
    rows = []
    for name, order in rankings.items():
        hits = int(truth[order[:k]].sum())
        ci = proportion_ci(hits, k).to_dict()
        rows.append({"ranking": name, "k": k, "found": hits, "precision": hits / k, "ci": ci})
        log(f"  {name:>21}: {hits} of the {k} flipped labels among its first {k} "
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
        if res.get("folds"):
            body += para(f"cleanlab ranks by its self-confidence label-quality score on out-of-fold "
                         f"probabilities: {res['folds']} extra trainings, each on "
                         f"{res['folds'] - 1}/{res['folds']} of the images, so every image is "
                         "scored by a model that never saw it.", note=True)
    if res.get("retrain"):
        body += _retrain_table(res["retrain"])
    body += "<h3>Value per class</h3>"
    if res.get("detection"):
        body += para("Classes as labelled in the copy with flipped labels that was valued, so the "
                     "counts differ from the data card's.", note=True)
    body += table(
        ["class", "images", "mean value", "negative values"],
        [[r["class"], r["n"], f"{r['mean']:.2e}", r["negative"]] for r in res["per_class"]])
    if arrays and "labels" in arrays and len(res["classes"]) <= 20:
        body += img(P.save(_distribution_figure(arrays["values"], arrays["labels"], res["classes"]),
                           ctx.plots_dir, "value_distribution"), "value distribution per class",
                    "760px")
    if arrays:
        body += "<h3>The lowest-valued training images (check these first)</h3>"
        body += img(P.save(_lowest_figure(arrays["lowest_images"], res["lowest"]), ctx.plots_dir,
                           "lowest_value"), "lowest-valued training images", "900px")
        body += para("Above each image: its label; below: the model's own prediction for it (the "
                     "suggested label). `cnnlab value RUN --export-review review.csv` lists them.",
                     note=True)
    return body


def _distribution_figure(values, labels, classes: list[str]):
    from cnnlab.viz.plots import plt

    fig, ax = plt.subplots(figsize=(8.4, 3.4))
    present = [k for k in range(len(classes)) if (labels == k).any()]
    ax.boxplot([values[labels == k] for k in present], showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(present) + 1), [classes[k] for k in present], fontsize=9)
    ax.axhline(0, color="tab:red", lw=1, ls="--", label="zero: no help, no harm")
    ax.set(ylabel="KNN-Shapley value", title="Value of each training image, per class (its label)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _retrain_table(r: dict) -> str:
    rows = [[x["ranking"], x["removed"], "" if x.get("flipped_removed") is None else x["flipped_removed"],
             f"{100 * x['accuracy']:.2f}% ({100 * x['ci']['low']:.1f}-{100 * x['ci']['high']:.1f})",
             x.get("verdict", "")] for x in r["rows"]]
    return (f"<h3>Remove the lowest {100 * r['fraction']:.0f}% and retrain</h3>" + table(
        ["images removed by", "removed", "of them flipped", "accuracy (95% CI)",
         "against the model before"], rows) +
        para(f"Accuracy on {r['n_eval']:,} evaluation images that KNN-Shapley never saw (the "
             f"values were computed against the other {r.get('n_valued_against', 0):,}); the "
             "verdict pairs each retrained "
             "model with the model before on the same images (exact McNemar test).", note=True))


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


def claims(res: dict) -> list[Claim]:
    """Which training images: the best ranking against a random order, on flipped labels."""
    if not res.get("detection"):  # no flipped labels (--noise 0): nothing to find, no claim
        return []
    rankings = {r["ranking"]: r for r in res["detection"]["rankings"]}
    if "random" not in rankings or len(rankings) < 2:
        return []
    rand = rankings.pop("random")
    knn = [r for name, r in rankings.items() if name.startswith("KNN-Shapley")]
    if not knn:
        return []
    best = knn[0]  # the valuation method itself (K as the first --ks), not the best of all rankings
    ci, chance = best["ci"], res["noise"]  # a random order finds the flipped share on average
    loss = rankings.get("training loss")  # the simple baseline, said beside it (not the verdict's test)
    return [Claim("Data valuation finds the training images that hurt the model",
                  f"{100 * res['noise']:.0f}% of labels flipped: {best['ranking']} finds "
                  f"{best['found']} of them in its lowest {best['k']} (95% CI "
                  f"{100 * ci['low']:.1f}-{100 * ci['high']:.1f}%), a random order "
                  f"{100 * chance:.0f}% on average ({100 * rand['precision']:.1f}% in this draw)"
                  + (f"; the training loss alone, a simpler ranking, finds {loss['found']} in its lowest "
                     f"{loss['k']} (not tested against {best['ranking']})" if loss else ""),
                  True if ci["low"] > chance else False if ci["high"] < chance else None)]


ANALYSIS = register(Analysis(
    name="value", title="Which training images: data value", compute=value, section=section,
    order=90, verb=("value",), needs=("cleanlab", "explain"),
    quick={"noise": 0.1, "folds": 0},  # 10% flipped: a known answer; cleanlab's folds: --full
    full={"noise": 0.1, "retrain": 0.1},
    claims=claims,
    bounds={"noise": (0, 0.99), "lowest": (1, 10_000), "folds": (0, 100), "retrain": (0, 0.99)},
))
