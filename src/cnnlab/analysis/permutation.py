"""The permutation test: does a model use where pixels are?

Draw one fixed permutation of pixel positions and apply it to every image, training and
evaluation alike. An MLP's first layer has one weight per pixel and no notion of neighbours:
permuting its inputs only permutes its weights, so its accuracy cannot change beyond noise.
A CNN's windows see neighbouring pixels, which the permutation scatters, so its accuracy
drops, if its windows see a small part of the image. Augmentation and TTA are off in all four
arms: a shift or a flip of shuffled pixels means nothing, and leaving it on for one arm would
not be a fair comparison.

Each difference (permuted minus original) gets two 95% intervals: Welch's over training seeds
and a paired bootstrap over evaluation images (the same images, permuted or not). A change
is claimed only when both exclude zero; otherwise the verdict is "no significant difference".
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cnnlab.analysis._subject import other_config
from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run

SMALL_IMAGE = 12
"""At this side or below (the 8x8 digits), two 5x5 layers see most of the image: locality
cannot matter much, so ``cnnlab run`` tests on other data."""
FEW_IMAGES = 1000
"""Below this many training images the runs' seed-to-seed noise swamps the test (an MLP's
accuracy moves by points with its initialization), so the quick test runs on shapes."""
UNCHANGED = 0.03
""""Unchanged" is an equivalence claim, not the absence of a significant change: the MLP's
over-image interval must lie within +-3 points of zero (an interval that merely contains zero
would pass a noisier run more easily)."""


def permutation(run: Run, *, cnn: str = "", cnn_kwargs: dict | None = None,
                seeds: int = 3, dataset: str = "", image_size: int = 0, limit_train: int = 0,
                epochs: int = 0, recipe: dict | None = None, log: Log = print) -> dict:
    """Train an MLP and a CNN on original and pixel-permuted images over several seeds.

    Args:
        cnn: the CNN to test against the MLP (empty: the run's own, as it is built; LeNet-5
            for an MLP run or one started from weights).
        cnn_kwargs: model arguments of the CNN, e.g. {widths: [16, 32, 64]} for fastnet.
        seeds: training seeds per arm (at least 2, for a spread).
        dataset: data for the test; empty: the run's own.
        image_size: image side for datasets that take one (shapes, folders); 0: their default.
        limit_train: train each arm on this many images (0: all).
        epochs: epochs per arm (0: the run's).
        recipe: training settings to change from the run's for every arm, e.g. {lr: 0.2}.
    """
    import numpy as np

    if seeds < 2 or epochs < 0 or limit_train < 0 or image_size < 0:
        raise CnnlabError("permutation needs seeds >= 2 and epochs, limit_train, image_size >= 0")
    from cnnlab.models import check_model_name, create_model

    if not cnn:  # the run's own, with the arguments given if any
        cnn, own_kwargs = _own_cnn(run)
        cnn_kwargs = own_kwargs if cnn_kwargs is None else cnn_kwargs
    check_model_name(cnn)  # the CNN's name and arguments, before the MLP's arms train
    create_model(cnn, **(cnn_kwargs or {}))
    base = _base_config(run, dataset, image_size, limit_train, epochs, recipe or {})
    arms, correct = {}, {}
    for model, kwargs in (("mlp", {}), (cnn, cnn_kwargs or {})):
        for permuted in (False, True):
            key = f"{model}/{'permuted' if permuted else 'original'}"
            subs = [run.subrun(replace(base, model=model, model_kwargs=kwargs, seed=s,
                                       permute_pixels=permuted),
                               f"{model}-{'perm' if permuted else 'orig'}-s{s}", log)
                    for s in range(seeds)]
            arms[key] = [sub.metrics["accuracy"] for sub in subs]
            correct[key] = np.stack([_correct(sub) for sub in subs])  # (seeds, images)
    sub0 = run.subrun(replace(base, model="mlp", model_kwargs={}, seed=0), "mlp-orig-s0", log)
    result = _summarize(arms, correct, cnn, len(sub0.classes), sub0.meta["input_shape"])
    result |= {"dataset": base.dataset, "run_dataset": run.config.dataset,
               "run_input_shape": run.meta["input_shape"], "epochs": base.epochs, "seeds": list(range(seeds)),
               "n_train": sub0.metrics["n_train"], "n_eval": sub0.metrics["n"]}
    result["arrays"] = _examples(sub0)
    for line in result["verdicts"]:
        log(line)
    return result


def _base_config(run: Run, dataset: str, image_size: int, limit_train: int, epochs: int,
                 recipe: dict) -> TrainConfig:
    """The arms' recipe: the run's (or ``recipe``'s), without augmentation or TTA."""
    no_augmentation = {"crop_padding": 0, "cutout": 0, "flip": False, "alternate_flips": False,
                       "tta": 0, "permute_pixels": False}
    return other_config(run, dataset, image_size, limit_train, epochs, recipe | no_augmentation)


def _correct(sub: Run):
    from cnnlab.run import load_npz

    pred = load_npz(sub.path / "predictions.npz")
    return pred["probs"].argmax(1) == pred["y"]


def _summarize(arms: dict, correct: dict, cnn: str, num_classes: int, shape: list[int]) -> dict:
    import numpy as np

    from cnnlab.evaluate.stats import bootstrap_ci, mean_difference_ci, proportion_ci

    summary = {k: {"accuracies": v, "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))}
               for k, v in arms.items()}
    changes = {}
    for model in ("mlp", cnn):
        orig, perm = correct[f"{model}/original"], correct[f"{model}/permuted"]
        per_image = perm.mean(0) - orig.mean(0)  # seed-averaged, paired by image
        changes[model] = {
            "seeds_ci": mean_difference_ci(arms[f"{model}/original"], arms[f"{model}/permuted"]).to_dict(),
            "images_ci": bootstrap_ci(per_image).to_dict(),
            "original_ci": proportion_ci(int(orig.sum()), orig.size).to_dict()}
    verdicts = _verdicts(changes, cnn, num_classes, shape)
    return {"cnn": cnn, "arms": summary, "changes": changes, "chance": 1 / num_classes,
            "input_shape": shape, "verdicts": verdicts}


def _significant(change: dict) -> int:
    """-1 (drop), +1 (rise) or 0: the sign both intervals agree on, if they exclude zero."""
    signs = set()
    for key in ("seeds_ci", "images_ci"):
        ci = change[key]
        signs.add(-1 if ci["high"] < 0 else 1 if ci["low"] > 0 else 0)
    return signs.pop() if len(signs) == 1 else 0


def _verdicts(changes: dict, cnn: str, num_classes: int, shape: list[int]) -> list[str]:
    from cnnlab.evaluate.stats import Interval, difference_words

    lines = []
    for model, c in changes.items():
        words = difference_words(Interval(**c["seeds_ci"]), "points over seeds")
        img_ci = c["images_ci"]
        line = (f"{model}: {words}; over evaluation images {100 * img_ci['low']:+.2f} to "
                f"{100 * img_ci['high']:+.2f}: ")
        sign = _significant(c)
        learned = c["original_ci"]["low"] > 1 / num_classes  # significantly above chance
        if not learned:
            line += (f"it reached only {100 * c['original_ci']['estimate']:.1f}% on the original "
                     f"images (chance {100 / num_classes:.0f}%): it did not learn this data, so "
                     "this says nothing about locality.")
        elif sign == 0:
            line += "no significant difference."
            split = {k: c[k]["high"] < 0 or c[k]["low"] > 0 for k in ("seeds_ci", "images_ci")}
            if any(split.values()):
                which = "images" if split["images_ci"] else "seeds"
                other = "seeds" if which == "images" else "images"
                line += (f" (The interval over {which} excludes zero but the one over {other} "
                         "does not: a change counts only when it holds across both the "
                         "evaluation images and the training seeds.)")
            if model != "mlp" and max(shape[1:]) <= SMALL_IMAGE:
                line += (f" On {shape[1]}x{shape[2]} images a CNN's first two layers already see "
                         "most of the image, so locality cannot matter much here.")
        else:
            line += "drops." if sign < 0 else "rises."
        lines.append(line)
    return lines


def _examples(sub: Run) -> dict:
    from cnnlab.data import permute_pixels, pixel_permutation

    val = sub.data().eval
    examples = val.subset(range(min(6, len(val))))
    permuted = permute_pixels(examples, pixel_permutation(*examples.image_shape[1:]))
    return {"original": examples.x.numpy(), "permuted": permuted.x.numpy()}


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res, arrays = ctx.result, ctx.arrays
    arms = res["arms"]
    c, h, w = res["input_shape"]
    body = ""
    if res.get("run_dataset", res["dataset"]) != res["dataset"]:
        why = (f"on images of {SMALL_IMAGE} px or less a CNN's first two layers already see most "
               "of the image, so locality cannot show there (see the receptive fields below)"
               if max(res.get("run_input_shape", [0, 0, 0])[1:]) <= SMALL_IMAGE else
               f"with fewer than {FEW_IMAGES:,} training images the models' seed-to-seed noise "
               "swamps the test")
        body += para(f"This test runs on {res['dataset']}, not on the run's own data "
                     f"({res['run_dataset']}): {why}.")
    body += para(f"Data: {res['dataset']} ({c}x{h}x{w}, {res['n_train']:,} training and "
                f"{res['n_eval']:,} evaluation images). One fixed random permutation of pixel "
                f"positions is applied to every image, training and evaluation alike; each model "
                f"is trained on seeds {res['seeds']} for {res['epochs']} epochs without "
                "augmentation or test-time augmentation.")
    if arrays:
        body += img(P.save(_examples_figure(arrays), ctx.plots_dir, "permutation_examples"),
                    "permuted images", "600px")
    body += img(P.save(_bars(arms, res.get("chance")), ctx.plots_dir, "permutation"), "permutation test",
                "560px")
    rows = [[k.split("/")[0], k.split("/")[1], f"{100 * v['mean']:.2f}%", f"{100 * v['std']:.2f}",
             ", ".join(f"{100 * a:.1f}" for a in v["accuracies"])] for k, v in arms.items()]
    body += table(["model", "pixels", "mean accuracy", "std over seeds (points)", "per seed (%)"],
                  rows)
    body += "<p><b>Measured:</b></p><ul>" + "".join(
        f"<li>{esc(v)}</li>" for v in res["verdicts"]) + "</ul>"
    return body


def _examples_figure(arrays: dict):
    from cnnlab.viz.plots import plt, show

    n = len(arrays["original"])
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.3), squeeze=False)
    for j in range(n):
        show(axes[0, j], arrays["original"][j])
        show(axes[1, j], arrays["permuted"][j])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("permuted")
    fig.tight_layout()
    return fig


def _bars(arms: dict, chance: float | None = None):
    """Each arm's accuracy from 0 to 100% (a cut axis would exaggerate the drop), with chance."""
    from cnnlab.viz.plots import plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    labels = list(arms)
    ax.bar(range(len(labels)), [100 * arms[k]["mean"] for k in labels],
           yerr=[100 * arms[k]["std"] for k in labels], capsize=6,
           color=["tab:blue", "tab:cyan", "tab:orange", "tab:red"][: len(labels)])
    ax.set_xticks(range(len(labels)), [k.replace("/", "\n") for k in labels])
    if chance:
        ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1,
                   label=f"chance ({100 * chance:.0f}%)")
        ax.legend(loc="upper right", fontsize=9)
    ax.set(ylabel="accuracy (%), mean ± std over seeds", ylim=(0, 100))
    fig.tight_layout()
    return fig


