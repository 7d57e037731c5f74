"""MLP versus CNN: the same data, recipe and budget for every model; size, cost and accuracy.

An MLP's first layer has one weight per input pixel for every hidden unit, so its size grows
with the image; a convolution slides one small window of shared weights over all positions.
Each model's accuracy carries a Wilson interval, and each is compared with the run's own
model on the same evaluation images by an exact McNemar test. McNemar covers which images were
drawn, not which training run: with ``seeds`` > 1 the depth pair trains again with other seeds
and their difference gets a Welch interval over seeds as well.

On the digits the depth pair is about one point apart (ResNet-20 halves LeNet-5's 2% of
errors), a few of the 360 test images: McNemar on them alone found it at 2 seeds of 5. So
there the pair also trains on the digits' four other folds (``digits:fold=K``), and the depth
claim is tested on all 1,797 images, each predicted by a model that never saw it (5-fold
cross-fitting; found at 4 seeds of 5, p 0.0015-0.09: benchmarks/depth_seeds.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, pct_ci, table

if TYPE_CHECKING:
    from cnnlab.config import TrainConfig
    from cnnlab.run import Run

ROW_KEYS = ("model", "params", "first_layer_params", "macs", "accuracy", "train_time_s")


def mlp_vs_cnn(run: Run, *, models: tuple[str, ...] = ("mlp", "lenet5", "resnet20"), seeds: int = 1,
               folds: bool = True, log: Log = print) -> dict:
    """Train each model with the run's data and recipe; compare size, cost and accuracy.

    Args:
        models: the models to compare (comma-separated); the run's own model is reused, and
            joins them where it is not named: each model is compared with it (and the depth
            pair with each other).
        seeds: trainings of each model of the depth pair (the first is the one above; more
            give the depth claim an interval over seeds too, on all the digits with ``folds``).
        folds: on the digits (their plain split, every image), train the depth pair on the
            four other folds too and test the depth claim on all 1,797 images; other data: no
            effect.
    """
    from cnnlab.models import list_models

    unknown = [m for m in models if m not in list_models()]
    if unknown or not models:
        raise CnnlabError(f"unknown model {', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(list_models())}")
    if run.config.model not in models:  # a fastnet run: its claims compare against it
        models = (*models, run.config.model)
    rows, correct = [], {}
    # a start from weights, frozen epochs, a body lr scale or an lr range test: the others train
    # without them (TrainConfig.fresh), so the run's own model trains anew, as they do
    started = run.config.started
    for name in models:
        reuse = name == run.config.model and not started  # every model from scratch, alike
        sub = run if reuse else _train(run, name, 0, log)
        correct[name] = _correct(sub)
        m = sub.metrics  # training time without validation: sub-runs validate once, the run each epoch
        rows.append({k: m[k] for k in ROW_KEYS} | {"train_time_s": m.get("train_steps_s", m["train_time_s"]),
                                                   "run": str(sub.path)})
    result = {"dataset": run.config.dataset, "epochs": run.config.epochs, "models": rows,
              "num_classes": len(run.classes),
              "retrained_from_scratch": started,
              "reference": run.config.model,
              "comparisons": _comparisons(correct, run.config.model)}
    if set(DEPTH) <= set(correct):
        result |= _depth(run, correct, seeds, folds and _cross_fits(run.config), log)
    for r in rows:
        r["accuracy_ci"] = _ci(correct[r["model"]])
        log(f"{r['model']:>9}: accuracy {pct_ci(r['accuracy_ci'])}  params {r['params']:,}  "
            f"first layer {r['first_layer_params']:,}  MACs {r['macs']:,}  {r['train_time_s']:.1f}s")
    pooled = [result["depth_folds"]["comparison"]] if "depth_folds" in result else []
    for c in result["comparisons"] + pooled:
        log(f"  {c['words']}")
    return result


def _depth(run: Run, correct: dict, seeds: int, cross: bool, log: Log) -> dict:
    """The depth pair beyond the table: on all the digits through their folds (``cross``), and
    trained again with other seeds (on all the digits where the folds are)."""
    out = {}
    if cross:
        out["depth_folds"] = _depth_folds({name: _all_digits(run, name, correct[name], 0, log)
                                           for name in DEPTH})
    if seeds > 1:
        def accuracy(name: str, offset: int) -> float:
            right = _correct(_train(run, name, offset, log))
            return float((_all_digits(run, name, right, offset, log) if cross else right).mean())

        first = out["depth_folds"]["accuracy"] if cross else {m: float(correct[m].mean()) for m in DEPTH}
        out["depth_seeds"] = {name: [first[name]] + [accuracy(name, s) for s in range(1, seeds)]
                              for name in DEPTH}
    return out


def _cross_fits(cfg: TrainConfig) -> bool:
    """Whether the run trained on the plain digits' whole training split and was scored on its
    test split: then that split is fold 0 of ``digits:fold=K`` and the other four complete it."""
    return (cfg.dataset == "digits" and not cfg.val_split and not cfg.limit_train and not cfg.drop_train
            and not cfg.label_noise and not cfg.permute_pixels)


def _all_digits(run: Run, name: str, fold0, seed_offset: int, log: Log):
    """Which of the 1,797 digits model ``name`` gets right, each from the model that did not
    train on it: ``fold0`` (the run's test split), then the digits' folds 1-4."""
    import numpy as np

    from cnnlab.data.digits import FOLDS

    return np.concatenate([fold0] + [_correct(_train(run, name, seed_offset, log, fold=k))
                                     for k in range(1, FOLDS)])


def _depth_folds(pooled: dict) -> dict:
    """The depth pair on all the digits: the images come fold by fold, in the same order for
    both models, so McNemar pairs them."""
    from cnnlab.data.digits import FOLDS

    n = len(pooled[DEPTH[0]])
    return {"folds": FOLDS, "n": n, "accuracy": {name: float(v.mean()) for name, v in pooled.items()},
            "comparison": _compare(pooled, *DEPTH, where=f"all {n:,} digits, {FOLDS} folds")}


def _train(run: Run, name: str, seed_offset: int, log: Log, fold: int = 0) -> Run:
    """Model ``name`` from scratch with the run's data and recipe (seed + ``seed_offset``;
    ``fold`` > 0: on ``digits:fold=K``, a run on the plain digits being fold 0)."""
    kwargs = run.config.model_kwargs if name == run.config.model else {}  # another model's own
    data = {"dataset": f"digits:fold={fold}"} if fold else {}
    cfg = run.config.fresh(model=name, model_kwargs=kwargs, seed=run.config.seed + seed_offset, **data)
    label = name + (f"-fold{fold}" if fold else "") + (f"-seed{seed_offset}" if seed_offset else "")
    return run.subrun(cfg, label, log)


def _correct(run: Run):
    from cnnlab.run import load_npz

    pred = load_npz(run.path / "predictions.npz")
    return pred["probs"].argmax(1) == pred["y"]


def _ci(correct) -> dict:
    from cnnlab.evaluate.stats import accuracy_ci

    return accuracy_ci(correct).to_dict()


def _comparisons(correct: dict, reference: str) -> list[dict]:
    """Each model against the reference model, McNemar on the same evaluation images; and the
    depth pair (``DEPTH``) against each other where the reference is neither of them."""
    if reference not in correct:
        return []
    out = [_compare(correct, name, reference) for name in correct if name != reference]
    deeper, shallower = DEPTH
    if reference not in DEPTH and deeper in correct and shallower in correct:
        out.append(_compare(correct, deeper, shallower))
    return out


def _compare(correct: dict, name: str, reference: str, where: str = "") -> dict:
    from cnnlab.evaluate.stats import mcnemar

    c, ref = correct[name], correct[reference]
    test = mcnemar(c, ref)
    diff = 100 * float(c.mean() - ref.mean())
    where = f" on {where}" if where else ""
    verdict = ("no significant difference" if test.p_value >= 0.05 else
               "better" if diff > 0 else "worse")
    return {"model": name, "reference": reference, "difference_points": diff,
            **test.to_dict(), "verdict": verdict,
            "words": f"{name} vs {reference}{where}: {diff:+.2f} points ({test.a_only} images only "
                     f"{name} gets right, {test.b_only} only {reference}; McNemar p = "
                     f"{test.p_value:.3g}): {verdict}"}


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res = ctx.result
    rows = res["models"]
    header = ["model", "parameters", "first-layer parameters", "MACs / image",
              "accuracy (95% CI)", "training time (s)"]
    body = para(f"Same data ({res['dataset']}), same recipe and budget ({res['epochs']} epochs) "
                "for every model, each from scratch" + (
                    " (the run's own model trained with settings the others do not share: a start "
                    "from weights, frozen epochs, a body learning-rate scale or a learning-rate range "
                    "test; so it was trained again from scratch here, as they were)"
                    if res.get("retrained_from_scratch") else "") + ".")
    body += table(header, [[r["model"], f"{r['params']:,}", f"{r['first_layer_params']:,}",
                            f"{r['macs']:,}", pct_ci(r["accuracy_ci"]), f"{r['train_time_s']:.1f}"]
                           for r in rows])
    if res["comparisons"]:
        body += "<ul>" + "".join(f"<li>{esc(c['words'])}</li>" for c in res["comparisons"]) + "</ul>"
    if "depth_folds" in res:
        body += para(_folds_words(res))
    if "depth_seeds" in res:
        from cnnlab.evaluate.stats import difference_words

        ci, n = _over_seeds(res["depth_seeds"])
        accs = "; ".join(f"{m}: " + ", ".join(f"{100 * a:.2f}%" for a in v)
                         for m, v in res["depth_seeds"].items())
        where = " on all the digits" if "depth_folds" in res else ""
        body += para(f"The depth pair trained {n} times each{where}, with 0 to {n - 1} added to the run's "
                     f"seed ({accs}): {DEPTH[0]} minus {DEPTH[1]} {difference_words(ci)}, Welch over seeds. "
                     "McNemar above covers which images were drawn; this covers which training run.")
    body += img(P.save(_figure(rows), ctx.plots_dir, "mlp_vs_cnn"), "MLP versus CNN", "900px")
    body += para("An MLP's first layer has one weight per input pixel for every hidden unit, so "
                 "its size grows with the image. A convolution slides one small window of shared "
                 "weights across all positions, so its first layer stays tiny, it sees local "
                 "structure, and the saved parameters can go into depth.")
    return body


def _folds_words(res: dict) -> str:
    """What the five folds add to the depth pair's comparison on the test split alone."""
    f = res["depth_folds"]
    split = _on_split(res)
    seen = (f"on the test split they are {abs(split['difference_points']):.2f} points apart "
            f"({split['a_only'] + split['b_only']} images tell them apart, McNemar p = "
            f"{split['p_value']:.2g}). Over seeds the pair is about a point apart here (five seeds "
            "measured), a handful of the test split's images: too few for McNemar to find at every "
            "seed, so " if split else "")
    accs = ", ".join(f"{m} {100 * a:.2f}%" for m, a in f["accuracy"].items())
    also = " (and, with seeds, on the interval over seeds below)" if "depth_seeds" in res else ""
    return (f"The depth pair on all the digits: {seen}the pair also trained on the digits' "
            f"{f['folds'] - 1} other folds (digits:fold=1 to {f['folds'] - 1}; the test split above is "
            f"fold 0), and every one of the {f['n']:,} images was predicted by a model that never saw it "
            f"({accs}): {f['comparison']['words']}. The depth claim rests on this test{also}.")


