"""The core report sections of every run, in model-card order.

10 run and environment, 20 data card, 30 training curves, 40 accuracy and per-class metrics,
50 confusion matrix and most-confused pairs, 60 misclassified examples, 70 calibration,
990 limitations. Analyses slot in between by their ``order``: the CNN tree 55, MLP versus
CNN 80, the permutation test 82, filters 84, robustness 86, ... (each module's ``order``);
the calibration analysis, where it ran, replaces section 70.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.evaluate.metrics import reliability
from cnnlab.evaluate.stats import proportion_ci
from cnnlab.run import Run, load_npz
from cnnlab.viz import plots as P
from cnnlab.viz.html import Section, esc, img, kpis, para, pct, pct_ci, table


@dataclass
class ReportContext:
    run: Run
    plots_dir: Path
    metrics: dict
    history: list[dict]


SectionFn = Callable[[ReportContext], Section | None]
CORE_SECTIONS: list[tuple[int, str, SectionFn]] = []


def section(order: int, name: str) -> Callable[[SectionFn], SectionFn]:
    """Register a core section at ``order`` in the report."""

    def decorator(fn: SectionFn) -> SectionFn:
        CORE_SECTIONS.append((order, name, fn))
        return fn

    return decorator


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _number(v: str | None) -> float | str | None:
    """A results.csv cell: a number, None where empty, or the text (e.g. the energy method)."""
    if v in ("", None):
        return None
    try:
        return float(v)
    except ValueError:
        return v


def accuracy_interval(m: dict) -> dict:
    return proportion_ci(round(m["accuracy"] * m["n"]), m["n"]).to_dict()


@section(10, "run")
def run_section(ctx: ReportContext) -> Section:
    m, cfg = ctx.metrics, ctx.run.config
    env = m.get("environment", {})
    score = (("accuracy", pct(m["accuracy"])) if "accuracy" in m
             else (m["score_name"], "n/a" if m["score"] is None else f"{m['score']:.3f}"))
    head = kpis([score, ("parameters", f"{m['params']:,}"),
                  ("MACs per image", f"{m['macs']:,}"), ("training time", f"{m['train_time_s']:.1f} s"),
                  ("images / s (train)", f"{m['train_images_per_s']:,.0f}"),
                  ("computed in", m.get("precision", "fp32"))])
    keys = ["dataset", "task", "model", "model_kwargs", "epochs", "batch_size", "optimizer", "lr",
            "weight_decay", "schedule", "warmup_epochs", "label_smoothing", "ema", "tta",
            "crop_padding", "flip", "cutout", "val_split", "val_seed", "seed", "threads",
            "precision"]
    defaults = type(cfg)().to_dict()  # and every other setting the run changed
    keys += [k for k, v in cfg.to_dict().items() if k not in keys and v != defaults[k]
             and k not in ("name", "out_dir", "data_dir")]
    shown = {k: getattr(cfg, k) for k in keys}
    if cfg.flip and ctx.run.meta.get("flip_ok") is False:  # asked for, refused by the data
        shown["flip"] = "True, not applied: this dataset's images must not be mirrored"
    conf = table(["setting", "value"], [[k, v] for k, v in shown.items()])
    envt = table(["", ""], [[k, v] for k, v in env.items() if v is not None])
    body = (head + '<div class="cols"><div><h3>Configuration</h3>' + conf +
            '<p class="note">Full config: config.yaml in the run folder.</p></div>'
            '<div><h3>Environment</h3>' + envt + "</div></div>")
    return Section("Run and environment", body)


@section(20, "data")
def data_section(ctx: ReportContext) -> Section:
    meta, ex, m = ctx.run.meta, load_npz(ctx.run.path / "examples.npz"), ctx.metrics
    classes = meta["classes"]
    c, h, w = meta["input_shape"]
    rows = [["source", meta.get("dataset_source", "")], ["image shape (C, H, W)", f"{c} x {h} x {w}"],
            ["classes", len(classes)], ["training images", f"{m['n_train']:,}"],
            [f"evaluation images ({m['split']} split)", f"{m['n']:,}"],
            ["normalization mean", ", ".join(f"{v:.3f}" for v in meta["normalization"]["mean"])],
            ["normalization std", ", ".join(f"{v:.3f}" for v in meta["normalization"]["std"])]]
    prov = ctx.run.path / "provenance.json"
    if prov.is_file():  # written when the run trained (data/provenance.py)
        p = json.loads(prov.read_text())
        rows += [["origin", p["source"]], ["licence", p["licence"]],
                 ["training data sha256", p["train"]["sha256"][:16] + "..."],
                 ["evaluation data sha256", p["eval"]["sha256"][:16] + "..."]]
    counts = [[r["class"], r["support"]] for r in m["per_class"]]
    body = table(["", ""], rows)
    if m["split"] == "val":
        body += ('<p class="note">The evaluation split is held out from the training images, '
                 f"seeded by val_seed ({ctx.run.config.val_seed}), not by the training seed; no "
                 "test split was used.</p>")
    if ex:
        uri = P.save(P.image_grid(ex["samples"], ex["sample_labels"], classes), ctx.plots_dir,
                     "samples")
        body += "<h3>Sample training images</h3>" + img(uri, "sample images per class", "560px")
    body += small_data_checks(m, classes, ctx.run.config, _leakage(ctx.run))
    if len(classes) <= 20:
        body += f"<h3>Evaluation images per class</h3>{table(['class', 'images'], counts)}"
    return Section("Data card", body)


SMALL_CLASS = 20
"""A class with fewer training images than this is flagged in the data card."""


def _leakage(run) -> dict | None:
    """The provenance audit's near-copies across the splits, where it ran on this run."""
    from cnnlab.analysis.registry import load_results

    stored, _ = load_results(run.path, "provenance")
    return stored[0].result.get("leakage") if stored else None


