"""Can the probabilities be read as chances? Calibration, temperature scaling, abstaining.

The evaluation images are split in two (seeded): one part fits the temperature, the other
scores the model before and after, so the improvement is never measured on the images that
produced it. ECE, adaptive ECE, NLL and Brier carry bootstrap CIs, and the change in ECE a
paired bootstrap CI. The fitted temperature is saved as weights/calibration.json, which
``Run.predict`` and ``cnnlab predict`` apply. Selective prediction: the accuracy when the
model may abstain on its least confident images.

A network with a handful of mistakes among a few hundred images (LeNet-5 on the 8x8 digits:
9 of 360) leaves calibration nothing a test can see: on the digits the ECE change was within
noise once the bootstrap had enough resamples. ``cnnlab run`` then calibrates the CNN tree's
base network on 8-kind shapes (2,000 test images, about 9% wrong: fitted on 1,000, scored on
the other 1,000), the same sub-run the tree grows from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis._subject import base_network, main_job_base, on_other_data
from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, pct, table

if TYPE_CHECKING:
    from cnnlab.run import Run

METRICS = {"ece": "ECE (15 equal-width bins)", "adaptive_ece": "adaptive ECE (15 equal-mass bins)",
           "nll": "negative log-likelihood", "brier": "Brier score"}


def calibration(run: Run, *, fit_fraction: float = 0.5, resamples: int = 2000, save: bool = True,
                dataset: str = "", image_size: int = 0, model: str = "",
                model_kwargs: dict | None = None, base_epochs: int = 0, recipe: dict | None = None,
                log: Log = print) -> dict:
    """Calibration of the evaluation probabilities, before and after temperature scaling.

    Args:
        fit_fraction: fraction of the evaluation images (a seeded sample) that fits the
            temperature; the others score it.
        resamples: bootstrap resamples of the confidence intervals.
        save: save the temperature as weights/calibration.json, for predict to apply, when it
            measurably improves the held-out images' ECE (its interval below 0); else not.
        dataset: calibrate a network trained with the run's recipe on this data instead of the
            run's own (e.g. shapes:kinds=8); its temperature is saved in that sub-run.
        image_size: that network's image side (0: the dataset's default).
        model: that network's model (empty: the run's).
        model_kwargs: that network's model arguments.
        base_epochs: its training epochs (0: the run's).
        recipe: its training settings changed from the run's, e.g. {batch_size: 128}.
    """
    import numpy as np

    from cnnlab.evaluate import calibration as C
    from cnnlab.evaluate.metrics import reliability

    run_dataset = run.config.dataset
    run = base_network(run, dataset, image_size, model, model_kwargs, base_epochs, recipe, log,
                       what="network")
    if not 0 < fit_fraction < 1 or resamples < 100:
        raise CnnlabError("calibration needs 0 < fit_fraction < 1 and resamples >= 100")
    probs, y, fit, score = _split(run, fit_fraction)
    n_fit = len(fit)
    temperature = C.fit_temperature(probs[fit], y[fit])
    before, after, ys = probs[score], C.apply_temperature(probs[score], temperature), y[score]
    table_rows = _metric_rows(before, after, ys, resamples)
    log(f"temperature {temperature:.3f}, fitted on {n_fit} evaluation images; on the other "
        f"{len(score)}: " + ", ".join(f"{k} {r['before']['estimate']:.4f} -> {r['after']['estimate']:.4f}"
                                       for k, r in table_rows.items()))
    change = _ece_change(before, after, ys, resamples)
    log(change["verdict"])
    saved = save and _save(run, temperature, n_fit, change, log)
    return {"temperature": temperature, "n_fit": n_fit, "n_score": len(score), "saved": saved,
            "not_saved": "" if saved else "no gain" if save else "asked",
            "dataset": run.config.dataset, "model": run.config.model, "run_dataset": run_dataset,
            "subrun": bool(dataset),
            "accuracy": float((probs.argmax(1) == y).mean()),
            "metrics": table_rows, "ece_change": change,
            "selective": C.selective(after, ys),
            "reliability": {"before": reliability(before, ys), "after": reliability(after, ys)},
            "arrays": {"coverage_accuracy": np.stack(C.risk_coverage(after, ys))}}


def _save(run: Run, temperature: float, n_fit: int, change: dict, log: Log) -> bool:
    """weights/calibration.json, which ``Run.predict`` and ``cnnlab predict`` apply, written only
    where the temperature measurably improves the held-out ECE; whether it was."""
    from cnnlab.io import atomic_write_json

    path = run.path / "weights" / "calibration.json"
    if change["ci"]["high"] >= 0:
        if path.is_file():  # an earlier fit's temperature: this measurement supersedes it
            path.unlink()
        log("the temperature is not saved (an earlier one is removed): it did not measurably improve "
            "the held-out images' ECE, so cnnlab predict gives the softmax as it comes")
        return False
    atomic_write_json(path, {
        "temperature": temperature, "fitted_on": n_fit, "method": "temperature scaling",
        "written_by": "cnnlab calibration"})
    return True


def _split(run: Run, fit_fraction: float):
    """(probabilities, labels, the images that fit the temperature, the images that score it),
    split by a seeded permutation of the evaluation images."""
    import numpy as np

    from cnnlab.run import load_npz

    pred = load_npz(run.path / "predictions.npz")
    if not pred:
        raise CnnlabError(f"{run.path} has no predictions.npz; train the run to the end first")
    probs, y = pred["probs"].astype(np.float64), pred["y"]
    order = np.random.default_rng(run.config.val_seed + 7).permutation(len(y))
    n_fit = int(round(fit_fraction * len(y)))
    if min(n_fit, len(y) - n_fit) < 20:
        enough = int(np.ceil(20 / min(fit_fraction, 1 - fit_fraction)))
        raise CnnlabError(f"calibration needs at least 20 images on each side of the split; "
                          f"the evaluation set has {len(y)}: train the run with more held out "
                          f"(--val-split {enough} or more) or on data with a larger test split")
    return probs, y, order[:n_fit], order[n_fit:]


def _metric_rows(before, after, y, resamples: int) -> dict:
    import numpy as np

    from cnnlab.evaluate import calibration as C
    from cnnlab.evaluate.stats import bootstrap_ci

    fns = {"ece": C.ece, "adaptive_ece": lambda p, t: C.ece(p, t, adaptive=True), "nll": C.nll,
           "brier": C.brier}
    idx = np.arange(len(y))
    return {k: {side: bootstrap_ci(idx, lambda i, p=p, f=f: f(p[i], y[i]), resamples).to_dict()
                for side, p in (("before", before), ("after", after))} for k, f in fns.items()}


def _ece_change(before, after, y, resamples: int) -> dict:
    """Paired bootstrap CI of ECE after minus before, on the same resampled images."""
    import numpy as np

    from cnnlab.evaluate import calibration as C
    from cnnlab.evaluate.stats import bootstrap_ci, significant

    ci = bootstrap_ci(np.arange(len(y)), lambda i: C.ece(after[i], y[i]) - C.ece(before[i], y[i]),
                      resamples)
    words = f"{ci.estimate:+.4f} (95% CI {ci.low:+.4f} to {ci.high:+.4f})"
    verdict = (f"temperature scaling changes ECE by {words}: "
               + ("no significant difference" if not significant(ci) else
                  "better calibrated" if ci.estimate < 0 else "worse calibrated"))
    return {"ci": ci.to_dict(), "verdict": verdict}


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res = ctx.result
    rows = [[name, _ci(res["metrics"][k]["before"]), _ci(res["metrics"][k]["after"])]
            for k, name in METRICS.items()]
    effect = "softens an over-confident" if res["temperature"] > 1 else "sharpens an under-confident"
    body = ""
    if on_other_data(res):
        m = ctx.run.metrics
        own = (f" This run's own network: ECE {m['ece']:.3f} on its {m['n']:,} evaluation images "
               f"({pct(m['accuracy'])} right)." if "ece" in m else "")
        body += para(f"Calibrated on {esc(res['dataset'])}: the {esc(res['model'])} the CNN tree "
                     f"grows from ({pct(res['accuracy'])} right), not this run's "
                     f"{esc(res['run_dataset'])} network. cnnlab run does so when the run's own "
                     "network makes too few mistakes for a test to see its calibration change "
                     f"(on the 8x8 digits, 9 wrong of 360).{own}", note=True)
    body += para(f"Temperature scaling (Guo et al. 2017): T = {res['temperature']:.3f} ({effect} "
                f"model), fitted on {res['n_fit']} evaluation images and scored on the other "
                f"{res['n_score']}, which never took part in the fit.")
    body += table(["on the scored images (lower is better)", "before (95% CI)", "after (95% CI)"], rows)
    body += para(res["ece_change"]["verdict"][0].upper() + res["ece_change"]["verdict"][1:] + ".")
    body += img(P.save(_reliability_figure(res["reliability"]), ctx.plots_dir, "calibration"),
                "reliability diagrams before and after temperature scaling", "760px")
    body += "<h3>Selective prediction: answer only when confident</h3>"
    body += table(["answers the most confident", "images answered", "accuracy", "confidence at least"],
                  [[f"{100 * r['coverage']:.0f}%", r["answered"], f"{100 * r['accuracy']:.1f}%",
                    f"{r['threshold']:.3f}"] for r in res["selective"]])
    if ctx.arrays:
        body += img(P.save(_coverage_figure(ctx.arrays["coverage_accuracy"]), ctx.plots_dir,
                           "selective"), "accuracy against coverage", "460px")
    if res["saved"] and on_other_data(res):
        body += para("The temperature is saved in that network's sub-run (weights/calibration.json); "
                     "this run's own predictions are left as they are.", note=True)
    elif res["saved"]:
        body += para("The temperature is saved as weights/calibration.json; `cnnlab predict` "
                     "and the Python API apply it.", note=True)
    elif res.get("not_saved") == "no gain":
        body += para("The temperature is not saved (an earlier one is removed): it did not measurably "
                     "improve the held-out images' ECE, so `cnnlab predict` gives the softmax as it "
                     "comes.", note=True)
    return body


def _ci(d: dict) -> str:
    return f"{d['estimate']:.4f} ({d['low']:.4f}-{d['high']:.4f})"


def _reliability_figure(rel: dict):
    import numpy as np

    from cnnlab.viz.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(8.6, 4.0), sharey=True)
    for ax, (side, r) in zip(axes, rel.items(), strict=True):
        edges = np.array(r["edges"])
        centers = (edges[:-1] + edges[1:]) / 2
        acc = [a if a is not None else 0 for a in r["accuracy"]]
        ax.bar(centers, acc, width=edges[1] - edges[0], edgecolor="black", alpha=0.7,
               label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="tab:red", label="perfect calibration")
        ax.set(xlabel="confidence (max probability)", xlim=(0, 1), ylim=(0, 1),
               title=f"{side} temperature scaling")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    return fig


def _coverage_figure(curve):
    from cnnlab.viz.plots import plt

    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    ax.plot(100 * curve[0], 100 * curve[1], color="tab:blue")
    ax.set(xlabel="coverage: images answered (%)", ylabel="accuracy on them (%)",
           title="Accuracy against coverage", xlim=(0, 100))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def claims(res: dict) -> list[Claim]:
    """Calibration: the ECE change of temperature scaling, with its bootstrap interval."""
    ci = res["ece_change"]["ci"]
    ece = res["metrics"]["ece"]
    holds = None if ci["low"] <= 0 <= ci["high"] else ci["high"] < 0
    where = f"on {res['dataset']} ({res['model']}): " if on_other_data(res) else ""
    return [Claim("Softmax outputs are not probabilities as they come; temperature scaling "
                  "calibrates them", f"{where}ECE {ece['before']['estimate']:.3f} -> "
                  f"{ece['after']['estimate']:.3f} (T = {res['temperature']:.2f}); "
                  f"{res['ece_change']['verdict']}", holds)]


ANALYSIS = register(Analysis(
    name="calibration", title="Calibration", compute=calibration, section=section, order=70,
    verb=("calibrate",), quick=lambda run: main_job_base(run, full=False),
    full=lambda run: main_job_base(run, full=True),
    claims=claims,
    bounds={"fit_fraction": (0.05, 0.95), "resamples": (100, 100_000), "image_size": (0, 4096),
            "base_epochs": (0, 10_000)},
))
