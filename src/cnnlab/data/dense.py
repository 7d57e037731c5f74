"""Annotated images (boxes, masks, keypoints) as one ``ImageDataset``, so dense tasks share the
classification machinery: splits, hold-outs, subsets, ``limit_train`` and the trainer's
batches of indices.

Objects differ in number from image to image, so they are padded to the most objects in any
image (``MAX`` below): per image ``boxes`` (M, 4) pixels, ``labels`` (M,) with -1 marking
padding, ``keypoints`` (M, K, 3) and ``areas`` (M,) visible pixels; per image ``class_map``
(H, W) with 0 for background and 1 + class elsewhere, where the data has one. ``y``, the
label a classifier would see, is the class of the largest object (or 0 for an empty image).
"""

from __future__ import annotations

import torch

from cnnlab.data.base import ImageDataset
from cnnlab.data.scenes import DetectionSet

DENSE_KEYS = ("boxes", "labels", "keypoints", "areas", "class_map")


def to_image_dataset(ds: DetectionSet, flip_ok: bool = False) -> ImageDataset:
    """Pad every image's objects to one length and store them as ``extras``."""
    n, m = len(ds), max([len(t["labels"]) for t in ds.targets] + [1])
    k = max([t["keypoints"].shape[1] for t in ds.targets if "keypoints" in t] + [1])
    boxes, labels = torch.zeros(n, m, 4), torch.full((n, m), -1, dtype=torch.long)
    keypoints, areas = torch.zeros(n, m, k, 3), torch.zeros(n, m)
    y = torch.zeros(n, dtype=torch.long)
    for i, t in enumerate(ds.targets):
        j = len(t["labels"])
        boxes[i, :j], labels[i, :j] = torch.as_tensor(t["boxes"]).float(), torch.as_tensor(t["labels"])
        if "keypoints" in t:
            keypoints[i, :j] = torch.as_tensor(t["keypoints"]).float()
        wh = (boxes[i, :j, 2:] - boxes[i, :j, :2]).prod(1)
        areas[i, :j] = (torch.as_tensor(t["masks"]).flatten(1).sum(1).float() if "masks" in t else wh)
        if j:
            y[i] = labels[i, int(areas[i, :j].argmax())]
    extras = {"boxes": boxes, "labels": labels, "keypoints": keypoints, "areas": areas}
    if ds.class_map is not None:
        extras["class_map"] = ds.class_map
    return ImageDataset(ds.x, y, ds.classes, ds.name, flip_ok, extras)


def objects(ds: ImageDataset, index) -> list[dict]:
    """The objects of images ``index`` without padding: one dict per image with ``boxes``,
    ``labels``, ``keypoints`` and ``areas`` (the format of torchvision and torchmetrics)."""
    index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
    labels = ds.extras["labels"][index]
    out = []
    for row, i in enumerate(index.tolist()):
        keep = labels[row] >= 0
        out.append({"boxes": ds.extras["boxes"][i][keep], "labels": labels[row][keep],
                    "keypoints": ds.extras["keypoints"][i][keep], "areas": ds.extras["areas"][i][keep]})
    return out


def is_dense(ds: ImageDataset) -> bool:
    """Whether ``ds`` carries object annotations (boxes at least)."""
    return "boxes" in ds.extras and "labels" in ds.extras
