"""Report sections of the lecture's analyses: MLP vs CNN, the permutation test, what
convolutions see, and the CNN tree. Each reads analysis/<name>.json (+ .npz) if present."""

from __future__ import annotations

import numpy as np

from cnnlab.analysis.experiments import load_result
from cnnlab.report import ReportContext, Section, esc, img, pct, section, table
from cnnlab.report import plots as P
from cnnlab.report.plots import plt, show


@section(80, "mlp_vs_cnn")
def mlp_vs_cnn_section(ctx: ReportContext) -> Section | None:
    res, _ = load_result(ctx.run.path, "mlp_vs_cnn")
    if res is None:
        return None
    rows = res["models"]
    header = ["model", "parameters", "first-layer parameters", "MACs / image", "accuracy",
              "training time (s)"]
    body = (f"<p>Same data ({esc(res['dataset'])}), same recipe and budget ({res['epochs']} "
            "epochs) for every model.</p>")
    body += table(header, [[r["model"], f"{r['params']:,}", f"{r['first_layer_params']:,}",
                            f"{r['macs']:,}", pct(r["accuracy"]), f"{r['train_time_s']:.1f}"]
                           for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(rows) + 1.6))
    names = [r["model"] for r in rows]
    axes[0].barh(names, [r["first_layer_params"] for r in rows], color="tab:orange")
    axes[0].set(xscale="log", title="First-layer parameters (log scale)")
    axes[1].barh(names, [100 * r["accuracy"] for r in rows], color="tab:blue")
    axes[1].set(title="Accuracy (%)", xlim=(max(0, 100 * min(r["accuracy"] for r in rows) - 10), 100))
    for ax, key, fmt in ((axes[0], "first_layer_params", "{:,.0f}"), (axes[1], "accuracy", "{:.1%}")):
        ax.invert_yaxis()
        for i, r in enumerate(rows):
            ax.text(r[key] * (100 if key == "accuracy" else 1), i, " " + fmt.format(r[key]),
                    va="center", fontsize=9)
    fig.tight_layout()
    body += img(P.save(fig, ctx.plots_dir, "mlp_vs_cnn"), "MLP versus CNN", "900px")
    body += ("<p>An MLP's first layer has one weight per input pixel for every hidden unit, so "
             "its size grows with the image. A convolution slides one small window of shared "
             "weights across all positions, so its first layer stays tiny, it sees local "
             "structure, and the saved parameters can go into depth.</p>")
    return Section("MLP versus CNN", body)


@section(82, "permutation")
def permutation_section(ctx: ReportContext) -> Section | None:
    res, arrays = load_result(ctx.run.path, "permutation")
    if res is None:
        return None
    arms = res["arms"]
    rows = [[k.split("/")[0], k.split("/")[1], f"{100 * v['mean']:.2f}%", f"{100 * v['std']:.2f}",
             ", ".join(f"{100 * a:.1f}" for a in v["accuracies"])] for k, v in arms.items()]
    body = ("<p>One fixed random permutation of pixel positions is applied to every image, "
            f"training and evaluation alike; each model is trained on seeds {res['seeds']} "
            "without augmentation.</p>")
    if arrays:
        n = len(arrays["original"])
        fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.3), squeeze=False)
        for j in range(n):
            show(axes[0, j], arrays["original"][j])
            show(axes[1, j], arrays["permuted"][j])
        axes[0, 0].set_ylabel("original")
        axes[1, 0].set_ylabel("permuted")
        fig.tight_layout()
        body += img(P.save(fig, ctx.plots_dir, "permutation_examples"), "permuted images", "600px")
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    labels = list(arms)
    ax.bar(range(len(labels)), [100 * arms[k]["mean"] for k in labels],
           yerr=[100 * arms[k]["std"] for k in labels], capsize=6,
           color=["tab:blue", "tab:cyan", "tab:orange", "tab:red"][: len(labels)])
    ax.set_xticks(range(len(labels)), [k.replace("/", "\n") for k in labels])
    lo = min(100 * (arms[k]["mean"] - arms[k]["std"]) for k in labels)
    ax.set(ylabel="accuracy (%), mean ± std over seeds", ylim=(max(0, lo - 5), 100))
    fig.tight_layout()
    body += img(P.save(fig, ctx.plots_dir, "permutation"), "permutation test accuracies", "560px")
    body += table(["model", "pixels", "mean accuracy", "std (points)", "per seed (%)"], rows)
    body += f"<p><b>Measured:</b> {esc(res['verdict'])}</p>"
    if "no clear drop" in res["verdict"]:
        body += ('<p class="note">A CNN gains from locality only where its early windows see a small '
                 "part of the image. On tiny images (such as the 8x8 digits) two layers already see "
                 "most of the image, so the permutation costs little; see the receptive fields "
                 "below, and benchmarks/RESULTS.md for larger images.</p>")
    return Section("The permutation test", body)


