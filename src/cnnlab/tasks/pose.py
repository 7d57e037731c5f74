"""Pose estimation, top-down: each object is cut out by its box and its keypoints are predicted
on the crop, by direct regression (DeepPose, Toshev & Szegedy 2014) or by heatmaps (Tompson
et al. 2014). Trained on crops of ground-truth boxes; scored by PCK@0.1 and COCO's OKS-based
keypoint AP, on ground-truth boxes and (``topdown_on_detections``) on a detector's boxes.

The crop side is half the image side (32 px for 64 px scenes): objects there span 8-40 px.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.data import ImageDataset, RunData
from cnnlab.data.dense import objects
from cnnlab.evaluate.pose import keypoint_ap, keypoint_hits, pck
from cnnlab.models.pose import crop_objects, from_crop, to_crop
from cnnlab.tasks.base import Task, backbone, build_task_model, head_of


def crop_dataset(ds: ImageDataset, size: int) -> ImageDataset:
    """One image per object: its crop (size x size), its class as ``y``, its keypoints in the
    crop's normalized coordinates (visibility kept), and where the crop came from."""
    targets = objects(ds, torch.arange(len(ds)))
    crops, index, crop_boxes = crop_objects(ds.x, [t["boxes"] for t in targets], size)
    kp = torch.cat([t["keypoints"] for t in targets]) if targets else torch.zeros(0, 1, 3)
    norm = torch.cat([to_crop(kp[..., :2], crop_boxes), kp[..., 2:]], dim=-1)
    extras = {"keypoints": norm, "image_index": index, "crop_boxes": crop_boxes,
              "boxes": torch.cat([t["boxes"] for t in targets]),
              "areas": torch.cat([t["areas"] for t in targets])}
    labels = torch.cat([t["labels"] for t in targets])
    return ImageDataset(crops, labels, ds.classes, f"{ds.name} crops", False, extras)


class PoseTask(Task):
    name = "pose"
    score_name = "PCK@0.1"

    def prepare(self, data: RunData) -> RunData:
        data = super().prepare(data)
        size = data.train.image_shape[-1] // 2
        return RunData(crop_dataset(data.train, size), crop_dataset(data.eval, size), data.eval_split,
                       data.source + f"; objects cropped to {size}x{size}", None, data.skipped)

    def build(self, cfg: TrainConfig, data) -> nn.Module:
        k = data.train.extras["keypoints"].shape[1]
        _, kwargs = backbone(cfg, data, data.train.num_classes)
        torch.manual_seed(cfg.seed)
        model = build_task_model("pose", head_of(cfg), cfg.model, kwargs, data.train.num_classes, k)
        model.build_kwargs = kwargs
        return model

    def targets(self, ds, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        return ds.extras["keypoints"][idx.cpu()].to(device)

    def evaluate(self, model: nn.Module, ds, device: torch.device, bf16: bool = False) -> dict:
        pred, conf = crop_keypoints(model, ds.x, device, bf16, with_confidence=True)
        scored = score_keypoints(*in_image(pred, ds), ds, scores=conf)
        method = "heatmaps" if type(model).__name__ == "PoseHeatmap" else "direct regression"
        return {"score": scored["pck"], **scored, "method": method, "n_objects": len(ds),
                "predictions": pred}


def in_image(pred: torch.Tensor, ds: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints predicted on the crops of ``crop_dataset`` (normalized to each crop) and the
    crops' truth, both back in image pixels: (M, K, 2) and (M, K, 3) with visibility."""
    boxes, true = ds.extras["crop_boxes"], ds.extras["keypoints"]
    return from_crop(pred, boxes), torch.cat([from_crop(true[..., :2], boxes), true[..., 2:]], -1)


def crop_hits(pred: torch.Tensor, ds: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per crop (one object) and keypoint of ``ds``: (correct at PCK@0.1 in image pixels,
    labelled), both (M, K) bool."""
    return keypoint_hits(*in_image(pred, ds), ds.extras["boxes"])


def score_keypoints(pred: torch.Tensor, true: torch.Tensor, ds: ImageDataset,
                    scores: torch.Tensor | None = None) -> dict:
    """PCK@0.1 and OKS keypoint AP of keypoints in image pixels, one row per crop of ``ds``."""
    result = pck(pred, true, ds.extras["boxes"], alpha=0.1)
    index = ds.extras["image_index"]
    n = int(index.max()) + 1 if len(index) else 0
    scores = torch.ones(len(pred)) if scores is None else scores
    preds = [{"keypoints": pred[index == i], "scores": scores[index == i], "labels": ds.y[index == i]}
             for i in range(n)]
    gts = [{"keypoints": true[index == i], "boxes": ds.extras["boxes"][index == i],
            "labels": ds.y[index == i], "area": ds.extras["areas"][index == i]} for i in range(n)]
    return {"pck": result["pck"], "per_keypoint": result["per_keypoint"], **keypoint_ap(preds, gts)}


@torch.inference_mode()
def crop_keypoints(model: nn.Module, crops: torch.Tensor, device: torch.device | str = "cpu",
                   bf16: bool = False, batch_size: int = 256, with_confidence: bool = False
                   ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``model.keypoints`` over uint8 crops in batches: (M, K, 2) normalized to the crop, and
    with ``with_confidence`` each pose's own score (M,), which ranks poses in keypoint AP."""
    model.eval()
    out, conf = [], []
    for start in range(0, len(crops), batch_size):
        xb = crops[start: start + batch_size].to(device).float().div_(255)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
            out.append(model.keypoints(xb).float().cpu())
            if with_confidence:
                conf.append(model.confidence(xb).float().cpu())
    kp = torch.cat(out) if out else torch.zeros(0, 1, 2)
    return (kp, torch.cat(conf) if conf else torch.zeros(0)) if with_confidence else kp


def pose_on_boxes(model: nn.Module, images: torch.Tensor, boxes: list[torch.Tensor], size: int
                  ) -> list[torch.Tensor]:
    """Keypoints (n_i, K, 3: x, y in image pixels, visibility 2) of each image's boxes, and
    each pose's confidence (n_i,)."""
    crops, index, crop_boxes = crop_objects(images, boxes, size)
    kp, conf = crop_keypoints(model, crops, with_confidence=True)
    kp = from_crop(kp, crop_boxes)
    kp = torch.cat([kp, torch.full_like(kp[..., :1], 2.0)], -1)
    return [kp[index == i] for i in range(len(boxes))], [conf[index == i] for i in range(len(boxes))]


def topdown_on_detections(pose_model: nn.Module, detector: nn.Module, images: ImageDataset,
                          size: int, score_min: float = 0.3) -> dict:
    """Keypoint AP of the whole system: the detector's boxes (score >= ``score_min``), keypoints
    on their crops, ranked by detection score times pose confidence (as top-down pose methods
    rank them), against every ground-truth object."""
    from cnnlab.tasks.detect import detect_images

    found = detect_images(detector, images.x, threshold=score_min)
    kps, confs = pose_on_boxes(pose_model, images.x, [f["boxes"] for f in found], size)
    truth = objects(images, torch.arange(len(images)))
    preds = [{"keypoints": k, "scores": f["scores"] * c, "labels": f["labels"]}
             for k, c, f in zip(kps, confs, found, strict=True)]
    gts = [{"keypoints": t["keypoints"], "boxes": t["boxes"], "labels": t["labels"], "area": t["areas"]}
           for t in truth]
    return keypoint_ap(preds, gts)