def small_data_checks(metrics: dict, classes: list[str], cfg, leakage: dict | None = None) -> str:
    """What a small or skewed training set risks: thin classes, imbalance, and near-copies
    across the splits (the provenance audit's count, or where to get it; runs trained before
    these counts were kept: none)."""
    counts = metrics.get("train_per_class")
    if not counts or len(counts) != len(classes):
        return ""
    thin = [f"{classes[k]} ({n})" for k, n in enumerate(counts) if n < SMALL_CLASS]
    ratio = max(counts) / max(min(counts), 1)
    rows = [[f"classes with fewer than {SMALL_CLASS} training images",
             ", ".join(thin) if thin else "none"],
            ["imbalance (largest / smallest class)",
             f"{ratio:.1f}x ({max(counts):,} / {min(counts):,} images)"],
            ["near-copies across the splits",
             f"{leakage['exact']} exact and {leakage['near']} near copies of training images among "
             f"the {leakage['n_eval']} evaluation images (pHash; the provenance section)" if leakage
             else "not audited: cnnlab audit provenance RUN (pHash)"]]
    words = []
    if thin:
        words.append("Thin classes make per-class accuracy noisy and a model from scratch weak: "
                     "start from trained weights (--init-from RUN, --pretrained FILE; "
                     "cnnlab experiment transfer measures the gain).")
    if ratio >= 3:
        words.append("A skewed training set pulls predictions toward its big classes: the "
                     "per-class table and the bias section show which classes pay.")
    if not cfg.init_from and not cfg.pretrained and sum(counts) < 1000:
        words.append(f"{sum(counts):,} training images in all: few for a CNN from scratch.")
    return ("<h3>Small-data checks</h3>" + table(["check", "this run"], rows)
            + (para(" ".join(words), note=True) if words else ""))


@section(30, "training")
def training_section(ctx: ReportContext) -> Section | None:
    if not ctx.history:
        return None
    held = "test" if ctx.metrics.get("split") == "test" else "validation"
    uri = P.save(P.training_curves(ctx.history, held), ctx.plots_dir, "training_curves")
    note = ('<p class="note">Training accuracy is measured on augmented batches while the '
            f"weights change, so it can sit below {held} accuracy.</p>"
            if "accuracy" in ctx.metrics else "")
    dp = ctx.metrics.get("dp")
    if dp:
        per_epoch = ", ".join(f"{e:.2f}" for e in dp["epsilon_per_epoch"])
        note += (f"<p>Trained with differential privacy (DP-SGD, Opacus): epsilon spent "
                 f"<b>{dp['epsilon_spent']:.2f}</b> of {dp['epsilon_target']:g} at delta "
                 f"{dp['delta']:g}, each image's gradient clipped to {dp['clip']:g} "
                 f"({esc(dp['accountant'])} accountant). After each epoch: {per_epoch}.</p>")
    return Section("Training curves", img(uri, "training curves") + note)


@section(40, "metrics")
def metrics_section(ctx: ReportContext) -> Section:
    m = ctx.metrics
    head = kpis([("accuracy", pct(m["accuracy"])), ("top-5 accuracy", pct(m["top5_accuracy"])),
                  ("macro F1", f"{m['macro_f1']:.3f}"), ("ECE", f"{m['ece']:.3f}"),
                  ("loss", f"{m['loss']:.4f}" if m["loss"] is not None else "n/a")])
    rows = [[r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
             r["support"]] for r in m["per_class"]]
    best = (f'<p class="note">Reported: the weights after the last epoch ({m["epochs"]}). '
            f"The best accuracy on these {esc(m['split'])} images during training was "
            f"{pct(m['best_val_acc'])} at epoch "
            f"{m['best_epoch']}; picking that epoch would use the evaluation set for selection, "
            "so it is not the headline.</p>")
    ci = (f"<p>Accuracy {esc(pct_ci(accuracy_interval(m)))} on {m['n']:,} {esc(m['split'])} "
          "images (Wilson interval).</p>") + barely_learnt(m["accuracy"], len(m["per_class"]),
                                                           ctx.run.config.model)
    return Section("Accuracy and per-class metrics", head + ci + best +
                   table(["class", "precision", "recall", "F1", "support"], rows))


