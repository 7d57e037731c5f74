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
from cnnlab.errors import CnnlabError

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
    elif ds.mapped is not None:  # some images have every mask, others not
        extras["mapped"] = ds.mapped
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


def align_classes(ds: ImageDataset, classes: list[str]) -> ImageDataset:
    """``ds`` with its labels (and class map) renumbered to ``classes``, a run's classes, matched
    by name: another annotated set may list the same classes in another order (COCO orders them
    by category id, VOC by name) or only some of them. A class the run never learnt stops with
    one line, as a score against it would mean nothing."""
    if list(ds.classes) == list(classes):
        return ds
    unknown = [c for c in ds.classes if c not in classes]
    if unknown:
        raise CnnlabError(f"{ds.name}: the class{'es' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))} {'are' if len(unknown) > 1 else 'is'} not "
                          f"among the run's ({', '.join(classes)}); evaluate on images of the classes "
                          f"it was trained on")
    new = torch.tensor([classes.index(c) for c in ds.classes])
    labels = ds.extras["labels"]
    extras = dict(ds.extras, labels=torch.where(labels >= 0, new[labels.clamp(min=0)], labels))
    if "class_map" in extras:  # 0 background, 1 + class
        extras["class_map"] = torch.cat([torch.zeros(1, dtype=new.dtype), new + 1])[
            extras["class_map"].long()].to(extras["class_map"].dtype)
    return ImageDataset(ds.x, new[ds.y], list(classes), ds.name, ds.flip_ok, extras)
