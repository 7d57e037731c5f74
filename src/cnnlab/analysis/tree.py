"""Confusion sets and a CNN tree grown from a run's model (algorithms: cnnlab/cnntree.py).

The evaluation images are split in two (seeded): confusion sets and node training use one
half, every accuracy here is measured on the other. The tree's gain over the base network is
tested with an exact McNemar test on those held-out images: images the tree fixed against
images it broke. A control answers the question a reviewer asks next: the nodes trained
for extra epochs, so the base network is fine-tuned on all its classes for as many epochs at
the same learning rate (about the nodes' compute together: each node sees its classes' share
of the images), and the tree is tested against that too.

A run whose base network leaves almost nothing to fix (LeNet-5 on the 8x8 digits: a handful
of mistakes among 180 held-out images) cannot show the claim either way, so ``cnnlab run``
grows its tree on 8-kind shapes instead, a small fastnet trained briefly: look-alike kinds
(pentagon, hexagon, circle; square, rhombus; star, cross) give its confusions structure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis._subject import FEW_MISTAKES, SHAPES_BASE, base_network, main_job_base, on_other_data
from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, pct, table

if TYPE_CHECKING:
    from cnnlab.run import Run


SHAPES = SHAPES_BASE | {"epochs": 8, "lr_scale": 0.3}
"""The tree on 8-kind shapes, for runs that leave nothing to fix. Measured (2026-12-07, seeds
0-4, 1 thread, about 26 s each with the base's training): base 89.6-91.9% -> tree 93.4-96.1%
on 1,000 held-out images (45-69 fixed against 5-16 broken, McNemar p < 1e-4 at every seed);
the base fine-tuned as long on all classes reached 95.1-96.5%, level with the tree at seeds 0,
3 and 4 and better at 1 and 2 (p 0.02 and 0.01)."""


def tree(run: Run, *, top_k: int = 2, threshold: float = 0.1, max_node_size: int = 4,
         epochs: int = 0, lr_scale: float = 0.1, control: bool = True, dataset: str = "",
         image_size: int = 0, model: str = "", model_kwargs: dict | None = None,
         base_epochs: int = 0, recipe: dict | None = None, log: Log = print) -> dict:
    """Grow a CNN tree from a run's confusion sets, train its nodes, and measure base versus tree.

    Args:
        top_k: confusion sets from the top-k predictions of each class's images.
        threshold: the least fraction of a class's images that must confuse it with another.
        max_node_size: the most classes a node may hold.
        epochs: node fine-tuning epochs (0: a quarter of the base's, at least 2).
        lr_scale: node learning rate as a fraction of the base's.
        control: also fine-tune the base on all classes for as long, and test the tree against it.
        dataset: grow the tree from a base network trained with the run's recipe on this data
            instead of the run's own model (e.g. shapes:kinds=8); empty: the run's.
        image_size: that base network's image side (0: the dataset's default).
        model: that base network's model (empty: the run's).
        model_kwargs: its model arguments, e.g. {widths: [16, 32, 64]} for fastnet.
        base_epochs: its training epochs (0: the run's).
        recipe: its training settings changed from the run's, e.g. {batch_size: 128}.
    """
    from cnnlab.cnntree import confusion_sets, fine_tune, group_classes, route, train_nodes

    if top_k < 2 or not 0 < threshold < 1 or max_node_size < 2 or epochs < 0 or lr_scale <= 0:
        raise CnnlabError("tree needs top_k >= 2, 0 < threshold < 1, max_node_size >= 2, "
                          "epochs >= 0 and lr_scale > 0")
    run_dataset = run.config.dataset  # the base network: the run's, or one on other data
    run = base_network(run, dataset, image_size, model, model_kwargs, base_epochs, recipe, log)
    cfg, data = run.config, run.data()
    probs, y, build, held = _halves(run)
    sets, freq = confusion_sets(probs[build], y[build], top_k, threshold)
    groups = group_classes(freq, max_node_size, threshold)
    log(f"confusion groups: {[[run.classes[c] for c in g] for g in groups]}")
    node_epochs = epochs or max(2, cfg.epochs // 4)
    node_probs = train_nodes(run.load_model(), cfg, data, groups, build, node_epochs, lr_scale, log)
    tree_pred = route(probs, groups, node_probs)
    result = _measure(run.classes, probs, y, tree_pred, held, groups, sets, freq)
    control_pred = (fine_tune(run.load_model(), cfg, data, build, node_epochs, lr_scale, log)
                    if control and groups else None)
    result |= {"k": top_k, "threshold": threshold, "max_node_size": max_node_size,
               "node_epochs": node_epochs, "lr_scale": lr_scale, "dataset": cfg.dataset,
               "model": cfg.model, "run_dataset": run_dataset, "subrun": bool(dataset),
               "base_epochs": cfg.epochs,
               "control": None if control_pred is None else _control(y, tree_pred, control_pred, held)}
    result["arrays"] = {k: data.eval.x[result[f"{k}_index"]].numpy() for k in ("fixed", "broken")}
    log(f"base {100 * result['base_acc']:.2f}% -> tree {100 * result['tree_acc']:.2f}% on "
        f"{result['n_held']} held-out images: {result['verdict']}")
    return result


def _halves(run: Run):
    """The base's probabilities and labels on the evaluation images, and their two seeded
    halves: (probs, y, build, held)."""
    import numpy as np

    from cnnlab.run import load_npz

    pred = load_npz(run.path / "predictions.npz")
    probs, y = pred["probs"], pred["y"]
    halves = np.random.default_rng(run.config.seed).permutation(len(y))
    return probs, y, np.sort(halves[: len(y) // 2]), np.sort(halves[len(y) // 2:])


def _control(y, tree_pred, control_pred, held) -> dict:
    """The tree against the base fine-tuned on all classes for as long: McNemar on held-out."""
    from cnnlab.evaluate.stats import accuracy_ci, mcnemar

    tree_ok, control_ok = tree_pred[held] == y[held], control_pred[held] == y[held]
    test = mcnemar(tree_ok, control_ok)
    better, worse = int((tree_ok & ~control_ok).sum()), int((~tree_ok & control_ok).sum())
    words = ("no significant difference" if test.p_value >= 0.05 else
             "the tree is better" if better > worse else "the fine-tuned base is better")
    return {"acc": float(control_ok.mean()), "acc_ci": accuracy_ci(control_ok).to_dict(),
            "tree_only": better, "control_only": worse, "mcnemar_p": test.p_value,
            "verdict": f"the tree alone right on {better}, the fine-tuned base alone on {worse} "
                       f"(McNemar p = {test.p_value:.3g}): {words}"}


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
    if _one_node_for_all(groups, len(names)):
        verdict += (f"; but one node holds all {len(names)} classes, so this tree is its base "
                    "fine-tuned on everything: its confusions have no structure to split by")
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


def _one_node_for_all(groups: list, n_classes: int) -> bool:
    """Whether the confusion sets merged every class into one node (a base that confuses all
    its classes with each other, e.g. one near chance): no tree, only the base trained on."""
    return len(groups) == 1 and len(groups[0]) == n_classes


def _control_html(res: dict) -> str:
    c = res["control"]
    body = (f"<p><b>Control:</b> the base fine-tuned on all its classes for the nodes' "
            f"{res['node_epochs']} epochs at the same learning rate reaches {pct(c['acc'])} "
            f"(95% CI {pct(c['acc_ci']['low'])} to {pct(c['acc_ci']['high'])}); "
            f"{esc(c['verdict'])}. The nodes trained for extra epochs: this line asks whether "
            "specialising beats spending those epochs on the whole network.</p>")
    if c["mcnemar_p"] >= 0.05 and res["mcnemar_p"] < 0.05:
        body += para("So the tree's gain over its base cannot be told apart from what the extra "
                     "epochs bought on their own: this base was still learning (trained briefly, "
                     "to leave mistakes to fix).", note=True)
    return body


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res, arrays = ctx.result, ctx.arrays
    rows = [["all held-out images", res["n_held"], pct(res["base_acc"]), pct(res["tree_acc"])]]
    if res["n_confused"] < res["n_held"]:  # some classes are in no node
        rows.append(["images of confused classes", res["n_confused"], pct(res["base_confused_acc"]),
                     pct(res["tree_confused_acc"])])
    body = ""
    if on_other_data(res):
        body += para(f"Grown on {esc(res['dataset'])} from a {esc(res['model'])} trained "
                     f"{res['base_epochs']} epochs with the run's recipe, not on this run's "
                     f"{esc(res['run_dataset'])}: cnnlab run does so when the run's own network "
                     f"leaves fewer than {FEW_MISTAKES} mistakes among its evaluation images, too "
                     "few for a test to see a tree fix any. Kinds of shape that look alike give "
                     "this base's confusions structure.", note=True)
    body += (f"<p>Confusion sets: classes in the top-{res['k']} predictions of a class's images at "
             f"least {100 * res['threshold']:.0f}% of the time, measured on {res['n_build']} held-out "
             f"images; every accuracy below is on the other {res['n_held']}. Nodes hold at most "
             f"{res['max_node_size']} classes and were fine-tuned for {res['node_epochs']} epochs.</p>")
    body += table(["images", "n", "base CNN", "CNN tree"], rows)
    body += f"<p><b>Measured:</b> {esc(res['verdict'])}.</p>"
    if res.get("control"):
        body += _control_html(res)
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
            body += f"<h3>Examples the tree {'fixed' if kind == 'fixed' else 'broke'}</h3>"
            body += img(P.save(fig, ctx.plots_dir, f"tree_{kind}"), f"tree {kind}", "640px")
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

    cols = min(len(images), 4)
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.flat[len(images):]:
        ax.axis("off")
    for ax, image, (true, base, tree) in zip(axes.flat, images, labels, strict=False):
        show(ax, image)
        ax.set_title(f"base: {base}", fontsize=12, color="tab:green" if base == true else "tab:red")
        ax.set_xlabel(f"tree: {tree}", fontsize=12, color="tab:green" if tree == true else "tab:red")
    fig.suptitle(f"true class is the green label; {kind} by the tree", fontsize=11)
    fig.tight_layout()
    return fig


def _main_job(run: Run, full: bool) -> dict:
    """In ``cnnlab run``: the run's own network, unless it leaves too little to fix; then
    ``SHAPES`` (``--full``: 10,000 training images at 32 px and 20 epochs for the base)."""
    base = main_job_base(run, full)
    return base and SHAPES | base


def claims(res: dict) -> list[Claim]:
    """Two claims, each with its exact McNemar test on the held-out images: the nodes correct
    the base network's confused predictions (the tree against its base); and that beats giving
    the whole network the same extra epochs (the tree against the control), the question that
    decides whether the confusion sets earned the gain or the extra training did."""
    holds = None if res["mcnemar_p"] >= 0.05 else res["n_fixed"] > res["n_broken"]
    if _one_node_for_all(res.get("groups", []), len(res.get("confusion_sets", {}))):
        holds = None  # a tree of one node is the base fine-tuned: the control's question alone
    where = f"on {res['dataset']} ({res['model']}): " if on_other_data(res) else ""
    out = [Claim("Confusion sets guide a CNN tree whose nodes correct confused predictions",
                 f"{where}{100 * res['base_acc']:.2f}% -> {100 * res['tree_acc']:.2f}% on "
                 f"{res['n_held']} held-out images: {res['verdict']}", holds)]
    c = res.get("control")
    if c:
        better = None if c["mcnemar_p"] >= 0.05 else c["tree_only"] > c["control_only"]
        out.append(Claim(
            "... and the tree beats spending its extra epochs on the whole network",
            f"the base fine-tuned on all classes for the nodes' {res['node_epochs']} epochs: "
            f"{100 * c['acc']:.2f}%; {c['verdict']}", better))
    return out


ANALYSIS = register(Analysis(
    name="tree", title="Confusion sets and the CNN tree", compute=tree, section=section, order=55,
    verb=("tree",), quick=lambda run: _main_job(run, full=False),
    full=lambda run: _main_job(run, full=True),
    claims=claims,
    bounds={"top_k": (2, 100),
            "threshold": (0.001, 0.999),
            "max_node_size": (2, 1000),
            "epochs": (0, 10_000),
            "lr_scale": (1e-6, 100),
            "image_size": (0, 1024),
            "base_epochs": (0, 10_000)},
))
