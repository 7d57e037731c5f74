"""Single-shot object detection: boxes and labels in one pass (YOLO, SSD; here CenterNet-style
centres with FCOS-style sides, or torchvision's FCOS as the reference), scored by the COCO
evaluation's mAP@0.5:0.95."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.data.dense import objects
from cnnlab.evaluate.detection import detection_map
from cnnlab.tasks.base import Task, backbone, build_task_model, head_of


class DetectTask(Task):
    name = "detect"
    score_name = "mAP@0.5:0.95"

    def build(self, cfg: TrainConfig, data) -> nn.Module:
        num_classes = data.train.num_classes
        _, kwargs = backbone(cfg, data, num_classes)
        torch.manual_seed(cfg.seed)
        model = build_task_model("detect", head_of(cfg), cfg.model, kwargs, num_classes)
        model.build_kwargs = kwargs
        return model

    def targets(self, ds, idx: torch.Tensor, device: torch.device) -> list[dict]:
        return [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)}
                for t in objects(ds, idx.cpu())]

    def evaluate(self, model: nn.Module, ds, device: torch.device, bf16: bool = False) -> dict:
        predictions = detect_images(model, ds.x, device, bf16)
        result = detection_map(predictions, objects(ds, torch.arange(len(ds))), ds.classes)
        return {"score": result["map"], **result, "predictions": predictions}


@torch.inference_mode()
def detect_images(model: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu",
                  bf16: bool = False, batch_size: int = 100, threshold: float = 0.05) -> list[dict]:
    """``model.detect`` over uint8 images (N, C, H, W) in batches: boxes (pixels), scores, labels."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start: start + batch_size].to(device).float().div_(255)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
            found = model.detect(xb, threshold=threshold)
        out += [{k: v.float().cpu() if k != "labels" else v.cpu() for k, v in d.items()} for d in found]
    return out
