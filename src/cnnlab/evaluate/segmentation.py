"""Semantic segmentation metrics: per-class IoU (Jaccard index), mean IoU and pixel accuracy.

IoU of a class is TP / (TP + FP + FN) counted over every pixel of every image (one confusion
matrix for the whole set, as in the PASCAL VOC and Cityscapes benchmarks, not a mean of
per-image IoUs), computed by torchmetrics' ``multiclass_jaccard_index``; pixel accuracy is its
micro-averaged ``multiclass_accuracy``. Class maps hold 0 (background) .. C - 1, as
``scenes``' ``class_map`` does (0 background, 1 + class).
"""

from __future__ import annotations

import torch


def miou_ci(pred: torch.Tensor, target: torch.Tensor, num_classes: int, resamples: int = 2000,
            seed: int = 0, level: float = 0.95) -> dict:
    """A percentile bootstrap interval of the mean IoU over images: each resample draws images
    with replacement and pools their pixels, as ``segmentation_iou`` pools the whole set (the
    estimate is that function's mIoU). Per-image confusion matrices make a resample one matrix
    product."""
    import numpy as np

    c, n = num_classes, len(pred)
    cells = (target.long() * c + pred.long()).reshape(n, -1) + torch.arange(n)[:, None] * c * c
    per_image = torch.bincount(cells.reshape(-1), minlength=n * c * c).reshape(n, c * c).double().numpy()
    draws = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=resamples)

    def miou(conf: np.ndarray) -> np.ndarray:  # (..., C*C) -> (...)
        conf = conf.reshape(*conf.shape[:-1], c, c)
        hit = np.diagonal(conf, axis1=-2, axis2=-1)
        union = conf.sum(-1) + conf.sum(-2) - hit
        present = union > 0
        iou = np.where(present, hit / np.maximum(union, 1), 0.0)
        return iou.sum(-1) / np.maximum(present.sum(-1), 1)

    values = miou(draws @ per_image)
    tail = (1 - level) / 2
    return {"estimate": float(miou(per_image.sum(0))), "low": float(np.quantile(values, tail)),
            "high": float(np.quantile(values, 1 - tail)), "level": level}


def segmentation_iou(pred: torch.Tensor, target: torch.Tensor, class_names: list[str]) -> dict:
    """IoU per class, mean IoU and pixel accuracy of predicted class maps.

    Args:
        pred: (N, H, W) integer class map predicted, values 0 .. C - 1.
        target: (N, H, W) integer class map of the ground truth, values 0 .. C - 1.
        class_names: C names, index 0 the background.

    Returns:
        ``{"miou", "per_class", "pixel_accuracy"}``. ``per_class`` maps each name to its IoU,
        or None where the class is absent from both target and prediction (its IoU is 0/0).
        ``miou`` is the mean over the classes present in the target or the prediction,
        background included (a class only predicted counts, with IoU 0); None if no pixels.
    """
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_jaccard_index

    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    c = len(class_names)
    pred, target = pred.long().reshape(-1), target.long().reshape(-1)
    if target.numel() == 0:
        return {"miou": None, "per_class": dict.fromkeys(class_names), "pixel_accuracy": None}
    iou = multiclass_jaccard_index(pred, target, num_classes=c, average=None)  # checks values < C
    present = (torch.bincount(pred, minlength=c) + torch.bincount(target, minlength=c)) > 0
    per_class = {name: float(iou[k]) if present[k] else None for k, name in enumerate(class_names)}
    seen = [v for v in per_class.values() if v is not None]
    accuracy = multiclass_accuracy(pred, target, num_classes=c, average="micro")
    return {"miou": sum(seen) / len(seen), "per_class": per_class, "pixel_accuracy": float(accuracy)}
