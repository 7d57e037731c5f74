"""Does the model leak who was in its training set? Membership inference, three strengths.

A target model is trained on ``members`` images of a pool (shapes by default: unlimited, so
there are thousands of non-members and a 0.1% false-positive rate means something); as many
``nonmembers`` of the same pool are never shown to it. Shadow models, each trained the same way
on a random half of members and non-members (membership known), feed the shadow-model attack
(Shokri et al. 2017) and offline LiRA (Carlini et al. 2022); the loss-threshold attack (Yeom et
al. 2018) needs none. A second target trained on random labels must memorise, and leaks more:
the comparison is the lecture's point that overfitting is what leaks. Graded by AUC (with a
bootstrap CI) and TPR at 0.1% and 1% FPR, on a log-log ROC (evaluate/membership.py).
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

ATTACKS = {"loss": "loss threshold (Yeom et al. 2018)", "shadow": "shadow models (Shokri et al. 2017)",
           "lira": "offline LiRA (Carlini et al. 2022)",
           "loss_random_labels": "loss threshold, target trained on random labels"}


def privacy(run: Run, *, dataset: str = "shapes", image_size: int = 16, members: int = 1000,
            nonmembers: int = 2000, shadows: int = 4, epochs: int = 30, model: str = "fastnet",
            model_kwargs: dict | None = None, recipe: dict | None = None,
            random_labels: bool = True, log: Log = print) -> dict:
    """Membership inference: can an attacker tell a model's training images from the pool's others?

    Args:
        dataset: the pool's dataset (its training split); shapes gives thousands of images.
        image_size: image side for shapes or folders (0: the dataset's).
        members: images the target trains on.
        nonmembers: images of the same pool it never sees.
        shadows: shadow models, each trained like the target on as many images of the
            candidates (members and non-members), so that every image is OUT of most of them;
            at most 16 on a CPU budget. 0: the loss attack only.
        epochs: training epochs of the target and every shadow (long: overfitting leaks).
        model: the model trained.
        model_kwargs: its arguments, e.g. {widths: [16, 32, 64]}.
        recipe: settings to change from the run's (default: no augmentation, no weight decay).
        random_labels: also attack a target trained on random labels.
    """
    import numpy as np

    from cnnlab.data import data_for

    if members < 10 or nonmembers < 10 or not 0 <= shadows <= 64 or epochs < 1:
        raise CnnlabError("privacy needs members and nonmembers >= 10, 0 <= shadows <= 64, epochs >= 1")
    base = _config(run, dataset, image_size, epochs, model, model_kwargs, recipe, log)
    pool = data_for(base).train
    candidates, is_member = _candidates(len(pool), members, nonmembers, base.val_seed, dataset)
    x, y = pool.x[candidates], pool.y[candidates].numpy()

    def train_on(keep, label: str, cfg=base) -> Run:
        drop = np.setdiff1d(np.arange(len(pool)), keep)
        return run.subrun(cfg.derive(drop_train=run.index_file(drop)), label, log)

    target = train_on(candidates[is_member], "privacy-target")
    probs = target.predict(x, tta=0, calibrated=False)  # raw softmax: what an attacker sees
    result = {"members": members, "nonmembers": nonmembers, "shadows": shadows, "dataset": dataset,
              "epochs": epochs, "model": model, "gap": _gap(target, probs[is_member], y[is_member]),
              "target": str(target.path), "dp": target.metrics.get("dp")}
    scores = {"loss": _loss_scores(probs, y)}
    if shadows:
        attacks, result["lira_out_models"] = _shadow_scores(train_on, candidates, x, probs, y,
                                                            shadows, members, base.val_seed, log)
        scores |= attacks
    if random_labels:  # memorised labels: the same members, labels drawn at random
        scores["loss_random_labels"] = _random_labels(train_on, base, pool.num_classes, candidates,
                                                      is_member, x)
    result["attacks"], result["arrays"] = _grade(scores, is_member, log)
    return result


def _candidates(pool: int, members: int, nonmembers: int, seed: int, dataset: str):
    """(the attacked images' indices into the pool, sorted; which of them are members), drawn
    by one seeded permutation."""
    import numpy as np

    if members + nonmembers > pool:
        raise CnnlabError(f"privacy needs members + nonmembers <= {pool} (the pool of {dataset})")
    order = np.random.default_rng(seed + 11).permutation(pool)
    candidates = np.sort(order[: members + nonmembers])
    return candidates, np.isin(candidates, order[:members])


def _random_labels(train_on, base, n_classes: int, candidates, is_member, x):
    """Loss-attack scores on a target trained on the same members with random labels."""
    from cnnlab.data import data_for

    noisy = base.derive(label_noise=1 - 1 / n_classes)  # flipped uniformly: random labels
    target = train_on(candidates[is_member], "privacy-random-labels", noisy)
    y = data_for(noisy).train.y[candidates].numpy()
    return _loss_scores(target.predict(x, tta=0, calibrated=False), y)


def _config(run: Run, dataset, image_size, epochs, model, model_kwargs, recipe, log: Log):
    """The target's and shadows' recipe: the run's, without augmentation or weight decay; said
    when the pool is not the run's own data (the run's model is then not the one attacked)."""
    cfg = other_config(run, dataset, image_size, 0, epochs,
                       {"crop_padding": 0, "flip": False, "weight_decay": 0.0, "cutout": 0,
                        "label_noise": 0.0, "checkpoints": 0, "groups": ""} | (recipe or {}))
    if cfg.dataset != run.config.dataset:
        log(f"membership inference on a {model} overfit for {epochs} epochs on {cfg.dataset}, not on "
            f"the run's own model ({run.config.dataset}): a model that leaks, to show the attacks; "
            f"--dataset chooses the pool")
    return cfg.derive(model=model, model_kwargs=model_kwargs or {}, drop_train="")


def _loss_scores(probs, y):
    from cnnlab.evaluate.membership import loss_scores

    return loss_scores(probs, y)


def _gap(target: Run, member_probs, member_y) -> dict:
    train_acc = float((member_probs.argmax(1) == member_y).mean())
    return {"train_accuracy": train_acc, "test_accuracy": target.metrics["accuracy"],
            "gap": train_acc - target.metrics["accuracy"]}


def shadow_sets(n: int, members: int, shadows: int, seed: int):
    """(S, N) bool: which of the N candidates each shadow trains on. Every shadow trains on
    exactly ``members`` images, as the target does (same recipe, same epochs): windows of that
    length, evenly spaced round a random cycle of the candidates, so every image is IN the same
    number of shadows (floor or ceil of S * members / N) and OUT of all the others."""
    import numpy as np

    order = np.random.default_rng(seed + 12).permutation(n)
    inside = np.zeros((shadows, n), bool)
    for s in range(shadows):
        inside[s, order[(s * n // shadows + np.arange(members)) % n]] = True
    return inside


FIXED_VARIANCE_BELOW = 8
"""With fewer OUT shadows than this per image, offline LiRA uses one variance pooled over all
images (Carlini et al. 2022's fixed-variance variant for few shadows), each image keeping its
own mean."""


def _shadow_scores(train_on, candidates, x, target_probs, y, shadows: int, members: int, seed: int,
                   log: Log) -> tuple[dict, dict]:
    """Shadow models shaped like the target: the Shokri attack's and offline LiRA's scores,
    and how many OUT shadows each image's LiRA score had."""
    import numpy as np

    from cnnlab.evaluate import membership as M

    shadow_in = shadow_sets(len(candidates), members, shadows, seed)
    stats, feats = [], []
    for s in range(shadows):
        p = train_on(candidates[shadow_in[s]], f"privacy-shadow{s + 1}").predict(x, tta=0, calibrated=False)
        stats.append(M.logit_confidence(p, y))
        feats.append(M.attack_features(p, y))
    n_out = (~shadow_in).sum(0)
    log(f"{shadows} shadow models trained like the target, each on {members} of the "
        f"{len(candidates)} candidates; every image is OUT of {n_out.min()}-{n_out.max()} of them")
    attacks = {"shadow": M.shadow_attack(np.concatenate(feats), shadow_in.ravel(),
                                         M.attack_features(target_probs, y)),
               "lira": M.lira_offline(M.logit_confidence(target_probs, y), np.array(stats), shadow_in,
                                      min_out=FIXED_VARIANCE_BELOW)}
    out_models = {"min": int(n_out.min()), "max": int(n_out.max()),
                  "variance": ("per image" if n_out.min() >= FIXED_VARIANCE_BELOW else
                               "pooled over images (fixed variance: too few OUT shadows for a "
                               "per-image one)")}
    return attacks, out_models


def _grade(scores: dict, is_member, log: Log) -> tuple[list[dict], dict]:
    """ROC, AUC with a bootstrap CI, and TPR at 0.1% / 1% FPR of each attack."""
    import numpy as np

    from cnnlab.evaluate.membership import rank_auc, roc
    from cnnlab.evaluate.stats import bootstrap_ci

    rows, curves = [], {}
    for name, score in scores.items():
        r = roc(score[is_member], score[~is_member])
        ci = bootstrap_ci(np.arange(len(score)), lambda i, s=score: rank_auc(is_member[i], s[i]),
                          resamples=300, batched=True).to_dict()
        verdict = ("the attack works: AUC above chance" if ci["low"] > 0.5 else
                   "no significant difference from guessing (AUC 0.5)")
        rows.append({"attack": name, "auc": r["auc"], "auc_ci": ci, "tpr_at_0.1%": r["tpr_at_0.1%"],
                     "tpr_at_1%": r["tpr_at_1%"], "verdict": verdict})
        curves[f"fpr_{name}"], curves[f"tpr_{name}"] = r["fpr"], r["tpr"]
        log(f"{ATTACKS[name]:>48}: AUC {r['auc']:.3f} (95% CI {ci['low']:.3f}-{ci['high']:.3f}), "
            f"TPR {100 * r['tpr_at_0.1%']:.1f}% at 0.1% FPR, {100 * r['tpr_at_1%']:.1f}% at 1% FPR")
    return rows, curves


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res = ctx.result
    g = res["gap"]
    body = para(f"A {res['model']} trained for {res['epochs']} epochs on {res['members']:,} "
                f"{res['dataset']} images (no augmentation, no weight decay), and attacked on those "
                f"members and {res['nonmembers']:,} non-members of the same pool, with "
                f"{res['shadows']} shadow models. Its accuracy: {100 * g['train_accuracy']:.1f}% on "
                f"its members, {100 * g['test_accuracy']:.1f}% on the test split (gap "
                f"{100 * g['gap']:.1f} points).")
    out = res.get("lira_out_models")
    if out:
        body += para(f"Each shadow trains like the target: on {res['members']:,} of the "
                     f"{res['members'] + res['nonmembers']:,} candidates, same recipe and epochs. "
                     f"Every image's offline LiRA score uses the {out['min']}-{out['max']} shadows "
                     f"that did not train on it (its own mean; variance {out['variance']}).",
                     note=True)
    if res.get("dp"):
        body += para(f"The target and its shadows were trained with DP-SGD: epsilon "
                     f"{res['dp']['epsilon_spent']:.2f} at delta {res['dp']['delta']:g}.")
    body += table(["attack", "AUC (95% CI)", "TPR at 0.1% FPR", "TPR at 1% FPR", "verdict"],
                  [[ATTACKS[r["attack"]], f"{r['auc']:.3f} ({r['auc_ci']['low']:.3f}-"
                    f"{r['auc_ci']['high']:.3f})", f"{100 * r['tpr_at_0.1%']:.1f}%",
                    f"{100 * r['tpr_at_1%']:.1f}%", r["verdict"]] for r in res["attacks"]])
    body += para(f"With {res['nonmembers']:,} non-members, 0.1% FPR is "
                 f"{res['nonmembers'] / 1000:.0f} false alarms: the lowest rates rest on few images. "
                 "Published anchors, for scale: LiRA on CIFAR-10 without defence reaches a TPR of "
                 "several percent at 0.1% FPR (Carlini et al. 2022, with many more shadow models "
                 "than this CPU budget's); DP-SGD from scratch on CIFAR-10 at epsilon 8 reaches "
                 "60-80% on GPUs (De et al. 2022 and earlier); benchmarks/dp_tradeoff.py "
                 "measures the trade-off here.", note=True)
    if ctx.arrays:
        body += img(P.save(_roc_figure(ctx.arrays, res), ctx.plots_dir, "membership_roc"),
                    "membership inference ROC, log axes", "520px")
    return body


def _roc_figure(arrays: dict, res: dict):
    import numpy as np

    from cnnlab.viz.plots import plt

    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    for r in res["attacks"]:
        fpr, tpr = arrays[f"fpr_{r['attack']}"], arrays[f"tpr_{r['attack']}"]
        ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4),
                label=f"{ATTACKS[r['attack']].split(' (')[0]} (AUC {r['auc']:.2f})")
    ax.plot([1e-4, 1], [1e-4, 1], "--", color="grey", label="guessing")
    ax.set(xscale="log", yscale="log", xlim=(1e-4, 1), ylim=(1e-4, 1),
           xlabel="false-positive rate", ylabel="true-positive rate",
           title="Membership inference (log-log ROC)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


PRIMARY = ("lira", "shadow", "loss")
"""The attack the claim tests, the first of these that ran (the random-label control never)."""


def claims(res: dict) -> list[Claim]:
    """Privacy: the primary membership attack's AUC against chance. The primary attack is fixed
    before measuring (LiRA where shadow models were trained, the strongest by design), so the
    verdict tests one attack, not the best of several (which would need a correction)."""
    by_name = {a["attack"]: a for a in res["attacks"]}
    primary = next((by_name[k] for k in PRIMARY if k in by_name), res["attacks"][0])
    ci = primary["auc_ci"]
    return [Claim("A trained model leaks which images it was trained on",
                  f"{primary['attack']} attack (the primary one, fixed in advance) on an overfit model: "
                  f"AUC {ci['estimate']:.3f} (95% CI {ci['low']:.3f}-{ci['high']:.3f}; chance 0.5)",
                  True if ci["low"] > 0.5 else False if ci["high"] < 0.5 else None)]


ANALYSIS = register(Analysis(
    name="privacy", title="Privacy: membership inference", compute=privacy, section=section,
    order=94, verb=("audit", "privacy"),
    quick={"shadows": 4, "epochs": 12, "members": 800, "nonmembers": 1600,
           "model_kwargs": {"widths": [16, 32, 64]}},
    full={"shadows": 16, "epochs": 40, "members": 2000, "nonmembers": 3000, "image_size": 32,
          "model_kwargs": {"widths": [16, 32, 64]}},
    claims=claims,
    bounds={"image_size": (0, 512),
            "members": (10, 1e7),
            "nonmembers": (10, 1e7),
            "shadows": (0, 64),
            "epochs": (1, 10_000)},
))
