"""Beyond classification: detection, segmentation and pose on ``scenes``, in one section.

The same backbone (a CIFAR ResNet) with three kinds of head, each trained by the one trainer
as a sub-run on procedural scenes with exact ground truth: a single-shot detector (every box
and label in one pass, as YOLO and SSD), a U-Net that labels every pixel (scene labeling),
and top-down pose (keypoints on each object's crop) by direct regression (DeepPose) and by
heatmaps, compared on the same objects (a paired bootstrap of per-object PCK: an object's
keypoints are not independent). Pose is then scored on the detector's boxes too, so the error
of the whole system shows beside that of pose alone.
The digits of the main run carry no boxes, hence scenes; the quick budget trains small
networks for a few epochs (numbers far from the full recipe's, in benchmarks/RESULTS.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run

TASKS = (("detect", "detect", "centernet"), ("segment", "segment", "unet"),
         ("pose-regression", "pose", "regression"), ("pose-heatmap", "pose", "heatmap"))


def scenes(run: Run, *, n_train: int = 2000, epochs: int = 12, width: int = 16, image_size: int = 64,
           batch_size: int = 32, objects: int = 4, lr: float = 0.003, share_backbone: bool = False,
           head_epochs: int = 0, recipes: dict | None = None, reference: bool = True,
           resamples: int = 1000, log: Log = print) -> dict:
    """Train a detector, a segmenter and two pose models on scenes; score each, compare the pose heads.

    Args:
        n_train: training scenes (the test split has a quarter as many, at least 100).
        epochs: epochs of every task (of the detectors, with head_epochs).
        width: the ResNet-20 backbone's first-stage width (16 is the standard ResNet-20).
        image_size: scene side in pixels, 32 to 512 (smaller is quicker).
        batch_size: images (pose: crops) per step.
        objects: the most objects in one scene (1 to 8).
        lr: AdamW's peak learning rate for every task.
        share_backbone: train the detector first, then start the segmenter's and the pose
            heads' backbones from its trained one (one backbone, several heads).
        head_epochs: epochs of the segmenter and pose heads (0: epochs).
        recipes: settings to change for one task, by its label, e.g. {segment: {batch_size: 8}}.
        reference: also train torchvision's FCOS on the same backbone, data and epochs.
        resamples: bootstrap resamples of the detector's mAP interval (each a whole COCO
            evaluation; the segmenter's, a matrix product, always draws 2,000).
    """
    if n_train < 10 or epochs < 1 or width < 4 or image_size < 32:
        raise CnnlabError("scenes needs n_train >= 10, epochs >= 1, width >= 4 and image_size >= 32")
    base = scenes_config(run, n_train, epochs, width, image_size, batch_size, objects, lr)
    tasks = TASKS + ((("detect-fcos", "detect", "fcos"),) if reference else ())
    recipes = recipes or {}
    _check_recipes(base, tasks, recipes)
    subs: dict[str, Run] = {}
    for label, task, head in tasks:
        cfg = base.derive(task=task, head=head)
        if head_epochs and task != "detect":
            cfg = cfg.derive(epochs=head_epochs, eval_every=head_epochs)
        if share_backbone and task != "detect":
            cfg = cfg.derive(init_from=str(subs["detect"].path))
        subs[label] = run.subrun(cfg.derive(**recipes.get(label, {})), label, log)
    rows = [_row(label, sub, resamples) for label, sub in subs.items()]
    pose = _compare_pose(subs["pose-regression"], subs["pose-heatmap"])
    system = _pose_on_detections(subs, subs["detect"])
    for line in [f"{r['task']}: {r['score_name']} {r['score']:.3f}" for r in rows] + [pose["words"]]:
        log(line)
    return {"rows": rows, "pose": pose, "system": system, "dataset": base.dataset,
            "epochs": epochs, "width": width, "image_size": image_size,
            "shared_backbone": share_backbone, "head_epochs": head_epochs or epochs,
            "subruns": {label: str(sub.path.relative_to(run.path)) for label, sub in subs.items()}}


def _check_recipes(base, tasks, recipes: dict) -> None:
    """Every task's recipe, checked before the first training (a bad one for the last task
    used to stop the analysis after the others had trained)."""
    import dataclasses

    unknown = set(recipes) - {label for label, _, _ in tasks}
    if unknown:
        raise CnnlabError(f"scenes --recipes: no task {', '.join(sorted(unknown))}; the tasks are "
                          f"{', '.join(label for label, _, _ in tasks)}")
    fields = {f.name for f in dataclasses.fields(base)}
    for label, task, head in tasks:
        unknown = set(recipes.get(label, {})) - fields
        if unknown:
            raise CnnlabError(f"scenes --recipes {label}: no setting {', '.join(sorted(unknown))}; give "
                              "cnnlab train's settings, e.g. {segment: {batch_size: 8}}")
        base.derive(task=task, head=head, **recipes.get(label, {}))  # bad values: one line, now


def scenes_config(run: Run, n_train: int, epochs: int, width: int, image_size: int = 64,
                  batch_size: int = 32, objects: int = 4, lr: float = 0.003) -> TrainConfig:
    """The recipe of every sub-run on scenes (a detector trained with it is shared by the video
    analysis: same config, same sub-run)."""
    data = f"scenes:n={n_train}" + (f",objects={objects}" if objects != 4 else "")
    return TrainConfig(task="detect", dataset=data, image_size=image_size,
                       model="resnet20", model_kwargs={"width": width}, epochs=epochs, batch_size=batch_size,
                       optimizer="adamw", lr=lr, weight_decay=5e-4, seed=run.config.seed,
                       threads=run.config.threads, precision=run.config.precision,
                       data_dir=run.config.data_dir, eval_every=epochs)  # scored once, at the end


def _row(label: str, sub: Run, resamples: int) -> dict:
    """A sub-run's scores; the detector's mAP and the segmenter's mIoU with bootstrap intervals
    over the evaluation scenes."""
    m = sub.metrics
    row = {"task": label, "score_name": m["score_name"], "score": m["score"], "params": m["params"],
           "train_time_s": m["train_time_s"], "train_images_per_s": m["train_images_per_s"],
           "n": m["n"]} | {k: m[k] for k in ("map_50", "pixel_accuracy", "ap", "ap50") if k in m}
    if label in ("segment", "detect"):  # mIoU's resamples are one matrix product: always 2,000
        from cnnlab.tasks.runs import SCORE_RESAMPLES

        n = 2000 if label == "segment" else resamples
        # the sub-run's own interval where it drew as many (the same predictions, the same seed)
        same = n == SCORE_RESAMPLES[label] and "score_ci" in m
        row["score_ci"] = m["score_ci"] if same else _score_ci(sub, n)
    return row


def _score_ci(sub: Run, resamples: int) -> dict:
    """The detector's mAP or the segmenter's mIoU with its bootstrap interval over the
    evaluation scenes, predicted on the device and in the precision the score was computed
    with, so that the interval's estimate is that score."""
    from cnnlab.evaluate.predict import use_bf16
    from cnnlab.tasks.detect import detect_images
    from cnnlab.tasks.runs import score_interval
    from cnnlab.tasks.segment import segment_images
    from cnnlab.training.trainer import resolve_device

    task, ds = sub.config.task, sub.data().eval
    device = resolve_device(sub.config.device)
    predict = detect_images if task == "detect" else segment_images
    found = predict(sub.load_model(device=str(device)), ds.x, device, use_bf16(sub.config, device))
    return score_interval(task, found, ds, resamples, sub.config.seed)


