"""How much did starting from trained weights help? The run against its twin from scratch.

A run started with ``--init-from RUN`` or ``--pretrained FILE`` is trained again with exactly
its recipe (data, epochs, seed, augmentation) but from a fresh initialisation, and both are
scored on the same evaluation images: accuracy with Wilson intervals, and McNemar on the
images only one of them gets right. ``cnnlab run`` adds this section by itself when the main
CNN started from weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import para, table

if TYPE_CHECKING:
    from cnnlab.run import Run


def started_from_weights(config) -> bool:
    return bool(config.init_from or config.pretrained) and config.task == "classify"


def transfer(run: Run, *, log: Log = print) -> dict:
    """The run, started from trained weights, against the same recipe from scratch."""
    import numpy as np

    from cnnlab.evaluate.stats import mcnemar, proportion_ci
    from cnnlab.io import load_npz

    cfg = run.config
    if not started_from_weights(cfg):
        raise CnnlabError(f"{run.path} did not start from trained weights; train it with "
                          "--init-from RUN or --pretrained FILE (image classification)")
    start = f"--init-from {cfg.init_from}" if cfg.init_from else f"--pretrained {cfg.pretrained}"
    scratch = run.subrun(cfg.fresh(), "scratch", log)  # the same recipe, from scratch
    hits = {}
    for name, r in (("from weights", run), ("from scratch", scratch)):
        pred = load_npz(r.path / "predictions.npz")
        hits[name] = pred["probs"].argmax(1) == pred["y"]
    test = mcnemar(hits["from weights"], hits["from scratch"])
    acc = {k: proportion_ci(int(v.sum()), len(v)).to_dict() for k, v in hits.items()}
    n_train = len(run.data().train)
    log(f"from weights {100 * acc['from weights']['estimate']:.2f}% vs from scratch "
        f"{100 * acc['from scratch']['estimate']:.2f}% on {len(hits['from scratch'])} images "
        f"(McNemar p = {test.p_value:.2g})")
    return {"start": start, "n_train": n_train, "epochs": cfg.epochs, "model": cfg.model,
            "freeze_epochs": cfg.freeze_epochs, "body_lr_scale": cfg.body_lr_scale,
            "accuracy": acc, "mcnemar": test.to_dict(), "n_eval": int(len(hits["from scratch"])),
            "classes": int(np.unique(load_npz(run.path / "predictions.npz")["y"]).size)}


def section(ctx: SectionContext) -> str:
    res = ctx.result
    fine = (f", the body frozen for {res['freeze_epochs']} epochs" if res["freeze_epochs"] else "") + (
        f", its learning rate {res['body_lr_scale']:g}x the head's" if res["body_lr_scale"] != 1 else "")
    body = para(f"This run's {res['model']} started from trained weights ({res['start']}{fine}) and "
                f"trained {res['epochs']} epochs on {res['n_train']:,} images. Its twin trained the "
                "same recipe from a fresh initialisation.")
    from cnnlab.viz.html import pct_ci

    body += table(["start", "accuracy (95% CI)"],
                  [[k, pct_ci(v)] for k, v in res["accuracy"].items()])
    t = res["mcnemar"]
    body += para(f"McNemar on the same {res['n_eval']:,} evaluation images: {t['a_only']} only the run "
                 f"from weights gets right, {t['b_only']} only the one from scratch (p = "
                 f"{t['p_value']:.2g}): " + _words(res) + ".")
    return body


def _words(res: dict) -> str:
    t, acc = res["mcnemar"], res["accuracy"]
    if t["p_value"] >= 0.05:
        return "no significant difference"
    better = acc["from weights"]["estimate"] > acc["from scratch"]["estimate"]
    return "the start helped" if better else "the start hurt"


def claims(res: dict) -> list[Claim]:
    """Transfer learning: the start from trained weights against scratch, by McNemar."""
    acc, t = res["accuracy"], res["mcnemar"]
    better = acc["from weights"]["estimate"] > acc["from scratch"]["estimate"]
    holds = None if t["p_value"] >= 0.05 else better
    return [Claim("On small data, starting from trained weights beats training from scratch",
                  f"{res['n_train']:,} training images: from weights "
                  f"{100 * acc['from weights']['estimate']:.1f}%, from scratch "
                  f"{100 * acc['from scratch']['estimate']:.1f}% (McNemar p = {t['p_value']:.2g}): "
                  + _words(res), holds)]


ANALYSIS = register(Analysis(
    name="transfer", title="Transfer learning: the start against scratch", compute=transfer,
    section=section, order=81, verb=("experiment", "transfer"), claims=claims,
    applies=started_from_weights,
    takes="one more training of the run's recipe",
))
