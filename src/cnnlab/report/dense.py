"""The report of a detection, segmentation or pose run: the run, its training, the task's
numbers and pictures (mAP table and precision-recall curves, IoU table and overlays, PCK and
keypoint AP with overlays), files left out as malformed, and limitations."""

from __future__ import annotations

import json

from cnnlab.io import load_npz
from cnnlab.report.core import ReportContext, run_section, training_section
from cnnlab.viz import dense as D
from cnnlab.viz import plots as P
from cnnlab.viz.html import Section, esc, img, kpis, table


def _f3(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _interval(m: dict, over: str) -> list[tuple[str, str]]:
    """The score's 95% bootstrap interval as a figure of its own, where the run has one (runs
    trained before it was kept have none)."""
    ci = m.get("score_ci")
    return [] if not ci else [(f"95% CI over {over}", f"{ci['low']:.3f}-{ci['high']:.3f}")]


def detection_section(ctx: ReportContext) -> Section | None:
    m, classes = ctx.metrics, ctx.run.meta["classes"]
    head = kpis([("mAP@0.5:0.95", _f3(m["map"])), *_interval(m, "images"), ("mAP@0.5", _f3(m["map_50"])),
                 ("mAP@0.75", _f3(m["map_75"])), ("evaluation images", f"{m.get('n', 0):,}")])
    rows = [[c, _f3(ap)] for c, ap in m["per_class"].items()]
    body = head + table(["class", "AP@0.5:0.95"], rows)
    body += ('<p class="note">COCO evaluation (torchmetrics MeanAveragePrecision, faster-coco-eval '
             "backend): AP averaged over IoU thresholds 0.50 to 0.95, up to 100 detections per "
             "image.</p>")
    ex = load_npz(ctx.run.path / "detect_examples.npz")
    if ex and len(ex["pr_classes"]):
        curves = {str(c): (ex["pr_recall"], p) for c, p in zip(ex["pr_classes"], ex["pr_precision"],
                                                               strict=True)}
        uri = P.save(D.pr_curves(curves), ctx.plots_dir, "pr_curves")  # legend: AP at IoU 0.5
        body += "<h3>Precision against recall at IoU 0.5</h3>" + img(uri, "precision-recall curves", "560px")
    if ex:
        preds, trues = D.per_image(ex, "pred", len(ex["x"])), D.per_image(ex, "true", len(ex["x"]))
        uri = P.save(D.detection_gallery(ex["x"], preds, trues, classes), ctx.plots_dir, "detections")
        body += "<h3>Predictions beside the ground truth</h3>" + img(uri, "detection gallery")
    return Section("Object detection", body)


def segmentation_section(ctx: ReportContext) -> Section | None:
    m, classes = ctx.metrics, ctx.run.meta["classes"]
    head = kpis([("mIoU", _f3(m["miou"])), *_interval(m, "images"),
                 ("pixel accuracy", _f3(m["pixel_accuracy"]))])
    rows = [[c, _f3(v)] for c, v in m["per_class"].items()]
    body = head + table(["class", "IoU"], rows)
    body += ('<p class="note">IoU per class from pixel counts pooled over every evaluation image '
             "(torchmetrics); mIoU averages the classes, background included.</p>")
    seg = load_npz(ctx.run.path / "segmentation.npz")
    if seg:
        uri = P.save(D.segmentation_overlays(seg["x"], seg["pred"], seg["true"], classes), ctx.plots_dir,
                     "segmentation")
        body += "<h3>Image, ground truth and prediction</h3>" + img(uri, "segmentation overlays", "720px")
    return Section("Segmentation (scene labeling)", body)


def pose_section(ctx: ReportContext) -> Section | None:
    m, classes = ctx.metrics, ctx.run.meta["classes"]
    head = kpis([("PCK@0.1", _f3(m["pck"])), *_interval(m, "objects"),
                 ("keypoint AP (OKS)", _f3(m.get("ap"))),
                 ("AP@OKS 0.5", _f3(m.get("ap50"))), ("objects", f"{m.get('n_objects', 0):,}")])
    body = head + (f'<p class="note">Top-down: keypoints predicted on crops of ground-truth boxes '
                   f"({esc(m.get('method', ''))}). PCK@0.1 counts a keypoint correct within 0.1 x the "
                   "longer side of its object's box; keypoint AP is COCO's OKS-based evaluation "
                   "(faster-coco-eval) with one sigma for every keypoint.</p>")
    kp = load_npz(ctx.run.path / "keypoints.npz")
    if kp:
        size = kp["x"].shape[-1]
        uri = P.save(D.keypoint_overlays(kp["x"], kp["pred"] * size, kp["true"] * [size, size, 1],
                                         kp["labels"], classes), ctx.plots_dir, "keypoints")
        body += "<h3>Predicted (dots) and true (rings) keypoints</h3>" + img(uri, "keypoint overlays")
    return Section("Pose (keypoints)", body)


def skipped_section(ctx: ReportContext) -> Section | None:
    path = ctx.run.path / "skipped.json"
    if not path.is_file():
        return None
    rows = [[s["file"], s["reason"]] for s in json.loads(path.read_text())]
    return Section("Images left out (--skip-bad)", f"<p>{len(rows)} annotated images were malformed "
                   "and left out of training and evaluation:</p>" + table(["file", "reason"], rows))


def dense_limitations(ctx: ReportContext) -> Section:
    m = ctx.metrics
    what = "objects (crops of their true boxes)" if "n_objects" in m else "images"
    items = [f"Scored on {m.get('n', 0):,} {what} of the {m.get('split', '')} split, from the same "
             "source as the training images; one seed.",
             "No augmentation is applied to dense tasks: flips would also have to move boxes, masks and "
             "the order of keypoints.",
             ]
    if ctx.run.config.dataset.partition(":")[0] == "scenes":  # users' own data is not drawn
        items.append("Scenes are procedural: flat shapes on textures. Numbers on them show the method "
                     "works, not how it does on photographs.")
    return Section("Limitations", "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")


TASK_SECTIONS = {"detect": detection_section, "segment": segmentation_section, "pose": pose_section}


def dense_sections(task: str) -> list:
    """The report's sections, in order, for a run of ``task``."""
    return [run_section, training_section, TASK_SECTIONS[task], skipped_section, dense_limitations]
