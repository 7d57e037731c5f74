"""A spurious correlation, shown and fixed: shapes whose colour gives away their class.

In training, a shape has its own class's colour in ``bias`` (95%) of the images; at test the
colour is random (a quarter of the shapes keep their own colour). A model that learned colour
instead of shape does well on average and badly on the "other colour" cells. Measured per
method (plain ERM, group-balanced reweighting, Group DRO; training/groups.py), over seeds:
average accuracy, worst-group accuracy (the worst class x colour cell), and reliance on
colour: accuracy on the test shapes redrawn in their own class's colour minus accuracy on the
same shapes in the next class's colour. Average accuracy is given twice: on the test as drawn
(colours random) and in distribution, each class x colour cell weighted by its share of the
training images, as Waterbirds results are reported (Sagawa et al. 2020). Each fix is
compared with ERM by a Welch t interval over seeds. The published shape of the result
(Waterbirds, Sagawa et al. 2020): ERM worst-group accuracy about 60-70%, Group DRO about
85-90%.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis._subject import other_config
from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run

METHODS = ("erm", "balance", "dro")
NAMES = {"erm": "ERM (plain training)", "balance": "group-balanced reweighting",
         "dro": "Group DRO"}
MEASURES = {"in_distribution": "average accuracy, colours as in training",
            "average": "average accuracy, colours random", "worst_group": "worst-group accuracy",
            "reliance": "reliance on colour (own minus other colour)"}


SMALL_FASTNET = {"widths": [16, 32, 64]}
RECIPE = {"lr": 0.2, "label_smoothing": 0.0}
"""The training settings every budget changes from the run's (``recipe`` adds to them)."""


def spurious(run: Run, *, bias: float = 0.9, methods: tuple[str, ...] = METHODS, seeds: int = 5,
             image_size: int = 24, limit_train: int = 2000, epochs: int = 12, model: str = "fastnet",
             model_kwargs: dict | None = None, recipe: dict | None = None, dro_eta: float = 0.1,
             log: Log = print) -> dict:
    """Colour tied to class in training: ERM, reweighting and Group DRO on the worst group.

    The defaults are ``cnnlab run --full``'s setting, where ERM fails a group and a fix can
    show (on 5,000 32x32 shapes ERM learns shape despite a 95% colour bias: nothing to fix).

    Args:
        bias: share of training shapes drawn in their own class's colour.
        methods: erm, balance, dro (comma-separated).
        seeds: seeds per method (confidence intervals need at least 2).
        image_size: side of the shapes images.
        limit_train: training images (0: all 5,000).
        epochs: epochs (0: the run's).
        model: the model trained (e.g. fastnet, lenet5).
        model_kwargs: its arguments (default for fastnet: {widths: [16, 32, 64]}).
        recipe: training settings to change from the run's, over lr 0.2 and no label smoothing.
        dro_eta: Group DRO's step size for the group weights.
    """
    if not 0 < bias <= 1 or seeds < 1 or not methods or set(methods) - set(METHODS):
        raise CnnlabError(f"spurious needs 0 < bias <= 1, seeds >= 1 and methods among "
                          f"{', '.join(METHODS)}")
    cfg = other_config(run, f"shapes:bias={bias}", image_size, limit_train, epochs, RECIPE | (recipe or {}))
    if model_kwargs is None:
        model_kwargs = SMALL_FASTNET if model == "fastnet" else {}
    cfg.model, cfg.model_kwargs, cfg.dro_eta = model, model_kwargs, dro_eta
    tests = _colour_tests(image_size)
    per_method = {}
    for method in methods:
        runs = [run.subrun(type(cfg).from_dict(cfg.to_dict() | {
            "seed": s, "groups": "" if method == "erm" else method}), f"spurious-{method}", log)
            for s in range(seeds)]
        per_method[method] = [_measure(r, tests) for r in runs]
        m = per_method[method]
        log(f"{NAMES[method]:>27}: " + ", ".join(
            f"{MEASURES[k].split(' (')[0]} {100 * sum(x[k] for x in m) / len(m):.1f}%" for k in MEASURES))
    return {"bias": bias, "seeds": seeds, "methods": list(methods), "image_size": image_size,
            "n_train": len(runs[0].data().train), "epochs": cfg.epochs, "model": model,
            "per_seed": per_method, "comparisons": _compare(per_method, log),
            "cells": {m: v[0]["cells"] for m, v in per_method.items()}}


