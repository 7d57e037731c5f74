"""The run-folder files of a dense task (the classifier's are in cnnlab.run):

    detections.json    detect: the evaluation images' boxes in COCO result format
    segmentation.npz   segment: predicted and true class maps of the first evaluation images
    keypoints.npz      pose: predicted and true keypoints on the evaluation crops
    skipped.json       annotated images left out as malformed (--skip-bad), with the reason
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.io import atomic_write_json, save_npz
from cnnlab.tasks import get_task

KEPT_MAPS = 64
"""Evaluation images whose class maps a segmentation run keeps for the report."""


def coco_results(predictions: list[dict], image_ids: list[int] | None = None,
                 scale: list[tuple[float, float]] | None = None, category_ids: list[int] | None = None,
                 keypoints: torch.Tensor | None = None) -> list[dict]:
    """Detections as COCO's result format: one {image_id, category_id, bbox [x, y, w, h],
    score} per box; ``scale`` maps each image's boxes back to its original pixels,
    ``category_ids`` maps class k to its COCO id (default k). ``keypoints`` (one image's
    (M, K, 3) x, y, visibility, in model pixels) adds COCO's flat keypoint list to each box."""
    out = []
    for i, p in enumerate(predictions):
        sx, sy = scale[i] if scale else (1.0, 1.0)
        for m, (box, score, label) in enumerate(zip(p["boxes"].tolist(), p["scores"].tolist(),
                                                    p["labels"].tolist(), strict=True)):
            x0, y0, x1, y1 = box
            row = {"image_id": image_ids[i] if image_ids else i,
                   "category_id": category_ids[int(label)] if category_ids else int(label),
                   "bbox": [round(x0 * sx, 2), round(y0 * sy, 2), round((x1 - x0) * sx, 2),
                            round((y1 - y0) * sy, 2)], "score": round(float(score), 4)}
            if keypoints is not None:
                row["keypoints"] = [round(v, 2) for x, y, c in keypoints[m].tolist()
                                    for v in (x * sx, y * sy, c)]
            out.append(row)
    return out


SCORE_RESAMPLES = {"detect": 200, "segment": 2000, "pose": 2000}
"""Bootstrap resamples of a dense run's score interval: each of detection's is a whole COCO
evaluation (about 0.04 s at 250 small images), mIoU's and PCK's are sums."""


def finish_task(run_dir: Path, task_name: str, data, result: dict, seed: int = 0) -> dict:
    """Write the task's prediction file (and skipped.json) and return its metrics, the score
    with its bootstrap interval (``score_ci``, seeded by the run's ``seed``)."""
    metrics = {k: v for k, v in result.items() if k != "predictions"}
    metrics |= {"score_name": get_task(task_name).score_name, "n": len(data.eval)}
    if result.get("score") is not None and len(data.eval):
        metrics["score_ci"] = score_interval(task_name, result["predictions"], data.eval,
                                             SCORE_RESAMPLES[task_name], seed)
    if task_name == "detect":
        atomic_write_json(run_dir / "detections.json", coco_results(result["predictions"]))
        save_npz(run_dir / "detect_examples.npz", **detection_examples(data.eval, result["predictions"]))
    elif task_name == "segment":
        n = min(KEPT_MAPS, len(data.eval))
        save_npz(run_dir / "segmentation.npz", pred=result["predictions"][:n].numpy(),
                 true=data.eval.extras["class_map"][:n].numpy(), x=data.eval.x[:n].numpy())
    elif task_name == "pose":
        save_npz(run_dir / "keypoints.npz", pred=result["predictions"].numpy(),
                 true=data.eval.extras["keypoints"].numpy(), x=data.eval.x.numpy(),
                 labels=data.eval.y.numpy())
    if data.skipped:
        atomic_write_json(run_dir / "skipped.json", [{"file": f, "reason": r} for f, r in data.skipped])
        metrics["skipped"] = len(data.skipped)
    return metrics


def detection_examples(val, predictions: list[dict], n: int = KEPT_MAPS) -> dict:
    """For the report: the first ``n`` evaluation images with their predicted and true boxes
    (flattened, with the image each belongs to), and each class's precision-recall curve."""
    from cnnlab.data.dense import objects
    from cnnlab.evaluate.detection import precision_recall

    targets = objects(val, torch.arange(len(val)))
    curves = precision_recall(predictions, targets, val.classes)
    n = min(n, len(val))
    out = {"x": val.x[:n].numpy(), "pr_classes": np.array(list(curves), dtype=str),
           "pr_recall": np.linspace(0, 1, 101),
           "pr_precision": np.array([p for _, p in curves.values()]).reshape(len(curves), -1)}
    for side, items, keys in (("pred", predictions, ("boxes", "scores", "labels")),
                              ("true", targets, ("boxes", "labels"))):
        out[f"{side}_image"] = np.concatenate([np.full(len(t["labels"]), i) for i, t in enumerate(items[:n])]
                                              + [np.zeros(0, int)])
        for k in keys:
            empty = np.zeros((0, 4) if k == "boxes" else 0, np.int64 if k == "labels" else np.float32)
            out[f"{side}_{k}"] = np.concatenate([t[k].numpy() for t in items[:n]] + [empty])
    return out


def prepare_task_data(task_name: str, data):
    """The data a task's run trains on (pose: crops of the objects), checked."""
    task = get_task(task_name)
    if task is None:
        check_classification_data(data)
        return data
    return task.prepare(data)


MIN_SIDE = 4
"""The smallest image side a classifier is trained on: a 3x3 window must fit with room to move."""


def check_classification_data(data) -> None:
    """Refuse data a classifier cannot learn anything from, with the reason."""
    import torch

    from cnnlab.errors import CnnlabError

    present = torch.unique(data.train.y)
    if len(present) < 2:
        raise CnnlabError(f"{data.source}: every training image has the label "
                          f"{data.train.classes[int(present[0])] if len(present) else '(none)'}; a "
                          "classifier needs at least two classes to tell apart")
    side = min(data.train.image_shape[-2:])
    if side < MIN_SIDE:
        raise CnnlabError(f"{data.source}: images of {side}x{side} pixels are too small to learn "
                          f"from; give images of at least {MIN_SIDE}x{MIN_SIDE} (or --image-size)")


def task_meta(cfg, data, model) -> dict:
    """What weights/meta.json adds for a dense task, so the model can be rebuilt."""
    from cnnlab.tasks import head_of

    extra = {"task": cfg.task, "head": head_of(cfg)}
    if cfg.task == "pose":
        extra["num_keypoints"] = int(data.train.extras["keypoints"].shape[1])
        extra["crop_size"] = int(data.train.image_shape[-1])
    return extra


def score_interval(task: str, predictions, ds, resamples: int, seed: int) -> dict:
    """mAP's (``task`` detect) or mIoU's (segment) bootstrap interval over the images of ``ds``;
    PCK's (pose) over its objects (``ds`` holds one crop per object)."""
    if task == "pose":
        from cnnlab.evaluate.pose import pck_ci
        from cnnlab.tasks.pose import crop_hits

        correct, labelled = crop_hits(predictions, ds)
        return pck_ci(correct.numpy(), labelled.numpy(), resamples, seed)
    if task == "detect":
        from cnnlab.data.dense import objects
        from cnnlab.evaluate.detection import detection_map_ci

        return detection_map_ci(predictions, objects(ds, torch.arange(len(ds))), resamples, seed)
    from cnnlab.evaluate.segmentation import miou_ci

    return miou_ci(predictions, ds.extras["class_map"], len(ds.classes) + 1, resamples, seed)