def _hits(sub: Run):
    """Per evaluation crop (one object) and keypoint: (correct at PCK@0.1 in image pixels,
    labelled), both (M, K)."""
    import torch

    from cnnlab.io import load_npz
    from cnnlab.tasks.pose import crop_hits

    kp = load_npz(sub.path / "keypoints.npz")
    correct, labelled = crop_hits(torch.from_numpy(kp["pred"]), sub.data().eval)
    return correct.numpy(), labelled.numpy()


def compare_pose(a: tuple, b: tuple) -> dict:
    """PCK@0.1 of two heads (``(correct, labelled)`` per object and keypoint) on the same
    objects. Keypoints of one object are not independent (one bad crop moves them all), so the
    unit of the test is the object: a paired bootstrap interval of the per-object PCK
    difference, b minus a."""
    from cnnlab.evaluate.pose import pck_ci
    from cnnlab.evaluate.stats import bootstrap_ci

    (ca, la), (cb, lb) = a, b
    keep = la.sum(1) > 0
    per_a = (ca & la).sum(1)[keep] / la.sum(1)[keep]
    per_b = (cb & lb).sum(1)[keep] / lb.sum(1)[keep]
    diff = bootstrap_ci(per_b - per_a)
    # each head's PCK over keypoints, its interval drawn over objects (their keypoints move together)
    ci = {k: pck_ci(c, lab) for k, (c, lab) in (("regression", a), ("heatmap", b))}
    return {"pck_ci": ci, "per_object": diff.to_dict(), "objects": int(keep.sum()),
            "keypoints": int(la.sum()), "significant": bool(diff.low > 0 or diff.high < 0),
            "mean_a": float(per_a.mean()), "mean_b": float(per_b.mean())}