def _colour_tests(image_size: int) -> dict:
    """The test shapes redrawn in their own class's colour and in the next class's colour."""
    from cnnlab.data.shapes import make_shapes

    size = image_size or 32
    return {hue: make_shapes(1000, size, seed=1, hue=hue) for hue in ("own", "other")}


def _measure(sub: Run, tests: dict) -> dict:

    data = sub.data()
    val, train = data.eval, data.train
    pred = sub.predict(val.x, calibrated=False).argmax(1)
    y, g = val.y.numpy(), val.groups.numpy()
    ty, tg = train.y.numpy(), train.groups.numpy()
    cells, weighted = {}, 0.0
    for c in range(len(sub.classes)):
        for k, name in enumerate(val.group_names):
            m = (y == c) & (g == k)
            if m.any():
                share = float(((ty == c) & (tg == k)).mean())
                cells[f"{sub.classes[c]}, {name}"] = {"n": int(m.sum()), "train_share": share,
                                                       "accuracy": float((pred[m] == y[m]).mean())}
                weighted += share * cells[f"{sub.classes[c]}, {name}"]["accuracy"]
    covered = sum(v["train_share"] for v in cells.values())
    acc = {hue: float((sub.predict(ds.x, calibrated=False).argmax(1) == ds.y.numpy()).mean())
           for hue, ds in tests.items()}
    return {"average": float((pred == y).mean()), "in_distribution": weighted / max(covered, 1e-12),
            "worst_group": min(v["accuracy"] for v in cells.values()),
            "reliance": acc["own"] - acc["other"], "own_colour": acc["own"],
            "other_colour": acc["other"], "cells": cells}


def _compare(per_method: dict, log: Log) -> list[dict]:
    """Each fix against ERM, per measure: Welch interval over seeds and a verdict."""
    from cnnlab.evaluate.stats import difference_words, mean_difference_ci, significant

    if "erm" not in per_method:
        return []
    out = []
    for method in (m for m in per_method if m != "erm"):
        for key in ("worst_group", "in_distribution", "average", "reliance"):
            ci = mean_difference_ci([x[key] for x in per_method["erm"]],
                                    [x[key] for x in per_method[method]])
            verdict = difference_words(ci) + (": " + ("significant" if significant(ci) else
                                                      "no significant difference"))
            out.append({"method": method, "measure": key, "ci": ci.to_dict(), "verdict": verdict})
            if key == "worst_group":
                log(f"{NAMES[method]} minus ERM, worst-group accuracy: {verdict}")
    return out


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res = ctx.result
    body = para(f"A {res['model']} trained on {res['n_train']:,} {res['image_size']}x{res['image_size']} "
                f"shapes for {res['epochs']} epochs, in which {100 * res['bias']:.0f}% of the shapes "
                "have their own class's colour; at test the colour is random. Worst group: the "
                "worst class x colour cell. Reliance on colour: accuracy on the test shapes in their "
                "own class's colour minus on the same shapes in the next class's colour.")
    measured = [k for k in MEASURES if k in res["per_seed"][res["methods"][0]][0]]  # older results: fewer
    rows = []
    for method in res["methods"]:
        runs = res["per_seed"][method]
        rows.append([NAMES[method]] + [_mean_range([x[k] for x in runs]) for k in measured])
    body += table(["training", *(MEASURES[k] for k in measured)], rows)
    body += para(f"Mean over {res['seeds']} seeds (lowest to highest in brackets).", note=True)
    if res["comparisons"]:
        body += "<h3>Against ERM (Welch t interval over seeds)</h3>" + table(
            ["method", "measure", "difference from ERM"],
            [[NAMES[c["method"]], MEASURES[c["measure"]], c["verdict"]] for c in res["comparisons"]])
        from cnnlab.evaluate.stats import bonferroni

        fixes = len({c["method"] for c in res["comparisons"]})
        if fixes > 1:
            body += para(f"Each row is one comparison at 95%. The claims table asks whether any fix "
                         f"raises the worst group, which {fixes} chances to pass would make easier, so "
                         f"there each fix is tested at {100 * bonferroni(fixes):.4g}% (Bonferroni).",
                         note=True)
    body += img(P.save(_cells_figure(res), ctx.plots_dir, "spurious"),
                "accuracy per class and colour group", "760px")
    return body