def barely_learnt(accuracy: float, n_classes: int, model: str) -> str:
    """A note when the network is less than halfway from chance to every image right (LeNet-5
    on the shapes: 36% with 4 classes): every analysis of the run then describes a network
    that has barely learnt, and the report should say so before its readers draw lessons."""
    chance = 1 / max(n_classes, 1)
    if accuracy >= chance + (1 - chance) / 2:
        return ""
    return para(f"This {esc(model)} is at {pct(accuracy)} where guessing gets {pct(chance)}: less than "
                "halfway from chance to every image right. The analyses below describe a network "
                "that has barely learnt; train longer or a stronger model (e.g. --model resnet20) "
                "before drawing lessons from them.", note=True)


@section(50, "confusion")
def confusion_section(ctx: ReportContext) -> Section:
    m, classes = ctx.metrics, ctx.run.meta["classes"]
    cm = np.array(m["confusion_matrix"])
    uri = P.save(P.confusion(cm, classes), ctx.plots_dir, "confusion_matrix")
    pairs = [[p["a"], p["b"], p["a_as_b"], p["b_as_a"], p["total"]] for p in m["most_confused"]]
    body = img(uri, "confusion matrix", "760px")
    body += "<h3>Most-confused pairs</h3>"
    body += table(["class A", "class B", "A predicted as B", "B predicted as A", "total"], pairs) \
        if pairs else "<p>No confusions.</p>"
    return Section("Confusion matrix", body)


@section(60, "misclassified")
def misclassified_section(ctx: ReportContext) -> Section | None:
    ex = load_npz(ctx.run.path / "examples.npz")
    if not ex or len(ex["wrong"]) == 0:
        return None
    fig = P.misclassified(ex["wrong"], ex["wrong_labels"], ex["wrong_probs"], ctx.run.meta["classes"])
    uri = P.save(fig, ctx.plots_dir, "misclassified")
    note = ('<p class="note">The most confidently wrong evaluation images: true class above '
            "(green), the model's top-3 probabilities below (red).</p>")
    return Section("Misclassified examples", note + img(uri, "misclassified images"))


@section(70, "calibration")
def calibration_section(ctx: ReportContext) -> Section | None:
    pred = load_npz(ctx.run.path / "predictions.npz")
    analysis = ctx.run.path / "analysis"
    if not pred or any(analysis.glob("calibration.json")) or any(analysis.glob("calibration-*.json")):
        return None  # the calibration analysis, with temperature scaling, replaces this one
    rel = reliability(pred["probs"], pred["y"])
    uri = P.save(P.reliability(rel), ctx.plots_dir, "reliability")
    note = (f"<p>Expected calibration error (15 equal-width bins, Guo et al. 2017): "
            f"<b>{ctx.metrics['ece']:.3f}</b>. Bars below the diagonal mean over-confidence.</p>")
    return Section("Calibration", note + img(uri, "reliability diagram", "420px"))


@section(990, "limitations")
def limitations_section(ctx: ReportContext) -> Section:
    m = ctx.metrics
    ci = accuracy_interval(m)
    items = [
        f"Accuracy is measured on {m['n']:,} images of the {m['split']} split; with that many "
        f"images its 95% interval is {100 * ci['low']:.2f}-{100 * ci['high']:.2f}%: another run "
        "scoring inside it is not measurably better or worse (compare two runs on the same "
        "images with McNemar's test, as the MLP-versus-CNN section does).",
        "One training run with one seed: seed-to-seed variation of this model is not shown here "
        "(the permutation and spurious-correlation experiments repeat over seeds).",
        "The evaluation images come from the same source as the training images; accuracy on "
        "images from elsewhere (other cameras, writers, lighting) is likely lower.",
        "High accuracy says nothing about robustness to adversarial or corrupted inputs, or about "
        "performance on sub-groups: the robustness, bias and spurious-correlation sections "
        "measure those, where this report has them.",
        "Where the run's own data cannot show a claim, its section says which data it used "
        "instead (cnnlab run on the digits: shapes for the permutation test, the CNN tree and "
        "calibration; procedural scenes and clips for detection, segmentation, pose and video).",
    ]
    if m["ece"] > 0.05:
        items.append(f"The probabilities are not well calibrated (ECE {m['ece']:.3f}); do not read "
                     "them as the chance of being right.")
    return Section("Limitations", "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")
