"""Keypoint metrics: PCK, and COCO keypoint AP by object keypoint similarity (OKS).

PCK, the percentage of correct keypoints (Yang & Ramanan 2013, "Articulated Human Detection
with Flexible Mixtures of Parts"): a labelled keypoint (visibility > 0) is correct when it lies
within ``alpha * max(box width, box height)`` of the ground truth. It is a few lines of torch.

Keypoint AP is the COCO keypoint evaluation (cocodataset.org/#keypoints-eval; Ronchi & Perona
2017, "Benchmarking and Error Diagnosis in Multi-Instance Pose Estimation"), run by
faster-coco-eval's ``COCOeval_faster`` (a port of pycocotools' COCOeval), never by hand.
Detections are matched to ground truth of their class by

    OKS = mean over keypoints i with visibility > 0 of exp(-d_i^2 / (2 s^2 k_i^2)),  k_i = 2 sigma_i,

with s^2 the object's area and sigma_i COCO's per-keypoint ``kpt_oks_sigmas``; AP is averaged
over OKS thresholds 0.50:0.05:0.95 with COCO's keypoint settings (at most 20 detections per image
scored, ground truth without a labelled keypoint ignored). The evaluator defaults to the 17 sigmas
of COCO's person keypoints, so they are always replaced by ``sigmas``, one per keypoint.

Default sigma: ``DEFAULT_SIGMA`` = 0.05 for every keypoint. COCO's sigmas run from 0.025 (eyes,
sharply defined) to 0.107 (hips, loosely defined). Polygon vertices and circle points are exactly
defined, like eyes, but ``scenes`` objects are small (boxes of about 13 to 30 pixels): at 0.025
OKS 0.5 would need sub-pixel accuracy, while at 0.05 (k = 0.1) OKS 0.5 sits at a distance of
0.12 s (1.5 to 3.5 pixels) and OKS 0.95 at 0.03 s.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

DEFAULT_SIGMA = 0.05
logger = logging.getLogger(__name__)


def keypoint_hits(pred: torch.Tensor, gt: torch.Tensor, boxes: torch.Tensor, alpha: float = 0.1
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, labelled), each (M, K) bool: whether each keypoint lies within ``alpha`` x its
    box's longer side of the truth, and whether the truth labels it (visibility > 0)."""
    pred, gt, boxes = (torch.as_tensor(a, dtype=torch.float64) for a in (pred, gt, boxes))
    if pred.shape[:2] != gt.shape[:2] or boxes.shape != (len(gt), 4):
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, "
                         f"boxes {tuple(boxes.shape)}")
    scale = (boxes[:, 2:] - boxes[:, :2]).amax(1, keepdim=True)  # (M, 1)
    correct = (pred[..., :2] - gt[..., :2]).norm(dim=-1) <= alpha * scale  # (M, K)
    return correct, gt[..., 2] > 0


def pck(pred: torch.Tensor, gt: torch.Tensor, boxes: torch.Tensor, alpha: float = 0.1) -> dict:
    """Percentage of correct keypoints of matched objects.

    Args:
        pred: (M, K, 2) predicted keypoints, pixels.
        gt: (M, K, 3) ground truth as (x, y, visibility); only visibility > 0 counts.
        boxes: (M, 4) ground-truth boxes (x0, y0, x1, y1) setting each object's scale.
        alpha: the tolerance as a fraction of the box's longer side.

    Returns:
        ``{"pck", "per_keypoint", "n"}``: the fraction of labelled keypoints that are correct
        (None if none is labelled), the same per keypoint index (None where none is labelled),
        and the number of labelled keypoints.
    """
    correct, labelled = keypoint_hits(pred, gt, boxes, alpha)
    hits, counts = (correct & labelled).sum(0), labelled.sum(0)  # (K,)
    n = int(counts.sum())
    per_keypoint = [int(h) / int(c) if c else None for h, c in zip(hits, counts, strict=True)]
    return {"pck": int(hits.sum()) / n if n else None, "per_keypoint": per_keypoint, "n": n}