def _mean_range(values: list[float]) -> str:
    return (f"{100 * sum(values) / len(values):.1f}% ({100 * min(values):.1f}-"
            f"{100 * max(values):.1f})")


def _cells_figure(res: dict):
    import numpy as np

    from cnnlab.viz.plots import plt

    names = list(next(iter(res["cells"].values())))
    fig, ax = plt.subplots(figsize=(8.6, 3.6))
    width = 0.8 / len(res["methods"])
    for j, method in enumerate(res["methods"]):
        acc = [100 * res["cells"][method].get(n, {"accuracy": np.nan})["accuracy"] for n in names]
        ax.bar(np.arange(len(names)) + j * width, acc, width, label=NAMES[method])
    ax.set_xticks(np.arange(len(names)) + width * (len(res["methods"]) - 1) / 2, names,
                  rotation=30, ha="right", fontsize=9)
    ax.set(ylabel="accuracy (%)", ylim=(0, 100), title="Accuracy per class x colour cell (seed 0)")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


QUICK = {"bias": 0.8, "limit_train": 1000, "epochs": 10, "seeds": 4}
"""``cnnlab run``'s budget: 4 seeds of each method (2.3 s a training). With 3, ERM's worst group
ranged 20-36% over seeds, and once "a fix helps" was tested at 97.5% (two fixes, Bonferroni)
the better fix's interval started at +0.4 points: a verdict hanging on one seed. A fourth seed
costs 7 s in the lane that finishes first (2026-12-07)."""


def claims(res: dict) -> list[Claim]:
    """Bias: ERM's worst group, and whether a fix raises it (Welch interval over seeds). The
    claim holds if any fix does, so each is tested at 1 - 0.05 / fixes (Bonferroni): the chance
    that some fix looks helpful by luck stays under 5%. The section's table keeps each fix's
    own 95% interval."""
    from cnnlab.evaluate.stats import bonferroni, difference_words, mean_difference_ci, significant

    erm = res["per_seed"]["erm"]
    worst, average, in_dist = (sum(s[k] for s in erm) / len(erm)
                               for k in ("worst_group", "average", "in_distribution"))
    fixes = [c["method"] for c in res["comparisons"] if c["measure"] == "worst_group"]
    level = bonferroni(len(fixes))
    wide = {m: mean_difference_ci([s["worst_group"] for s in erm],
                                  [s["worst_group"] for s in res["per_seed"][m]], level) for m in fixes}
    helped = [m for m, ci in wide.items() if ci.low > 0]

    def verdict(ci) -> str:
        return ("higher" if ci.estimate > 0 else "lower") if significant(ci) else "no significant difference"

    said = "; ".join(f"{NAMES[m]} {difference_words(ci)}: {verdict(ci)}" for m, ci in wide.items())
    if len(fixes) > 1:
        said += f" ({len(fixes)} fixes tried, so each at {100 * level:.4g}%: Bonferroni)"
    return [Claim("A spurious correlation makes a CNN fail a group, and a measured fix helps",
                  f"ERM ({len(erm)} seeds): average {100 * in_dist:.1f}% with colours as in "
                  f"training, {100 * average:.1f}% with colours random, worst group "
                  f"{100 * worst:.1f}%; worst group against ERM: {said}",
                  True if helped else False if fixes and all(ci.high < 0 for ci in wide.values())
                  else None)]


ANALYSIS = register(Analysis(
    name="spurious", title="Bias: a spurious correlation and its fixes", compute=spurious,
    section=section, order=73, verb=("experiment", "spurious"), quick=QUICK,
    # the full budget: more data, epochs and seeds in the same regime as the quick one. On
    # 5,000 32x32 shapes ERM learns shape despite a 95% colour bias (worst group 93.8%) and
    # the experiment has nothing left to fix (benchmarks/main_job_verdicts.py)
    full={},  # the function's defaults
    claims=claims,
    bounds={"bias": (0, 1),
            "seeds": (1, 100),
            "image_size": (8, 512),
            "limit_train": (0, 1e9),
            "epochs": (0, 10_000),
            "dro_eta": (1e-9, 100)},
))
