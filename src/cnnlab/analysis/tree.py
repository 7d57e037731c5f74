"""Confusion sets and a CNN tree grown from a run's model (algorithms: cnnlab/cnntree.py).

The evaluation images are split in two (seeded): confusion sets and node training use one
half, every accuracy here is measured on the other. The tree's gain over the base network is
tested with an exact McNemar test on those held-out images: images the tree fixed against
images it broke.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, pct, table

if TYPE_CHECKING:
    from cnnlab.run import Run


def tree(run: Run, *, top_k: int = 2, threshold: float = 0.1, max_node_size: int = 4,
         epochs: int = 0, lr_scale: float = 0.1, log: Log = print) -> dict:
    """Grow the tree from a trained run, train its nodes, and measure base versus tree.

    Args:
        top_k: confusion sets from the top-k predictions of each class's images.
        threshold: the least fraction of a class's images that must confuse it with another.
        max_node_size: the most classes a node may hold.
        epochs: node fine-tuning epochs (0: a quarter of the run's, at least 2).
        lr_scale: node learning rate as a fraction of the run's.
    """
    import numpy as np

    from cnnlab.cnntree import confusion_sets, group_classes, route, train_nodes
    from cnnlab.run import load_npz

    if top_k < 2 or not 0 < threshold < 1 or max_node_size < 2 or epochs < 0 or lr_scale <= 0:
        raise CnnlabError("tree needs top_k >= 2, 0 < threshold < 1, max_node_size >= 2, "
                          "epochs >= 0 and lr_scale > 0")
    cfg, data = run.config, run.data()
    pred = load_npz(run.path / "predictions.npz")
    probs, y = pred["probs"], pred["y"]
    halves = np.random.default_rng(cfg.seed).permutation(len(y))
    build, held = np.sort(halves[: len(y) // 2]), np.sort(halves[len(y) // 2:])
    sets, freq = confusion_sets(probs[build], y[build], top_k, threshold)
    groups = group_classes(freq, max_node_size, threshold)
    log(f"confusion groups: {[[run.classes[c] for c in g] for g in groups]}")
    node_epochs = epochs or max(2, cfg.epochs // 4)
    node_probs = train_nodes(run.load_model(), cfg, data, groups, build, node_epochs, lr_scale, log)
    tree_pred = route(probs, groups, node_probs)
    result = _measure(run.classes, probs, y, tree_pred, held, groups, sets, freq)
    result |= {"k": top_k, "threshold": threshold, "max_node_size": max_node_size,
               "node_epochs": node_epochs}
    fixed, broken = result["fixed_index"], result["broken_index"]
    result["arrays"] = {"fixed": data.eval.x[fixed].numpy(), "broken": data.eval.x[broken].numpy()}
    log(f"base {100 * result['base_acc']:.2f}% -> tree {100 * result['tree_acc']:.2f}% on "
        f"{result['n_held']} held-out images: {result['verdict']}")
    return result


def _measure(names, probs, y, tree_pred, held, groups, sets, freq) -> dict:
    import numpy as np

    from cnnlab.evaluate.stats import accuracy_ci, mcnemar

    base_pred = probs.argmax(1)
    yh, bh, th = y[held], base_pred[held], tree_pred[held]
    confused = np.isin(yh, sum(groups, []))
    fixed = held[(bh != yh) & (th == yh)]
    broken = held[(bh == yh) & (th != yh)]
    acc = lambda p, m: float((p[m] == yh[m]).mean()) if m.any() else None  # noqa: E731
    test = mcnemar(th == yh, bh == yh)
    verdict = ("no significant difference" if test.p_value >= 0.05 else
               "the tree is better" if len(fixed) > len(broken) else "the tree is worse")
    return {
        "n_build": int(len(y) - len(held)), "n_held": int(len(held)),
        "confusion_sets": {names[c]: [names[j] for j in s] for c, s in enumerate(sets)},
        "confusion_freq": freq.tolist(), "groups": [[names[c] for c in g] for g in groups],
        "base_acc": acc(bh, np.ones_like(confused)), "tree_acc": acc(th, np.ones_like(confused)),
        "base_acc_ci": accuracy_ci(bh == yh).to_dict(), "tree_acc_ci": accuracy_ci(th == yh).to_dict(),
        "n_confused": int(confused.sum()),
        "base_confused_acc": acc(bh, confused), "tree_confused_acc": acc(th, confused),
        "n_fixed": int(len(fixed)), "n_broken": int(len(broken)), "mcnemar_p": test.p_value,
        "verdict": f"{len(fixed)} fixed, {len(broken)} broken (McNemar p = {test.p_value:.3g}): "
                   f"{verdict}",
        "fixed_index": fixed[:8].tolist(), "broken_index": broken[:8].tolist(),
        "fixed_labels": [[names[y[i]], names[base_pred[i]], names[tree_pred[i]]] for i in fixed[:8]],
        "broken_labels": [[names[y[i]], names[base_pred[i]], names[tree_pred[i]]] for i in broken[:8]],
    }


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res, arrays = ctx.result, ctx.arrays
    rows = [["all held-out images", res["n_held"], pct(res["base_acc"]), pct(res["tree_acc"])],
            ["images of confused classes", res["n_confused"], pct(res["base_confused_acc"]),
             pct(res["tree_confused_acc"])]]
    body = (f"<p>Confusion sets: classes in the top-{res['k']} predictions of a class's images at "
            f"least {100 * res['threshold']:.0f}% of the time, measured on {res['n_build']} held-out "
            f"images; every accuracy below is on the other {res['n_held']}. Nodes hold at most "
            f"{res['max_node_size']} classes and were fine-tuned for {res['node_epochs']} epochs.</p>")
    body += table(["images", "n", "base CNN", "CNN tree"], rows)
    body += f"<p><b>Measured:</b> {esc(res['verdict'])}.</p>"
    if res["mcnemar_p"] >= 0.05:
        body += para("On this data the tree does not measurably help: the base network already "
                     f"gets {pct(res['base_confused_acc'])} of the confused classes' images right, "
                     "so a node has few mistakes to fix. Where the base network confuses more "
                     "(CIFAR-10 with ResNet-20, benchmarks/cnn_tree.py), the nodes fix more images "
                     "but break nearly as many: there too the gain is within noise (README).",
                     note=True)
    body += img(P.save(_tree_figure(res), ctx.plots_dir, "cnn_tree"), "CNN tree", "900px")
    body += _nodes_table(res)
    sets = [[c, ", ".join(s) or "-"] for c, s in res["confusion_sets"].items() if s][:30]
    if sets:
        body += "<h3>Confusion sets</h3>" + table(["class", "confused with"], sets)
    for kind in ("fixed", "broken"):
        if arrays and len(arrays.get(kind, [])):
            fig = _fix_figure(arrays[kind], res[f"{kind}_labels"], kind)
            body += f"<h3>Examples the tree {kind}</h3>"
            body += img(P.save(fig, ctx.plots_dir, f"tree_{kind}"), f"tree {kind}", "900px")
    return body


def _nodes_table(res: dict) -> str:
    """Each node's classes and how often they were confused, both ways: a node joins classes
    whose confusion adds up over the two directions, so a pair can form a node while neither
    direction alone reaches a class's confusion set."""
    names = list(res["confusion_sets"])
    freq = res["confusion_freq"]
    rows = []
    for group in res["groups"]:
        idx = [names.index(c) for c in group]
        pairs = [f"{names[a]} as {names[b]} {100 * freq[a][b]:.0f}%"
                 for a in idx for b in idx if a != b and freq[a][b] > 0]
        rows.append([" / ".join(group), "; ".join(pairs) or "-"])
    if not rows:
        return para("No node: no pair of classes was confused often enough.")
    return ("<h3>Nodes</h3>" + table(["node", "confused (share of a class's images with the other "
                                      "in its top-k)"], rows) +
            para(f"A node joins classes whose confusion, summed over both directions, reaches "
                 f"{100 * res['threshold']:.0f}%; the confusion sets below need it in one "
                 "direction, so a node can hold a pair that no single set lists.", note=True))


def _tree_figure(res: dict):
    from cnnlab.viz.plots import plt

    groups = res["groups"]
    grouped = {c for g in groups for c in g}
    others = [c for c in res["confusion_sets"] if c not in grouped]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.axis("off")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    box = dict(boxstyle="round,pad=0.4", fc="#e8eefc", ec="#2563eb")
    ax.text(0.5, 0.9, f"root: base CNN ({len(res['confusion_sets'])} classes)", ha="center",
            va="center", bbox=box, fontsize=10)
    slots = len(groups) + (1 if others else 0)
    for i, g in enumerate(groups):
        x = (i + 0.5) / slots
        ax.plot([0.5, x], [0.83, 0.6], color="gray", lw=1)
        ax.text(x, 0.55, f"node {i}", ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.3", fc="#fdf1e3", ec="tab:orange"))
        for j, c in enumerate(g):
            lx = x + (j - (len(g) - 1) / 2) * min(0.08, 0.9 / slots / max(len(g), 1))
            ax.plot([x, lx], [0.5, 0.2], color="gray", lw=0.8)
            ax.text(lx, 0.15, c, ha="center", va="top", fontsize=8, rotation=60 if len(c) > 3 else 0)
    if others:
        x = (len(groups) + 0.5) / slots
        ax.plot([0.5, x], [0.83, 0.6], color="gray", lw=1, ls="--")
        ax.text(x, 0.55, f"{len(others)} classes decided\nby the root alone", ha="center",
                va="center", fontsize=8.5)
    ax.set_title("CNN tree grown from confusion sets", fontsize=11)
    return fig


def _fix_figure(images, labels: list, kind: str):
    from cnnlab.viz.plots import plt, show

    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(1.7 * n, 2.5), squeeze=False)
    for ax, image, (true, base, tree) in zip(axes[0], images, labels, strict=False):
        show(ax, image)
        ax.set_title(f"base: {base}", fontsize=10, color="tab:green" if base == true else "tab:red")
        ax.set_xlabel(f"tree: {tree}", fontsize=10, color="tab:green" if tree == true else "tab:red")
    fig.suptitle(f"true class is the green label; {kind} by the tree", fontsize=9)
    fig.tight_layout()
    return fig


def claims(res: dict) -> list[Claim]:
    """Confusion sets guide a tree: McNemar of the tree against its base, on held-out images."""
    holds = None if res["mcnemar_p"] >= 0.05 else res["n_fixed"] > res["n_broken"]
    return [Claim("Confusion sets guide a CNN tree whose nodes correct confused predictions",
                  f"{100 * res['base_acc']:.2f}% -> {100 * res['tree_acc']:.2f}% on "
                  f"{res['n_held']} held-out images: {res['verdict']}", holds)]


ANALYSIS = register(Analysis(
    name="tree", title="Confusion sets and the CNN tree", compute=tree, section=section, order=55,
    verb=("tree",),
    claims=claims,
    bounds={"top_k": (2, 100),
            "threshold": (0.001, 0.999),
            "max_node_size": (2, 1000),
            "epochs": (0, 10_000),
            "lr_scale": (1e-6, 100)},
))