def _compare_pose(regression: Run, heatmap: Run) -> dict:
    """PCK@0.1 of both heads with intervals over objects; the difference tested per object."""
    out = compare_pose(_hits(regression), _hits(heatmap))
    d, n = out["per_object"], out["objects"]
    interval = (f"per-object PCK, heatmaps minus regression, {100 * d['estimate']:+.1f} points, 95% "
                f"CI {100 * d['low']:+.1f} to {100 * d['high']:+.1f}, paired bootstrap over {n:,} "
                "objects")
    if not out["significant"]:
        words = f"Pose: regression and heatmaps, no significant difference in PCK@0.1 ({interval})."
    else:
        better = "heatmaps" if d["estimate"] > 0 else "direct regression"
        words = (f"Pose: more keypoints within 0.1 box of the truth with {better} "
                 f"(per object, on average {100 * out['mean_b']:.1f}% with heatmaps against "
                 f"{100 * out['mean_a']:.1f}% with regression; {interval}).")
    return out | {"words": words}


def _pose_on_detections(subs: dict, detect: Run) -> dict:
    """Keypoint AP of each pose head on ground-truth boxes and on the detector's boxes."""
    from cnnlab.data import data_for
    from cnnlab.tasks.pose import topdown_on_detections

    raw = data_for(detect.config).eval
    detector = detect.load_model()
    out = {}
    for label in ("pose-regression", "pose-heatmap"):
        sub = subs[label]
        found = topdown_on_detections(sub.load_model(), detector, raw, sub.meta["crop_size"])
        out[label] = {"gt_boxes": {"ap": sub.metrics.get("ap"), "ap50": sub.metrics.get("ap50")},
                      "detected_boxes": found}
    return out


