"""Who does the model fail? Performance per class and per group, with the largest gap.

Fairlearn's MetricFrame slices the evaluation predictions: by class always, and by group and
by class x group wherever the data says each image's group (``shapes``: whether a shape has
its own class's colour; an npz file's ``groups`` array). Reported: accuracy and error rate
per slice with Wilson CIs, the largest gap (difference) and ratio, the worst group, and that
group's misclassified images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run


def bias(run: Run, *, show: int = 8, log: Log = print) -> dict:
    """Accuracy per class, per group and per class x group, the largest gap, the worst group.

    Args:
        show: misclassified images of the worst group to show.
    """
    import numpy as np

    from cnnlab.run import load_npz

    pred = load_npz(run.path / "predictions.npz")
    if not pred:
        raise CnnlabError(f"{run.path} has no predictions.npz; train the run to the end first")
    val = run.data().eval
    y, y_pred = pred["y"], pred["probs"].argmax(1)
    if len(y) != len(val) or not np.array_equal(y, val.y.numpy()):
        raise CnnlabError(f"{run.path}: predictions.npz does not match the run's evaluation "
                          f"images; evaluate the run again (cnnlab train --resume)")
    classes = run.classes
    slices = {"class": np.array([classes[c] for c in y], dtype=object)}
    if val.groups is not None:
        g = val.groups.numpy()
        slices["group"] = np.array([val.group_names[i] for i in g], dtype=object)
        slices["class x group"] = np.array([f"{classes[c]}, {val.group_names[i]}"
                                            for c, i in zip(y, g, strict=True)], dtype=object)
    result = {"n": len(y), "has_groups": val.groups is not None,
              "slices": {name: _slice(y, y_pred, feature) for name, feature in slices.items()}}
    worst_by = "class x group" if val.groups is not None else "class"
    worst = result["slices"][worst_by]["worst"]
    result["worst"] = {"by": worst_by} | worst
    for name, s in result["slices"].items():
        log(f"by {name}: worst {s['worst']['name']} {100 * s['worst']['accuracy']:.1f}% "
            f"(n = {s['worst']['n']}), largest gap {100 * s['difference']:.1f} points"
            f"{_gap_ci(s['rows'])}, ratio {s['ratio']:.2f}")
    wrong = np.flatnonzero((slices[worst_by] == worst["name"]) & (y != y_pred))[:show]
    result["worst_wrong"] = [{"index": int(i), "label": classes[y[i]], "predicted": classes[y_pred[i]]}
                             for i in wrong]
    result["arrays"] = {"worst_wrong": val.x[wrong].numpy()} if len(wrong) else {}
    return result


def _slice(y, y_pred, feature) -> dict:
    """Fairlearn's MetricFrame by one sensitive feature: accuracy and error rate per value."""
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    from cnnlab.evaluate.stats import proportion_ci

    frame = MetricFrame(metrics={"accuracy": accuracy_score, "count": lambda t, p: len(t)},
                        y_true=y, y_pred=y_pred, sensitive_features=feature)
    by = frame.by_group
    rows = []
    for name in by.index:
        acc, n = float(by.loc[name, "accuracy"]), int(by.loc[name, "count"])
        ci = proportion_ci(round(acc * n), n).to_dict()
        rows.append({"name": str(name), "n": n, "accuracy": acc, "error_rate": 1 - acc, "ci": ci})
    worst = min(rows, key=lambda r: r["accuracy"])
    return {"rows": rows, "worst": worst, "overall": float(frame.overall["accuracy"]),
            "difference": float(frame.difference()["accuracy"]),
            "ratio": float(frame.ratio()["accuracy"]), "min": float(frame.group_min()["accuracy"])}


def _gap_ci(rows: list[dict]) -> str:
    """The best slice minus the worst, with Newcombe's interval for two independent accuracies;
    picked as the extremes of several slices, so the interval is optimistic, and said so."""
    from cnnlab.evaluate.stats import proportion_difference_ci

    best, worst = max(rows, key=lambda r: r["accuracy"]), min(rows, key=lambda r: r["accuracy"])
    if best is worst:
        return ""
    ci = proportion_difference_ci(round(best["accuracy"] * best["n"]), best["n"],
                                  round(worst["accuracy"] * worst["n"]), worst["n"])
    words = "within noise" if ci.low <= 0 else "beyond noise"
    return (f" (95% CI {100 * ci.low:+.1f} to {100 * ci.high:+.1f}: {words}, before allowing for "
            f"having picked the best and worst of {len(rows)} slices)")


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res = ctx.result
    body = para(f"Accuracy on the {res['n']:,} evaluation images, sliced with Fairlearn's "
                "MetricFrame. The gap is the best slice's accuracy minus the worst's; the ratio "
                "the worst's over the best's (1 is parity).")
    if not res["has_groups"]:
        body += para("This dataset gives no group per image, so only classes are compared. Give "
                     "an npz file a groups array (or use shapes, whose groups are colours) to audit "
                     "groups.", note=True)
    for name, s in res["slices"].items():
        rows = [[r["name"], r["n"], f"{100 * r['accuracy']:.1f}% ({100 * r['ci']['low']:.1f}-"
                 f"{100 * r['ci']['high']:.1f})"] for r in sorted(s["rows"], key=lambda r: r["accuracy"])]
        body += f"<h3>By {name}</h3>" + table([name, "images", "accuracy (95% CI)"], rows)
        body += para(f"Largest gap {100 * s['difference']:.1f} points{_gap_ci(s['rows'])}, ratio "
                     f"{s['ratio']:.2f}; worst {s['worst']['name']} at {100 * s['worst']['accuracy']:.1f}% "
                     f"(n = {s['worst']['n']}).")
    if ctx.arrays.get("worst_wrong") is not None and res["worst_wrong"]:
        titles = [f"{w['label']} → {w['predicted']}" for w in res["worst_wrong"]]
        body += f"<h3>Misclassified images of the worst {res['worst']['by']}: {res['worst']['name']}</h3>"
        body += img(P.save(P.titled_grid(ctx.arrays["worst_wrong"], titles), ctx.plots_dir,
                           "bias_worst"), "misclassified images of the worst group", "720px")
    return body


ANALYSIS = register(Analysis(
    name="bias", title="Bias: who the model fails", compute=bias, section=section, order=72,
    verb=("audit", "bias"), needs=("fairlearn", "audit"),
    bounds={"show": (1, 1000)},
))
