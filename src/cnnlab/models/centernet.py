"""A single-shot, anchor-free detector head (CenterNet-style centres, FCOS-style box sides).

On a backbone's last convolutional map (``forward_features``; stride ``stride`` pixels per
cell) two small heads predict, per cell, a score per class that an object is centred there
(a heatmap, trained with CenterNet's penalty-reduced focal loss against Gaussian bumps) and
the distances from the cell's centre to the box's left, top, right and bottom sides (trained
with the generalized IoU loss at the cells that hold a centre). Decoding keeps local maxima of
the heatmap (a 3x3 max-pool), turns their sides into boxes and removes duplicates with
torchvision's ``batched_nms``.

``encode`` and ``decode`` are exact inverses on the cells they use: encoding ground truth and
decoding the encoded maps returns the same boxes (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CenterHead(nn.Module):
    """Per cell: class logits (K) and box sides in cells (4, positive)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, prior: float = 0.1):
        super().__init__()
        self.heat = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, num_classes, 1))
        self.sides = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(width, 4, 1))
        nn.init.constant_(self.heat[-1].bias, -math.log((1 - prior) / prior))  # start near `prior`

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heat": self.heat(features), "sides": F.softplus(self.sides(features))}


class Detector(nn.Module):
    """A classification backbone's feature map with a CenterHead on top.

    The surface every cnnlab task model shares: ``forward(x)`` (pixels in [0, 1]) -> raw
    outputs, ``loss(outputs, targets)`` -> (loss, its parts), and a prediction method, here
    ``detect(x)`` -> one dict of boxes, scores and labels per image."""

    takes_targets = False

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int, stride: int,
                 fine: bool = False):
        super().__init__()
        self.backbone, self.stride, self.num_classes = backbone, stride, num_classes
        self.image_size = getattr(backbone, "image_size", 0)
        self.fine = fine
        if fine:  # a CIFAR ResNet's stride-2 map, with the stride-4 map upsampled onto it (FPN-like)
            c2 = backbone.layer2[-1].conv2.out_channels
            self.lateral2, self.lateral4 = nn.Conv2d(c2, channels, 1), nn.Conv2d(channels, channels, 1)
            self.stride = stride // 2
        self.head = CenterHead(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fine:
            return self.backbone.forward_features(x)  # (B, 64, H/4, W/4) for ResNet-20
        from cnnlab.models.segment import resnet_pyramid

        _, s2, s4 = resnet_pyramid(self.backbone, x)  # (B, 32, H/2, W/2), (B, 64, H/4, W/4)
        return self.lateral2(s2) + F.interpolate(self.lateral4(s4), size=s2.shape[-2:], mode="nearest")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.features(x))

    def loss(self, outputs: dict[str, torch.Tensor], targets: list[dict]) -> tuple[torch.Tensor, dict]:
        grid = tuple(outputs["heat"].shape[-2:])
        encoded = encode(targets, self.num_classes, grid, self.stride)
        encoded = {k: v.to(outputs["heat"].device) for k, v in encoded.items()}
        return loss({k: v.float() for k, v in outputs.items()}, encoded, self.stride)

    @torch.no_grad()
    def detect(self, x: torch.Tensor, threshold: float = 0.05) -> list[dict]:
        """Per image: boxes (pixels, clipped to the image), scores and labels after NMS."""
        from torchvision.ops import clip_boxes_to_image

        found = decode({k: v.float() for k, v in self(x).items()}, self.stride, threshold=threshold)
        for f in found:
            f["boxes"] = clip_boxes_to_image(f["boxes"], tuple(x.shape[-2:]))
        return found