def _f3(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def section(ctx: SectionContext) -> str:
    res = ctx.result
    if res.get("shared_backbone"):
        trained = (f"The detector trained {res['epochs']} epochs; its backbone then started the "
                   f"segmenter and both pose heads, each fine-tuned for {res['head_epochs']} epochs "
                   "(the segmenter's own setting, if any, in the note below)")
    else:
        trained = (f"The detector trained {res['epochs']} epochs, the other heads "
                   f"{res['head_epochs']}, each from scratch")
    body = para(f"One backbone (ResNet-20, first-stage width {res['width']}), four heads, by the same "
                f"trainer on {res['dataset']} ({res['image_size']} px scenes of circles, squares, "
                f"triangles and stars with exact boxes, masks and keypoints). {trained}. The full "
                "recipe's numbers (2,000 scenes of up to 4 objects at 64 px, every head from scratch) "
                "are in benchmarks/RESULTS.md.")
    pck = res["pose"].get("pck_ci", {})  # the pose heads' intervals, by head ("heatmap", "regression")
    cis = {r["task"]: r.get("score_ci") for r in res["rows"]}
    for head, ci in pck.items():
        cis[f"pose-{head}"] = cis.get(f"pose-{head}") or ci
    body += table(["task", "score", "value", "95% CI", "useful from", "parameters", "training time (s)",
                   "train images / s"],
                  [[r["task"], r["score_name"], _f3(r["score"]),
                    f"{cis[r['task']]['low']:.3f}-{cis[r['task']]['high']:.3f}" if cis[r["task"]] else "",
                    f"{USEFUL[r['task']]:g}" if r["task"] in USEFUL else "", f"{r['params']:,}",
                    f"{r['train_time_s']:.1f}", f"{r['train_images_per_s']:.0f}"] for r in res["rows"]])
    body += para("The intervals are bootstrap intervals over the evaluation scenes (detection, "
                 "segmentation) and over objects (pose: an object's keypoints move together); the "
                 "claims table counts a head as useful when its interval's lower end clears the bar.",
                 note=True)
    if any(r["task"] == "detect-fcos" for r in res["rows"]):
        body += para("detect-fcos is the reference: torchvision's FCOS on the same backbone, data and "
                      "epochs (one seed, so no verdict here; benchmarks/detect_reference.py compares two "
                      "seeds of each at equal training time).", note=True)
    pose = res["pose"]
    body += "<p>" + esc(pose["words"]) + "</p>"
    rows = [[label.replace("pose-", ""), _f3(v["gt_boxes"]["ap"]), _f3(v["detected_boxes"]["ap"]),
             _f3(v["detected_boxes"]["ap50"])] for label, v in res["system"].items()]
    body += "<h3>Pose alone and the whole system</h3>" + table(
        ["pose head", "keypoint AP, true boxes", "keypoint AP, detected boxes", "AP@OKS 0.5, detected"], rows)
    body += para("Keypoint AP is COCO's OKS-based evaluation. On true boxes it measures pose alone; "
                 "on the detector's boxes, missed and misplaced boxes cost keypoints too.", note=True)
    return body + _pictures(ctx)


def _pictures(ctx: SectionContext) -> str:
    """A few detections, class maps and keypoints from the sub-runs' own files."""
    from cnnlab.io import load_npz
    from cnnlab.viz import dense as D
    from cnnlab.viz import plots as P

    paths, classes, html = ctx.result["subruns"], None, ""
    ex = load_npz(ctx.run.path / paths["detect"] / "detect_examples.npz")
    if ex:
        from cnnlab.data.shapes import CLASSES

        classes = list(CLASSES)
        n = min(16, len(ex["x"]))
        fig = D.detection_gallery(ex["x"][:n], D.per_image(ex, "pred", n), D.per_image(ex, "true", n),
                                  classes, n=4)
        html += "<h3>Detections</h3>" + img(P.save(fig, ctx.plots_dir, "scenes_detect"), "detections")
    seg = load_npz(ctx.run.path / paths["segment"] / "segmentation.npz")
    if seg and classes:
        fig = D.segmentation_overlays(seg["x"], seg["pred"], seg["true"], classes, n=3)
        html += "<h3>Scene labeling</h3>" + img(P.save(fig, ctx.plots_dir, "scenes_segment"),
                                                 "segmentation", "640px")
    kp = load_npz(ctx.run.path / paths["pose-heatmap"] / "keypoints.npz")
    if kp and classes:
        s = kp["x"].shape[-1]
        fig = D.keypoint_overlays(kp["x"], kp["pred"] * s, kp["true"] * [s, s, 1], kp["labels"], classes,
                                  n=12)
        html += "<h3>Keypoints (heatmaps)</h3>" + img(P.save(fig, ctx.plots_dir, "scenes_pose"), "keypoints")
    return html


USEFUL = {"detect": 0.5, "segment": 0.7, "pose-heatmap": 0.9, "pose-regression": 0.6}
"""The score each head must reach for the claim to count as shown (the full budget reaches
0.75 / 0.89 / 0.97 / 0.85)."""


QUICK = {"n_train": 1000, "objects": 2, "image_size": 48, "epochs": 10, "width": 8, "lr": 0.01,
         "batch_size": 16, "share_backbone": True, "head_epochs": 3, "reference": False,
         "recipes": {"segment": {"batch_size": 16, "lr": 0.01, "epochs": 7, "eval_every": 7}},
         "resamples": 200}
"""``cnnlab run``'s budget: easier but honest scenes (at most 2 objects, 48 px), one detector
trained for 10 epochs, whose backbone then starts the segmenter (7 epochs) and both pose heads
(3 epochs). Measured on 2 cores (benchmarks/RESULTS.md): mAP@0.5:0.95 0.58, PCK@0.1 0.94 /
0.79, mIoU 0.70 (then 4 segmenter epochs), in about a minute; from scratch at the same budget the
segmenter reached mIoU 0.31 and regression PCK 0.60. Batches of 16 (2026-12-06): the detector
reached mAP 0.589 in bf16 and 0.618 in fp32 against 0.556 and 0.505 with 32, in about the same
time; the video analysis tracks with it. The segmenter's mIoU carries a bootstrap interval over scenes
and the claim needs its lower end above 0.7 (2026-12-07, 1 thread): 5 epochs 0.722 (95% CI
0.692-0.748), 6 epochs 0.744 (0.715-0.769), 7 epochs 0.782 (0.753-0.808), about 5 s per epoch.
The detector's mAP interval draws 200 resamples here, each a COCO evaluation of the 250 scenes
(about 0.04 s: 8 s in all; 2026-12-07, 1 thread)."""


def _ci_words(row: dict) -> str:
    ci = row.get("score_ci")
    return f" (95% CI {ci['low']:.3f}-{ci['high']:.3f})" if ci else ""


def claims(res: dict) -> list[Claim]:
    """Beyond classification: each head against a useful score; the pose heads per object."""
    rows = {r["task"]: dict(r) for r in res["rows"]}
    pck = res.get("pose", {}).get("pck_ci", {})  # the pose heads' PCK, intervals over objects
    for head in ("heatmap", "regression"):
        if f"pose-{head}" in rows and head in pck:
            rows[f"pose-{head}"].setdefault("score_ci", pck[head])
    said = ", ".join(f"{label} {r['score_name']} {r['score']:.3f}" + _ci_words(r)
                     + f" (useful: {USEFUL[label]:g})" for label, r in rows.items() if label in USEFUL)
    # a score with an interval counts when its lower end clears the bar, one without by itself
    low = {k: r.get("score_ci", {}).get("low", r["score"]) for k, r in rows.items()}
    high = {k: r.get("score_ci", {}).get("high", r["score"]) for k, r in rows.items()}
    useful = [k for k in USEFUL if k in rows]
    out = [Claim("One CNN backbone detects, segments and finds keypoints",
                 f"on {res['dataset']}: {said}",
                 True if all(low[k] >= USEFUL[k] for k in useful)
                 else False if any(high[k] < USEFUL[k] for k in useful) else None)]
    pose = res["pose"]
    if "per_object" in pose:
        holds = (pose["per_object"]["estimate"] > 0) if pose["significant"] else None
    else:  # a result written before the test was per object
        holds = None if pose["mcnemar"]["p_value"] >= 0.05 else (
            pose["pck_ci"]["heatmap"]["estimate"] > pose["pck_ci"]["regression"]["estimate"])
    out.append(Claim("Heatmaps locate keypoints better than regressing coordinates (DeepPose)",
                     pose["words"], holds))
    return out


ANALYSIS = register(Analysis(
    name="scenes", title="Beyond classification: detection, segmentation and pose", compute=scenes,
    section=section, order=89, verb=("scenes",),
    quick=QUICK, full={},
    claims=claims,
    bounds={"n_train": (10, 1e6),
            "epochs": (1, 10_000),
            "width": (4, 256),
            "image_size": (32, 512),
            "batch_size": (1, 4096),
            "objects": (1, 8),
            "lr": (1e-9, 10),
            "head_epochs": (0, 10_000),
            "resamples": (100, 100_000)},
    takes=("about 8 minutes on 2 CPU cores (five trainings of 2,000 scenes x 12 epochs; "
           "benchmarks/RESULTS.md); cnnlab run's quick budget takes about a minute"),
))