def pck_ci(correct: np.ndarray, labelled: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """PCK's bootstrap interval over objects, from ``keypoint_hits``' (correct, labelled) (M, K).

    The unit resampled is the object, not the keypoint: one bad crop moves all of an object's
    keypoints, so keypoints of one object are not independent draws. Each resample pools the
    drawn objects' labelled keypoints (PCK over keypoints, as ``pck`` counts it); objects with no
    labelled keypoint are left out. ``{"estimate", "low", "high", "level"}``."""
    from cnnlab.evaluate.stats import bootstrap_ci

    correct, labelled = np.asarray(correct, bool), np.asarray(labelled, bool)
    keep = labelled.sum(1) > 0
    if not keep.any():
        raise ValueError("no labelled keypoint: PCK has no interval")
    counts = np.stack([(correct & labelled).sum(1), labelled.sum(1)], 1)[keep]  # (objects, 2)

    def pooled(c: np.ndarray) -> np.ndarray:  # (..., objects, 2) -> PCK over their keypoints
        return c[..., 0].sum(-1) / c[..., 1].sum(-1)

    return bootstrap_ci(counts, pooled, resamples=resamples, seed=seed, batched=True).to_dict()


def _np(a: torch.Tensor | np.ndarray | list) -> np.ndarray:
    """A float64 NumPy copy of a tensor, array or list."""
    return torch.as_tensor(a).detach().cpu().double().numpy()


def _gt_annotations(targets: list[dict]) -> list[dict]:
    """COCO keypoint annotations of the ground truth (boxes to xywh, area defaulting to the box's)."""
    anns = []
    for image_id, t in enumerate(targets):
        kps, boxes = _np(t["keypoints"]), _np(t["boxes"]).reshape(-1, 4)
        wh = boxes[:, 2:] - boxes[:, :2]
        area = _np(t["area"]) if t.get("area") is not None else wh.prod(1)
        for kp, box, size, a, label in zip(kps, boxes, wh, area, _np(t["labels"]), strict=True):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(label),
                         "keypoints": kp.reshape(-1).tolist(), "num_keypoints": int((kp[:, 2] > 0).sum()),
                         "bbox": [*box[:2].tolist(), *size.tolist()], "area": float(a), "iscrowd": 0})
    return anns


def _dt_annotations(predictions: list[dict]) -> list[dict]:
    """COCO keypoint results; (x, y) predictions get visibility 1 (COCO ignores it for detections)."""
    anns = []
    for image_id, p in enumerate(predictions):
        kps = _np(p["keypoints"])
        if kps.shape[-1] == 2:
            kps = np.concatenate([kps, np.ones_like(kps[..., :1])], -1)
        for kp, score, label in zip(kps, _np(p["scores"]), _np(p["labels"]), strict=True):
            anns.append({"image_id": image_id, "category_id": int(label),
                         "keypoints": kp.reshape(-1).tolist(), "score": float(score)})
    return anns


def _coco_keypoint_eval(predictions: list[dict], targets: list[dict], sigmas: list[float] | None):
    """The evaluated, accumulated and summarized ``COCOeval_faster``, or None without ground truth."""
    from faster_coco_eval import COCO, COCOeval_faster

    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    gts, dts = _gt_annotations(targets), _dt_annotations(predictions)
    if not gts:
        return None
    k = len(gts[0]["keypoints"]) // 3
    sigmas = [DEFAULT_SIGMA] * k if sigmas is None else [float(s) for s in sigmas]
    if len(sigmas) != k or any(len(a["keypoints"]) != 3 * k for a in gts + dts):
        raise ValueError(f"every object needs {len(sigmas)} keypoints, one per sigma")
    labels = sorted({a["category_id"] for a in gts + dts})
    coco_gt = COCO({"images": [{"id": i} for i in range(len(targets))], "annotations": gts,
                    "categories": [{"id": c, "name": str(c)} for c in labels]}, print_function=logger.debug)
    coco_dt = coco_gt.loadRes(dts)
    evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="keypoints", kpt_oks_sigmas=sigmas,
                                print_function=logger.debug)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def keypoint_ap(predictions: list[dict], targets: list[dict], sigmas: list[float] | None = None) -> dict:
    """COCO keypoint AP@[.5:.95], AP@.5 and AP@.75 by OKS.

    Args:
        predictions: one dict per image: ``keypoints`` (M, K, 3) or (M, K, 2) pixels,
            ``scores`` (M,), ``labels`` (M,).
        targets: one dict per image: ``keypoints`` (M, K, 3) as (x, y, visibility),
            ``boxes`` (M, 4) as (x0, y0, x1, y1), ``labels`` (M,), and optionally ``area`` (M,),
            the s^2 of OKS (COCO uses the mask area; default: the box area).
        sigmas: K per-keypoint sigmas (COCO's ``kpt_oks_sigmas``); default ``DEFAULT_SIGMA`` each.

    Returns:
        ``{"ap", "ap50", "ap75"}``, each None where no ground truth has a labelled keypoint.
    """
    evaluator = _coco_keypoint_eval(predictions, targets, sigmas)
    stats = [-1.0] * 3 if evaluator is None else evaluator.stats[:3]
    return {name: float(s) if s >= 0 else None for name, s in zip(("ap", "ap50", "ap75"), stats, strict=True)}
