"""Detection metrics, computed by the standard COCO evaluation, never by hand.

torchmetrics' ``MeanAveragePrecision`` with the faster-coco-eval backend (a faithful, faster
port of pycocotools' COCOeval): mAP@0.5, mAP@0.5:0.95 and per-class AP. Predictions and
ground truth are lists with one dict per image: ``boxes`` (M, 4) as (x0, y0, x1, y1) pixels,
``labels`` (M,), and for predictions ``scores`` (M,).
"""

from __future__ import annotations

import torch


def detection_map(predictions: list[dict], targets: list[dict], classes: list[str]) -> dict:
    """COCO mAP@0.5:0.95, mAP@0.5, mAP@0.75 and AP@0.5:0.95 per class (None where a class has
    no ground truth)."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                  backend="faster_coco_eval")
    metric.update([{k: torch.as_tensor(p[k]) for k in ("boxes", "scores", "labels")} for p in predictions],
                  [{k: torch.as_tensor(t[k]) for k in ("boxes", "labels")} for t in targets])
    r = metric.compute()
    per_class = {classes[int(c)]: (float(v) if float(v) >= 0 else None)
                 for c, v in zip(r["classes"].reshape(-1), r["map_per_class"].reshape(-1), strict=True)}
    return {"map": float(r["map"]), "map_50": float(r["map_50"]), "map_75": float(r["map_75"]),
            "per_class": per_class}