SHAPES_TEST = {"dataset": "shapes", "cnn": "fastnet", "cnn_kwargs": {"widths": [16, 32, 64]},
               "recipe": {"lr": 0.2, "label_smoothing": 0.2}, "epochs": 8}
"""The test on procedural shapes, for runs whose images are too small to show locality: a
small fastnet (3x3 convolutions, trained fast) against the MLP, one recipe for both. Measured
on 16x16 shapes, 1,500 images, 8 epochs, seed 0: MLP 41.0% -> 42.2%, fastnet 78.6% -> 41.9%."""


def _own_data_too_small(run: Run) -> bool:
    return (max(run.meta["input_shape"][1:]) <= SMALL_IMAGE
            or run.metrics.get("n_train", FEW_IMAGES) < FEW_IMAGES)


def quick(run: Run) -> dict:
    """In ``cnnlab run``: 2 seeds; on images of 12 px or less (the 8x8 digits) locality
    cannot show, and on fewer than 1,000 training images seed noise swamps it, so the test
    runs on 1,500 16x16 procedural shapes instead."""
    if _own_data_too_small(run):
        return SHAPES_TEST | {"image_size": 16, "limit_train": 1500, "seeds": 2}
    return {"seeds": 2, "limit_train": 2000}


def _own_cnn(run: Run) -> tuple[str, dict | None]:
    """The CNN the test takes by default: the run's own, built as the run built it (LeNet-5
    barely learnt the 32x32 shapes, 34% where the run's fastnet reached 99.7%, and a CNN that has
    not learnt cannot show that shuffling pixels breaks it); LeNet-5 for an MLP run, and for a
    run started from weights, whose network (a pre-trained ResNet, say) would train from
    scratch four times."""
    c = run.config
    if c.model == "mlp" or c.started:
        return "lenet5", None
    return c.model, dict(c.model_kwargs) or None