@section(84, "filters")
def filters_section(ctx: ReportContext) -> Section | None:
    info, arrays = load_result(ctx.run.path, "filters")
    if info is None or not arrays:
        return None
    filters = arrays["filters"]
    n = len(filters)
    cols = min(n, 16)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.75, rows * 0.8), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            f = filters[i]
            ax.imshow(f[..., 0] if f.shape[-1] == 1 else f, cmap="gray", interpolation="nearest")
    fig.tight_layout()
    body = (f"<h3>First-layer filters of {esc(info['model'])} ({filters.shape[1]}x{filters.shape[2]}, "
            f"first {n})</h3>") + img(P.save(fig, ctx.plots_dir, "filters"), "first-layer filters", "900px")
    maps = [(m["layer"], arrays[f"map{i}"]) for i, m in enumerate(info["maps"])]
    if maps:
        ch = max(len(m) for _, m in maps)
        fig, axes = plt.subplots(len(maps), ch + 1, figsize=((ch + 1) * 1.05, len(maps) * 1.15),
                                 squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        show(axes[0, 0], arrays["image"])
        axes[0, 0].set_title("input", fontsize=8)
        for r, (name, m) in enumerate(maps):
            axes[r, 1].set_title(f"{name} {m.shape[1]}x{m.shape[2]}", fontsize=8, loc="left")
            for c in range(len(m)):
                axes[r, c + 1].imshow(m[c], cmap="viridis")
        fig.tight_layout()
        body += (f"<h3>Feature maps for {esc(info['image'])}"
                 f"{' (' + esc(info['label']) + ')' if info.get('label') else ''}</h3>")
        body += img(P.save(fig, ctx.plots_dir, "feature_maps"), "feature maps", "900px")
    fields = info["fields"]
    if fields:
        fig, axes = plt.subplots(1, len(fields), figsize=(2.6 * len(fields), 2.9), squeeze=False)
        for ax, (i, f) in zip(axes[0], enumerate(fields), strict=True):
            ax.imshow(arrays[f"rf{i}"], cmap="magma")
            ax.set_title(f"{f['layer']}\nfield {f['size'][0]}x{f['size'][1]} px", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        body += ("<h3>Receptive fields</h3><p>Which input pixels one unit at the centre of each "
                 "layer responds to: the mean |gradient| of that unit with respect to the input "
                 "(bright = strong). Deeper units see more of the image.</p>")
        body += img(P.save(fig, ctx.plots_dir, "receptive_fields"), "receptive fields", "900px")
    return Section("What convolutions see", body)


@section(55, "tree")
def tree_section(ctx: ReportContext) -> Section | None:
    res, arrays = load_result(ctx.run.path, "tree")
    if res is None:
        return None
    kpis = [["all held-out images", res["n_held"], pct(res["base_acc"]), pct(res["tree_acc"])],
            ["images of confused classes", res["n_confused"], pct(res["base_confused_acc"]),
             pct(res["tree_confused_acc"])]]
    body = (f"<p>Confusion sets: classes in the top-{res['k']} predictions of a class's images at "
            f"least {100 * res['threshold']:.0f}% of the time, measured on {res['n_build']} held-out "
            f"images; every accuracy below is on the other {res['n_held']}. Nodes hold at most "
            f"{res['max_node_size']} classes and were fine-tuned for {res['node_epochs']} epochs.</p>")
    body += table(["images", "n", "base CNN", "CNN tree"], kpis)
    body += (f"<p>The tree fixed {res['n_fixed']} predictions and broke {res['n_broken']}.</p>")
    body += img(P.save(_tree_figure(res), ctx.plots_dir, "cnn_tree"), "CNN tree", "900px")
    sets = [[c, ", ".join(s) or "-"] for c, s in res["confusion_sets"].items() if s][:30]
    if sets:
        body += "<h3>Confusion sets</h3>" + table(["class", "confused with"], sets)
    for kind in ("fixed", "broken"):
        if arrays and len(arrays.get(kind, [])):
            fig = _fix_figure(arrays[kind], res[f"{kind}_labels"], kind)
            body += f"<h3>Examples the tree {kind}</h3>"
            body += img(P.save(fig, ctx.plots_dir, f"tree_{kind}"), f"tree {kind}", "900px")
    return Section("Confusion sets and the CNN tree", body)


def _tree_figure(res: dict):
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


def _fix_figure(images: np.ndarray, labels: list, kind: str):
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(1.7 * n, 2.5), squeeze=False)
    for ax, image, (true, base, tree) in zip(axes[0], images, labels, strict=False):
        show(ax, image)
        ax.set_title(f"base: {base}", fontsize=10, color="tab:green" if base == true else "tab:red")
        ax.set_xlabel(f"tree: {tree}", fontsize=10, color="tab:green" if tree == true else "tab:red")
    fig.suptitle(f"true class is the green label; {kind} by the tree", fontsize=9)
    fig.tight_layout()
    return fig
