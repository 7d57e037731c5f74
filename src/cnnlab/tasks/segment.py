"""Scene labeling: a class for every pixel (FCN, Long et al. 2015; U-Net, Ronneberger et al.
2015), scored by mean IoU over classes (background included)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Task, backbone, build_task_model


class SegmentTask(Task):
    name = "segment"
    score_name = "mIoU"

    def prepare(self, data):
        data = super().prepare(data)
        extras = data.train.extras
        if "class_map" not in extras and "mapped" in extras:
            without = int((~extras["mapped"]).sum())
            raise CnnlabError(f"task segment needs a mask for every object: {without} of "
                              f"{len(data.train)} training images of {data.train.name} have an object "
                              f"without one; add its segmentation (polygons or RLE), or leave those "
                              f"images out")
        if "class_map" not in extras:
            raise CnnlabError(f"task segment needs a class per pixel: {data.train.name} has boxes only "
                              f"(use scenes, or coco:PATH with polygon or RLE masks)")
        return data

    def build(self, cfg: TrainConfig, data) -> nn.Module:
        num_classes = data.train.num_classes
        _, kwargs = backbone(cfg, data, num_classes)
        torch.manual_seed(cfg.seed)
        model = build_task_model("segment", "unet", cfg.model, kwargs, num_classes)
        model.build_kwargs = kwargs
        return model

    def targets(self, ds, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        return ds.extras["class_map"][idx.cpu()].long().to(device)

    def evaluate(self, model: nn.Module, ds, device: torch.device, bf16: bool = False) -> dict:
        from cnnlab.evaluate.segmentation import segmentation_iou

        pred = segment_images(model, ds.x, device, bf16)
        result = segmentation_iou(pred, ds.extras["class_map"].long(), ["background", *ds.classes])
        return {"score": result["miou"], **result, "predictions": pred}


@torch.inference_mode()
def segment_images(model: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu",
                   bf16: bool = False, batch_size: int = 100) -> torch.Tensor:
    """The class of every pixel, (N, H, W) uint8 (0 background, 1 + class)."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start: start + batch_size].to(device).float().div_(255)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
            out.append(model.segment(xb).to(torch.uint8).cpu())
    return torch.cat(out) if out else torch.zeros(0, *x.shape[-2:], dtype=torch.uint8)