def full(run: Run) -> dict:
    """In ``cnnlab run --full``: 3 seeds, and all 5,000 32x32 shapes for small images."""
    if _own_data_too_small(run):
        return SHAPES_TEST | {"image_size": 32, "seeds": 3, "epochs": 10}
    return {"seeds": 3}


def claims(res: dict) -> list[Claim]:
    """An MLP ignores locality: its over-image interval within +-``UNCHANGED`` and no
    significant change over seeds; a CNN depends on it: its drop significant over images and
    over seeds alike; and both models learned (their accuracy on the original pixels above
    chance: a model at chance is "unchanged" for nothing). Short of that, "no significant
    difference"; an MLP that changes significantly, or a CNN that gains, contradicts the claim."""
    changes = res["changes"]
    mlp, cnn = changes["mlp"]["images_ci"], changes[res["cnn"]]["images_ci"]
    mlp_seeds, cnn_seeds = changes["mlp"]["seeds_ci"], changes[res["cnn"]]["seeds_ci"]
    chance = res.get("chance", 0.0)
    learned = all(changes[m]["original_ci"]["low"] > chance for m in ("mlp", res["cnn"]))
    mlp_same = (-UNCHANGED <= mlp["low"] and mlp["high"] <= UNCHANGED
                and mlp_seeds["low"] <= 0 <= mlp_seeds["high"])
    cnn_drops = cnn["high"] < 0 and cnn_seeds["high"] < 0
    contradicted = mlp["low"] > 0 or mlp["high"] < 0 or cnn["low"] > 0
    holds = True if learned and mlp_same and cnn_drops else False if contradicted else None

    def words(ci: dict) -> str:
        return (f"{100 * ci['estimate']:+.1f} points (95% CI {100 * ci['low']:+.1f} to "
                f"{100 * ci['high']:+.1f})")

    return [Claim("An MLP ignores where pixels are: one fixed shuffle of the pixels leaves it "
                  "unchanged, while it breaks a CNN",
                  f"on {res['dataset']} ({res['n_eval']} images): MLP {words(mlp)}, over seeds "
                  f"{100 * mlp_seeds['low']:+.1f} to {100 * mlp_seeds['high']:+.1f} (unchanged: "
                  f"{'yes' if mlp_same else 'no'}, within +-{100 * UNCHANGED:.0f} over images and no "
                  f"change over seeds); {res['cnn']} {words(cnn)}, over seeds "
                  f"{100 * cnn_seeds['low']:+.1f} to {100 * cnn_seeds['high']:+.1f}", holds)]


ANALYSIS = register(Analysis(
    name="permutation", title="The permutation test", compute=permutation, section=section,
    order=82, verb=("experiment", "permutation"), quick=quick,
    full=full,
    claims=claims,
    bounds={"seeds": (1, 100), "image_size": (0, 512), "limit_train": (0, 1e9), "epochs": (0, 10_000)},
))