def encode(targets: list[dict], num_classes: int, grid: tuple[int, int], stride: int,
           radius: int = 0) -> dict[str, torch.Tensor]:
    """Ground truth -> per-cell training targets: heatmap (B, K, h, w) with a Gaussian bump of
    peak 1 at each box centre's cell, box sides (B, 4, h, w), and a weight (B, h, w) for the
    box loss: the bump's value at the cells within ``radius`` of the centre whose centres lie
    inside the box (1 at the centre). More cells regressing each box (TTFNet, Liu et al. 2020)
    did not help on scenes: radius 1 gave mAP 0.749 against 0.748, slower, so 0 is the default.
    Where objects overlap, the nearer centre's box wins."""
    h, w = grid
    b = len(targets)
    heat, sides, mask = torch.zeros(b, num_classes, h, w), torch.zeros(b, 4, h, w), torch.zeros(b, h, w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    for i, t in enumerate(targets):
        for box, label in zip(torch.as_tensor(t["boxes"]).float(), torch.as_tensor(t["labels"]), strict=True):
            x0, y0, x1, y1 = (box / stride).tolist()
            cx, cy = min(int((x0 + x1) / 2), w - 1), min(int((y0 + y1) / 2), h - 1)
            sigma = max(0.5, math.hypot(x1 - x0, y1 - y0) / 6)
            bump = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
            heat[i, label] = torch.maximum(heat[i, label], bump)
            px, py = xs + 0.5, ys + 0.5  # cell centres, in cells
            near = ((xs - cx).abs() <= radius) & ((ys - cy).abs() <= radius)
            take = near & (px > x0) & (px < x1) & (py > y0) & (py < y1) & (bump > mask[i])
            take[cy, cx] = True
            sides[i, :, take] = torch.stack([px - x0, py - y0, x1 - px, y1 - py])[:, take]
            mask[i, take] = bump[take]
    return {"heat": heat, "sides": sides, "mask": mask}


def cell_boxes(sides: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, 4, h, w) side distances in cells -> (B, h, w, 4) boxes (x0, y0, x1, y1) in pixels."""
    _, _, h, w = sides.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=sides.device), torch.arange(w, device=sides.device),
                            indexing="ij")
    px, py = xs + 0.5, ys + 0.5
    left, top, right, bottom = sides.unbind(1)
    return torch.stack([px - left, py - top, px + right, py + bottom], dim=-1) * stride


def loss(outputs: dict[str, torch.Tensor], encoded: dict[str, torch.Tensor], stride: int,
         alpha: float = 2.0, beta: float = 4.0) -> tuple[torch.Tensor, dict[str, float]]:
    """CenterNet's focal loss on the heatmap (averaged over objects) plus the generalized IoU
    loss of the boxes at the cells ``encode`` weighs (a weighted mean over those cells)."""
    from torchvision.ops import generalized_box_iou_loss

    p = outputs["heat"].sigmoid().clamp(1e-4, 1 - 1e-4)
    gt = encoded["heat"]
    peak = gt.eq(1).float()
    pos = -((1 - p) ** alpha) * torch.log(p) * peak
    neg = -((1 - gt) ** beta) * (p ** alpha) * torch.log(1 - p) * (1 - peak)
    n = peak.sum().clamp(min=1)
    focal = (pos.sum() + neg.sum()) / n
    weight = encoded["mask"]
    m = weight > 0
    if m.any():
        pred = cell_boxes(outputs["sides"], stride)[m]
        true = cell_boxes(encoded["sides"], stride)[m]
        per_cell = generalized_box_iou_loss(pred, true, reduction="none")
        giou = (weight[m] * per_cell).sum() / weight[m].sum()  # a weighted mean over cells
    else:
        giou = outputs["sides"].sum() * 0
    return focal + giou, {"focal": float(focal.detach()), "giou": float(giou.detach())}


def decode(outputs: dict[str, torch.Tensor], stride: int, top_k: int = 50, threshold: float = 0.05,
           iou: float = 0.5) -> list[dict]:
    """Outputs -> per image boxes (x0, y0, x1, y1 pixels), scores and labels after NMS."""
    from torchvision.ops import batched_nms

    heat = outputs["heat"].sigmoid()
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    b, k, h, w = heat.shape
    boxes = cell_boxes(outputs["sides"], stride).reshape(b, h * w, 4)
    results = []
    for i in range(b):
        scores, index = peaks[i].reshape(-1).topk(min(top_k, k * h * w))
        keep = scores > threshold
        scores, index = scores[keep], index[keep]
        labels, cells = index // (h * w), index % (h * w)
        chosen = boxes[i, cells]
        kept = batched_nms(chosen, scores, labels, iou)
        results.append({"boxes": chosen[kept], "scores": scores[kept], "labels": labels[kept]})
    return results
