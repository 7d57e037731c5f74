"""Which pixels made the prediction: attribution maps, with their sanity check and faithfulness.

The maps come from Captum (explain/attributions.py). For a gallery of evaluation images
(confidently right, confidently wrong, least confident) every method's map is drawn beside
the image; on a seeded sample, the cascading-randomization sanity check (Adebayo et al. 2018)
says which methods explain the model rather than the image, and deletion/insertion curves
(Petsiuk et al. 2018) measure which method is most faithful to this model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis._subject import other_config
from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run

METHODS = ("saliency", "integrated_gradients", "smoothgrad", "gradcam", "occlusion")
UNTRUSTED = 0.3
"""A full-randomization rank correlation at or above this: the map survives the model's
destruction (Adebayo et al.'s anchor: saliency and Grad-CAM fall to ~0.15 on a small CNN)."""


def attributions(run: Run, *, methods: tuple[str, ...] = METHODS, n: int = 16, index: int = -1,
                 image: str = "", dataset: str = "", image_size: int = 0, limit_train: int = 0,
                 epochs: int = 0, model: str = "", model_kwargs: dict | None = None,
                 recipe: dict | None = None, log: Log = print) -> dict:
    """Attribution maps for a gallery of images, their sanity check and their faithfulness.

    Args:
        methods: attribution methods (comma-separated): saliency, integrated_gradients,
            smoothgrad, gradcam, occlusion.
        n: evaluation images (a seeded sample) for the sanity check and the faithfulness curves.
        index: also show this evaluation image (-1: none).
        image: also show this image file.
        dataset: explain a model trained with the run's recipe on this dataset (empty: the
            run's own model).
        image_size: image side for that dataset (shapes, folders); 0: its default.
        limit_train: train that model on this many images (0: all).
        epochs: epochs for that model (0: the run's).
        model: that model's name (empty: the run's).
        model_kwargs: that model's arguments, e.g. {widths: [16, 32, 64]}.
        recipe: training settings to change from the run's for that model, e.g. {lr: 0.2}.
    """
    from cnnlab.explain.attributions import check_methods

    check_methods(methods)
    if n < 2:
        raise CnnlabError(f"attributions need n >= 2 images for the checks, got {n}")
    subject = _subject(run, dataset, image_size, limit_train, epochs, model, model_kwargs, recipe, log)
    net, data = subject.load_model(), subject.data()
    if not -1 <= index < len(data.eval):
        raise CnnlabError(f"--index {index} is out of range: the evaluation set has {len(data.eval)} "
                          f"images (0 .. {len(data.eval) - 1}, or -1 for none)")
    gallery = _gallery(subject, net, data, index, image, list(methods), log)
    checks = _checks(net, data.eval.sample(n, subject.config.seed), list(methods), log)
    result = {"subject": str(subject.path), "dataset": subject.config.dataset,
              "model": subject.config.model, "methods": list(methods), "n": n,
              "input_shape": subject.meta["input_shape"], "run_dataset": run.config.dataset,
              "gallery": gallery.pop("rows"), "arrays": gallery} | checks
    return result


def _subject(run: Run, dataset, image_size, limit_train, epochs, model, model_kwargs, recipe,
             log: Log) -> Run:
    if not (dataset or model or limit_train or epochs or recipe):
        return run
    cfg = other_config(run, dataset, image_size, limit_train, epochs, recipe)
    if model:
        cfg.model, cfg.model_kwargs = model, model_kwargs or {}
    cfg = type(cfg).from_dict(cfg.to_dict())  # validated again
    return run.subrun(cfg, f"explain-{cfg.model}", log)


def _gallery(subject: Run, net, data, index: int, image: str, methods: list[str], log: Log) -> dict:
    """Images (confidently right, confidently wrong, least confident, and any asked for) with
    each method's map for the predicted class."""
    import numpy as np
    import torch

    from cnnlab.data.files import read_image
    from cnnlab.explain.attributions import attribute

    sample = data.eval.sample(500, subject.config.seed)
    with torch.no_grad():
        probs = net(sample.x.float() / 255).softmax(1)
    conf, pred = probs.max(1)
    right, wrong = torch.nonzero(pred == sample.y).flatten(), torch.nonzero(pred != sample.y).flatten()
    picks = [(i, "confident, right") for i in right[conf[right].argsort(descending=True)][:2].tolist()]
    picks += [(i, "confident, wrong") for i in wrong[conf[wrong].argsort(descending=True)][:2].tolist()]
    picks += [(i, "least confident") for i in conf.argsort()[:2].tolist()]
    x = sample.x[[i for i, _ in picks]]
    labels = [(int(sample.y[i]), kind) for i, kind in picks]
    if index >= 0:
        x = torch.cat([x, data.eval.x[index: index + 1]])
        labels += [(int(data.eval.y[index]), f"#{index}")]
    if image:
        c, h, _ = subject.meta["input_shape"]
        extra = torch.from_numpy(read_image(image, h, "L" if c == 1 else "RGB")).permute(2, 0, 1)
        x, labels = torch.cat([x, extra[None]]), labels + [(-1, image)]
    xf = x.float() / 255
    with torch.no_grad():
        p = net(xf).softmax(1)
    target = p.argmax(1)
    arrays = {"images": x.numpy()} | {f"map_{m}": attribute(net, xf, target, m) for m in methods}
    classes = subject.classes
    rows = [{"kind": kind, "label": classes[y] if y >= 0 else "?", "predicted": classes[int(t)],
             "confidence": float(p[k, t])}
            for k, ((y, kind), t) in enumerate(zip(labels, target, strict=True))]
    log(f"attribution gallery: {len(rows)} images x {len(methods)} methods")
    return {"rows": rows, **{k: np.asarray(v) for k, v in arrays.items()}}


def _checks(net, sample, methods: list[str], log: Log) -> dict:
    import torch

    from cnnlab.explain.attributions import attribute, faithfulness, sanity_check

    x = sample.x.float() / 255
    with torch.no_grad():
        target = net(x).argmax(1)
    maps = {m: attribute(net, x, target, m) for m in methods}
    sanity = sanity_check(net, x, target, methods, maps)
    faithful = faithfulness(net, x, target, maps)
    for m in methods:
        log(f"{m:>21}: image-specific rank correlation after full randomization "
            f"{sanity['full'][m]:+.2f} (raw {sanity['full_raw'][m]:+.2f}); "
            f"deletion AUC {faithful[m]['deletion_auc']:.3f}, insertion AUC "
            f"{faithful[m]['insertion_auc']:.3f}")
    log(f"{'random order':>21}: deletion AUC {faithful['random']['deletion_auc']:.3f}, insertion AUC "
        f"{faithful['random']['insertion_auc']:.3f}")
    return {"sanity": sanity, "faithfulness": faithful, "verdicts": _verdicts(sanity, faithful, methods)}


def _verdicts(sanity: dict, faithful: dict, methods: list[str]) -> list[str]:
    """Sanity verdicts only against the different-image baseline; faithfulness with intervals."""
    from cnnlab.evaluate.stats import bonferroni
    from cnnlab.explain.attributions import compare_faithfulness

    lines = []
    for m in methods:
        ci = sanity["full_ci"][m]
        said = (f"{m}: after every layer is randomized its maps keep {ci['estimate']:+.2f} of "
                f"image-specific rank correlation (95% CI {ci['low']:+.2f} to {ci['high']:+.2f}; "
                f"raw {sanity['full_raw'][m]:+.2f}, of which {sanity['full_raw_other_image'][m]:+.2f} "
                "is a pattern shared with any other image)")
        rule = f"the rule: a method passes when the interval's upper end is below {UNTRUSTED}"
        if ci["low"] >= UNTRUSTED:
            lines.append(said + f": they show the image more than the model (its lower end is at "
                         f"or above {UNTRUSTED}).")
        elif ci["high"] < UNTRUSTED:
            lines.append(said + ": the maps depend on the trained weights, as an explanation of "
                         f"the model must ({rule}).")
        else:
            lines.append(said + f": undecided on {len(faithful[m]['gain_per_image'])} images (the "
                         f"interval reaches across {UNTRUSTED}).")
    cmp = compare_faithfulness(faithful, methods)
    best = cmp["ranked"][0]
    beats = [m for m in methods if cmp["over_random"][m]["low"] > 0]
    words = lambda ci: f"{ci['estimate']:+.3f} (95% CI {ci['low']:+.3f} to {ci['high']:+.3f})"  # noqa: E731
    lines.append("Faithfulness, insertion minus deletion AUC over a random order, per image: " +
                 "; ".join(f"{m} {words(cmp['over_random'][m])}" for m in cmp["ranked"]) + ". " +
                 (f"Better than a random order: {', '.join(beats)}." if beats else
                  "No method is significantly better than a random order here.") +
                 f" (Each at 95%; the claims table, where any of {len(methods)} methods would "
                 f"carry the claim, tests each at {100 * bonferroni(len(methods)):.4g}%.)")
    if "best_minus_next" in cmp:
        ci, nxt = cmp["best_minus_next"], cmp["ranked"][1]
        caveat = (" (it fails the sanity check above)"
                  if sanity["full_ci"][best]["low"] >= UNTRUSTED else "")
        lines.append(f"Most faithful on this model: {best}{caveat}, ahead of {nxt} by {words(ci)}."
                     if ci["low"] > 0 else
                     f"Most faithful: no significant difference between {best} and {nxt} "
                     f"({best} minus {nxt}: {words(ci)}).")
    return lines


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res = ctx.result
    body = ""
    if res["dataset"] != res["run_dataset"]:
        body += para(f"These maps explain a {res['model']} trained with the run's recipe on "
                     f"{res['dataset']}: the run's own images ({res['run_dataset']}) are too small "
                     "for a readable map.")
    body += img(P.save(_gallery_figure(ctx.arrays, res), ctx.plots_dir, "attributions"),
                "attribution gallery", "100%")
    body += "<h3>Sanity check and faithfulness</h3>" + _checks_table(res)
    body += "<ul>" + "".join(f"<li>{esc(v)}</li>" for v in res["verdicts"]) + "</ul>"
    body += img(P.save(_sanity_figure(res), ctx.plots_dir, "attribution_sanity"), "sanity check",
                "620px")
    body += para(f"Sanity check (Adebayo et al. 2018): the layers are re-initialised from the top "
                 f"down and each method's maps compared with those of the trained model by rank "
                 f"correlation, on {res['n']} evaluation images. A raw correlation also counts any "
                 "pattern both models draw on every image (it is as high against a different "
                 "image), so the verdict uses the image-specific part: each model's mean map "
                 "divided out, minus the same correlation against a different image. "
                 "Faithfulness (Petsiuk et al. 2018): "
                 "the predicted class's probability as the most important pixels are blurred away "
                 "(deletion, lower is better) or revealed (insertion, higher is better).", note=True)
    return body


def _checks_table(res: dict) -> str:
    f, san = res["faithfulness"], res["sanity"]
    ci = san.get("full_ci", {})
    rows = [[m, f"{san.get('full_raw', san['full'])[m]:+.2f}",
             f"{san['full_raw_other_image'][m]:+.2f}" if "full_raw_other_image" in san else "",
             f"{ci[m]['estimate']:+.2f} ({ci[m]['low']:+.2f} to {ci[m]['high']:+.2f})" if ci else "",
             f"{f[m]['deletion_auc']:.3f}", f"{f[m]['insertion_auc']:.3f}"]
            for m in res["methods"]]
    rows.append(["random order", "", "", "", f"{f['random']['deletion_auc']:.3f}",
                 f"{f['random']['insertion_auc']:.3f}"])
    return table(["method", "rank correlation after full randomization, raw",
                  "raw, against a different image", "image-specific (mean map removed, minus "
                  "different image; 95% CI)", "deletion AUC", "insertion AUC"], rows)


def _gallery_figure(arrays: dict, res: dict):
    from cnnlab.viz.plots import plt, show

    methods, rows = res["methods"], res["gallery"]
    fig, axes = plt.subplots(len(rows), len(methods) + 1, squeeze=False,
                             figsize=(1.9 * (len(methods) + 1), 2.05 * len(rows)))
    for r, row in enumerate(rows):
        show(axes[r, 0], arrays["images"][r])
        axes[r, 0].set_ylabel(f"{row['kind']}\ntrue {row['label']}", fontsize=10)
        axes[r, 0].set_title(f"pred {row['predicted']} ({100 * row['confidence']:.0f}%)", fontsize=10,
                             color="tab:green" if row["predicted"] == row["label"] else "tab:red")
        for c, m in enumerate(methods, start=1):
            axes[r, c].imshow(arrays[f"map_{m}"][r], cmap="inferno")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(m.replace("_", " "), fontsize=10)
    fig.tight_layout()
    return fig


def _sanity_figure(res: dict):
    from cnnlab.viz.plots import plt

    cascade = res["sanity"]["cascade"]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    depth = [c["layers_randomized"] for c in cascade]
    for m in res["methods"]:
        ax.plot(depth, [c[m] for c in cascade], marker="o", label=m.replace("_", " "))
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(xlabel=f"layers randomized, from the top (of {res['sanity']['layers']})",
           ylabel="image-specific rank correlation\nwith the trained model's maps", ylim=(-0.4, 1.05),
           title="Cascading randomization")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def quick(run: Run) -> dict:
    """In ``cnnlab run``: on images of 12 px or less a map has too few pixels to read, so a
    small fastnet is trained on 32x32 shapes (1,500 images, 8 epochs) and explained."""
    if max(run.meta["input_shape"][1:]) <= 12:
        return {"dataset": "shapes", "image_size": 32, "limit_train": 1500, "epochs": 8,
                "model": "fastnet", "model_kwargs": {"widths": [16, 32, 64]},
                "recipe": {"lr": 0.2, "label_smoothing": 0.2, "crop_padding": 2}, "n": 16}
    return {"n": 16}


RESAMPLES = 10_000
"""Bootstrap resamples at the corrected levels (99%: 50 draws in each tail, not 10)."""


def claims(res: dict) -> list[Claim]:
    """Which pixels: methods that pass the sanity check and beat a random order."""
    import numpy as np

    from cnnlab.evaluate.stats import bonferroni, bootstrap_ci
    from cnnlab.explain.attributions import compare_faithfulness

    if "full_ci" not in res["sanity"]:
        return []
    # the claim holds if any method passes both tests: each test at 1 - 0.05 / methods (Bonferroni)
    level = bonferroni(len(res["methods"]))
    per_image = res["sanity"].get("full_per_image")
    if per_image:
        sanity = {m: bootstrap_ci(np.asarray(per_image[m]), level=level, resamples=RESAMPLES).to_dict()
                  for m in res["methods"]}
    else:  # a result stored before the per-image values were kept: its 95% intervals
        sanity = res["sanity"]["full_ci"]
    passed = [m for m in res["methods"] if sanity[m]["high"] < UNTRUSTED]
    faithful = compare_faithfulness(res["faithfulness"], res["methods"], level, RESAMPLES)["over_random"]
    both = [m for m in passed if faithful[m]["low"] > 0]
    return [Claim("Attribution maps show which pixels drove a prediction, and can be checked",
                  f"{res['n']} images, each test at {100 * level:.4g}% for {len(res['methods'])} methods "
                  f"(Bonferroni{'' if per_image else '; the randomization check at 95%'}): "
                  "pass the randomization check: "
                  f"{', '.join(passed) or 'none'}; also beat a random order on insertion minus deletion: "
                  f"{', '.join(both) or 'none'}", True if both else None)]


ANALYSIS = register(Analysis(
    name="attributions", title="Which pixels: attribution maps", compute=attributions,
    section=section, order=88, verb=("explain", "attributions"), quick=quick,
    needs=("captum", "explain"),
    full=lambda run: quick(run) | {"n": 64},
    claims=claims,
    bounds={"n": (2, 10_000),
            "index": (-1, 1e9),
            "image_size": (0, 512),
            "limit_train": (0, 1e9),
            "epochs": (0, 10_000)},
))