def _figure(rows: list[dict]):
    from cnnlab.viz.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(rows) + 1.6))
    names = [r["model"] for r in rows]
    axes[0].barh(names, [r["first_layer_params"] for r in rows], color="tab:orange")
    axes[0].set(xscale="log", title="First-layer parameters (log scale)", xlim=(10, None))
    acc = [100 * r["accuracy"] for r in rows]
    err = [[100 * (r["accuracy"] - r["accuracy_ci"]["low"]) for r in rows],
           [100 * (r["accuracy_ci"]["high"] - r["accuracy"]) for r in rows]]
    axes[1].barh(names, acc, xerr=err, capsize=4, color="tab:blue")
    left = max(0, min(acc) - 10)
    axes[1].set(title="Accuracy (%), 95% CI", xlim=(left, 100))
    for ax in axes:
        ax.invert_yaxis()
    for i, r in enumerate(rows):  # counts beside their bars, accuracies inside theirs (clear of the CI)
        axes[0].text(r["first_layer_params"], i, f"  {r['first_layer_params']:,}", va="center", fontsize=9)
        axes[1].text(left + 0.3, i, f"{acc[i]:.1f}%", va="center", fontsize=9, color="white",
                     fontweight="bold")
    fig.tight_layout()
    return fig


def claims(res: dict) -> list[Claim]:
    """Few weights per layer (an exact count) and depth (McNemar against LeNet-5, and Welch over
    seeds where the pair trained several)."""
    from cnnlab.evaluate.stats import difference_words, significant

    models = {m["model"]: m for m in res["models"]}
    out = []
    if "mlp" in models and res["reference"] in models:
        mlp, cnn = models["mlp"]["first_layer_params"], models[res["reference"]]["first_layer_params"]
        out.append(Claim("A convolution needs far fewer weights than a layer with a weight per "
                         "pixel", f"first layer: MLP {mlp:,} weights, {res['reference']} {cnn:,} "
                         f"({mlp / max(cnn, 1):,.0f}x fewer); exact counts", cnn < mlp))
    deeper, shallower = DEPTH
    k, lenet = res.get("num_classes"), models.get(shallower)
    if k and lenet and lenet["accuracy"] < 1 / k + (1 - 1 / k) / 2:  # the report's barely_learnt
        return out  # LeNet-5 has not learnt this data (34% on the 4 shapes): no test of depth
    pooled = "depth_folds" in res  # then the claim rests on all the digits
    c = res["depth_folds"]["comparison"] if pooled else _on_split(res)
    if c is None:
        return out
    gain = c["difference_points"] if c["model"] == deeper else -c["difference_points"]
    holds = None if c["p_value"] >= 0.05 else gain > 0
    words = c["words"]
    if "depth_seeds" in res:  # and over training runs: both must say so
        ci, n = _over_seeds(res["depth_seeds"])
        words += f"; over {n} seeds each: {difference_words(ci)}"
        over_seeds = (ci.estimate > 0) if significant(ci) else None
        holds = holds if over_seeds == holds else None  # both must say it, else within noise
    else:
        per_fold = " per fold" if pooled else ""
        words += f"; one training of each{per_fold} (cnnlab run --full adds seeds)"
    out.append(Claim(f"A deeper network does better ({deeper} against {shallower})", words, holds))
    return out


def _on_split(res: dict) -> dict | None:
    """The depth pair's McNemar comparison on the run's test split, whichever of the two is the
    run's own model (None where the run compared other models)."""
    return next((c for c in res["comparisons"] if {c["model"], c["reference"]} == set(DEPTH)), None)


def _over_seeds(accuracies: dict):
    """The depth pair's accuracy difference (deeper minus shallower), Welch over seeds."""
    from cnnlab.evaluate.stats import mean_difference_ci

    deeper, shallower = DEPTH
    return mean_difference_ci(accuracies[shallower], accuracies[deeper]), len(accuracies[deeper])


DEPTH = ("resnet20", "lenet5")
"""The depth claim's pair, deeper first: 20 layers against LeNet-5's 5 (with the run's own model
as McNemar's reference, the sign follows which of the two that is)."""


ANALYSIS = register(Analysis(
    name="mlp_vs_cnn", title="MLP versus CNN", compute=mlp_vs_cnn, section=section, order=80,
    verb=("experiment", "mlp-vs-cnn"),
    full={"seeds": 3},
    claims=claims,
    bounds={"seeds": (1, 20)},
))
