"""Which training images made this mistake: proponents and opponents of wrong predictions.

For the evaluation images the model gets wrong most confidently, TracIn over the run's kept
checkpoints (explain/influence.py) names the training images that pushed hardest toward the
wrong prediction (proponents) and against it (opponents); the nearest training images in the
final model's embedding are shown beside them. Two measured rows say what the proponents are:
how many carry the wrongly predicted label, and (on a run with label noise) how many are
among the images whose labels were flipped on purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run

SIDES = ("proponents", "opponents", "neighbours")


def influence(run: Run, *, n: int = 6, k: int = 4, log: Log = print) -> dict:
    """TracIn proponents and opponents, and embedding neighbours, of misclassified images.

    Args:
        n: misclassified evaluation images to explain, the most confident mistakes first.
        k: training images per side (proponents, opponents, neighbours).
    """
    import numpy as np
    import torch

    from cnnlab.explain.influence import nearest, proponents

    if n < 1 or k < 1:
        raise CnnlabError(f"influence needs n >= 1 and k >= 1, got n={n}, k={k}")
    tracer, data = run.tracin(), run.data()
    probs = run.predict(data.eval.x, tta=0)
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(pred != data.eval.y.numpy())
    picks = wrong[np.argsort(-conf[wrong], kind="stable")][:n]
    if not len(picks):
        raise CnnlabError(f"{run.path}: the model gets every evaluation image right; nothing to explain")
    x, target = data.eval.x[picks], torch.as_tensor(pred[picks])
    found = {"proponents": proponents(tracer, x, target, k),
             "opponents": proponents(tracer, x, target, k, opponents=True),
             "neighbours": nearest(run.train_outputs()["embeddings"], _embed(run, x), k)}
    train_y = data.train.y.numpy()
    flipped = set(data.flipped.tolist()) if data.flipped is not None else None
    rows = [{"index": int(i), "label": run.classes[data.eval.y[i]], "predicted": run.classes[pred[i]],
             "confidence": float(conf[i])} | {
                side: [{"train_index": int(t), "label": run.classes[train_y[t]], "score": float(s)}
                       for t, s in zip(found[side][0][r], found[side][1][r], strict=True)]
                for side in SIDES} for r, i in enumerate(picks)]
    summary = _summary(found, pred[picks], train_y, flipped)
    for line in summary["lines"]:
        log(line)
    arrays = {"images": x.numpy()} | {side: data.train.x[found[side][0].ravel()].numpy()
                                      for side in SIDES}
    return {"n": len(rows), "k": k, "checkpoints": [p.name for p in run.checkpoints()],
            "rows": rows, "summary": summary, "arrays": arrays}


def _embed(run: Run, x):
    import torch

    with torch.inference_mode():
        return run.load_model().embed(x.float() / 255).float().numpy()


def _summary(found: dict, predicted, train_y, flipped: set | None) -> dict:
    """Share of each side's images that carry the (wrong) predicted label, and that are flipped."""
    import numpy as np

    out, lines = {}, []
    for side in SIDES:
        idx = found[side][0]
        same = float((train_y[idx] == predicted[:, None]).mean())
        out[side] = {"predicted_label": same}
        text = f"{side:>11}: {100 * same:.0f}% carry the wrongly predicted label"
        if flipped is not None:
            out[side]["flipped"] = float(np.isin(idx, sorted(flipped)).mean())
            text += f", {100 * out[side]['flipped']:.0f}% are images whose label was flipped"
        lines.append(text)
    return out | {"lines": lines}


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res, arrays = ctx.result, ctx.arrays
    body = para(f"For the {res['n']} evaluation images the model gets wrong most confidently: "
                "the training images that pushed hardest toward the wrong prediction "
                "(TracIn proponents, Pruthi et al. 2020), those that pushed against it "
                "(opponents), and the nearest training images in the model's embedding. "
                f"TracIn sums over {len(res['checkpoints'])} kept checkpoints "
                f"({', '.join(res['checkpoints'])}).")
    s = res["summary"]
    header = ["training images shown", "carry the wrongly predicted label"]
    if "flipped" in s["proponents"]:
        header.append("have a label flipped on purpose")
    rows = [[side] + [f"{100 * s[side][key]:.0f}%" for key in ("predicted_label", "flipped")
                      if key in s[side]] for side in SIDES]
    body += table(header, rows)
    if arrays:
        body += img(P.save(_figure(arrays, res), ctx.plots_dir, "influence"),
                    "proponents and opponents of wrong predictions", "100%")
        body += para("Each row: a misclassified evaluation image (true label, prediction), then "
                     f"its {res['k']} proponents, {res['k']} opponents and {res['k']} nearest "
                     "training images, each titled with its training label.", note=True)
    return body


def _figure(arrays: dict, res: dict):
    from cnnlab.viz.plots import plt, show

    k, rows = res["k"], res["rows"]
    cols = 1 + len(SIDES) * k
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.15 * cols, 1.45 * len(rows)),
                             squeeze=False)
    for r, row in enumerate(rows):
        ax = axes[r, 0]
        show(ax, arrays["images"][r])
        ax.set_title(f"{row['label']} → {row['predicted']}", fontsize=9, color="tab:red")
        for s, side in enumerate(SIDES):
            for j, item in enumerate(row[side]):
                ax = axes[r, 1 + s * k + j]
                show(ax, arrays[side][r * k + j])
                color = "tab:red" if item["label"] == row["predicted"] else "black"
                ax.set_title(item["label"], fontsize=9, color=color)
                if r == 0 and j == 0:
                    ax.text(0, 1.3, f"{side} ▸", transform=ax.transAxes, fontsize=11,
                            weight="bold", va="bottom")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


ANALYSIS = register(Analysis(
    name="influence", title="Which training images made each mistake", compute=influence,
    section=section, order=85, verb=("explain", "influence"), needs=("captum", "explain"),
    bounds={"n": (1, 1000), "k": (1, 100)},
))
