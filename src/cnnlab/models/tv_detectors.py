"""torchvision's FCOS (Tian, Shen, Chen & He 2019, "FCOS: Fully convolutional one-stage object
detection") on our ResNet-20: the reference detector to compare ``centernet.Detector`` against on
the same backbone, data and budget.

FCOS predicts, at every location of every pyramid level, class scores (sigmoid focal loss), the
distances to the four sides of a box (GIoU loss) and a centre-ness (BCE). A location is positive
for a box if it lies inside it, within ``1.5 * size`` of its centre ("centre sampling"), and if the
box's largest side distance falls in the level's range (``4 * size``, ``8 * size``) -- the first
level has no lower bound and the last no upper one -- where ``size`` is the level's one "anchor"
(torchvision takes it equal to the stride).

Our version (torchvision's class built directly, so nothing is downloaded):
- levels: ResNet-20's layer2 (stride 2, 32x32 on 64 px images) and layer3 (stride 4, 16x16),
  brought to 64 channels by a top-down pathway without smoothing convolutions (FPN, Lin et al.
  2017); anchor sizes 2 and 4 (the strides, as in the paper), so the stride-2 level takes boxes
  whose largest side distance is below 16 px (objects up to about 28 px) and the stride-4 level
  the larger ones; ``fine=False`` keeps layer3 alone (the map our Detector reads).
- the head: one 3x3 conv + GroupNorm per branch instead of the paper's four (``num_convs``), so
  the parameters stay close to our Detector's (0.35M against 0.34M).
- torchvision's resize (to 800 px) and ImageNet normalization are switched off: the transform's
  ``min_size = max_size = image_size`` and mean 0, std 1; the backbone normalizes inside.
- labels: torchvision's FCOS has no background class (an unmatched location is all-zero in the
  focal loss), so ``num_classes`` is K and labels are 0..K-1 on the way in and out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOS, FCOSHead

from cnnlab.models.resnet import CifarResNet


class ResNetLevels(nn.Module):
    """A CifarResNet as an FCOS backbone: an OrderedDict of feature maps with ``out_channels``
    channels each (layer2 and layer3, or layer3 alone when ``fine`` is False)."""

    def __init__(self, body: CifarResNet, out_channels: int = 64, fine: bool = True):
        super().__init__()
        self.body, self.out_channels, self.fine = body, out_channels, fine
        c2, c3 = body.layer2[-1].conv2.out_channels, body.layer3[-1].conv2.out_channels
        self.lateral3 = nn.Conv2d(c3, out_channels, 1) if c3 != out_channels else nn.Identity()
        self.lateral2 = nn.Conv2d(c2, out_channels, 1) if fine else None
        self.strides = (2, 4) if fine else (4,)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        b = self.body
        x = b.normalize(x)  # (B, 3, 64, 64)
        x = F.relu(b.bn1(b.conv1(x)))  # (B, 16, 64, 64)
        x = b.layer1(x)  # (B, 16, 64, 64)
        c2 = b.layer2(x)  # (B, 32, 32, 32)
        c3 = b.layer3(c2)  # (B, 64, 16, 16)
        p3 = self.lateral3(c3)  # (B, 64, 16, 16)
        if not self.fine:
            return OrderedDict([("layer3", p3)])
        p2 = self.lateral2(c2) + F.interpolate(p3, size=c2.shape[-2:], mode="nearest")  # (B, 64, 32, 32)
        return OrderedDict([("layer2", p2), ("layer3", p3)])


class TorchvisionFCOS(nn.Module):
    """torchvision's FCOS behind the interface of our detectors: ``forward(x, targets)`` gives the
    loss dict in training, ``loss`` sums it, ``detect`` gives boxes in pixels and labels 0..K-1."""

    takes_targets = True
    """The trainer passes the targets to ``forward`` (FCOS computes its loss inside)."""

    def __init__(self, backbone: CifarResNet, num_classes: int, image_size: int, fine: bool = True,
                 num_convs: int = 1, score_thresh: float = 0.05, detections_per_img: int = 100):
        super().__init__()
        self.num_classes, self.image_size = num_classes, image_size
        levels = ResNetLevels(backbone, fine=fine)
        sizes = tuple((s,) for s in levels.strides)  # one square "anchor" per location, size = stride
        anchors = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
        head = FCOSHead(levels.out_channels, 1, num_classes, num_convs=num_convs)
        channels = backbone.in_channels
        self.fcos = FCOS(levels, num_classes, min_size=image_size, max_size=image_size,
                         image_mean=[0.0] * channels, image_std=[1.0] * channels,
                         anchor_generator=anchors, head=head, score_thresh=score_thresh,
                         detections_per_img=detections_per_img, size_divisible=max(levels.strides))

    def forward(self, x: torch.Tensor, targets: list[dict] | None = None):
        """Pixels (B, C, H, W) in [0, 1] -> in training, the dict of losses ("classification",
        "bbox_regression", "bbox_ctrness"); in eval mode, the detections (as ``detect``)."""
        if targets is not None:  # only what FCOS reads: it would resize masks and keypoints too
            targets = [{"boxes": torch.as_tensor(t["boxes"], device=x.device).float().reshape(-1, 4),
                        "labels": torch.as_tensor(t["labels"], device=x.device).long().reshape(-1)}
                       for t in targets]
        return self.fcos(list(x), targets)

    def loss(self, outputs: dict[str, torch.Tensor], targets: list[dict] | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """The sum of FCOS's losses, and each of them (``targets`` is unused: FCOS already read them)."""
        total = sum(outputs.values())
        return total, {name: float(value.detach()) for name, value in outputs.items()}

    @torch.no_grad()
    def detect(self, x: torch.Tensor, threshold: float | None = None) -> list[dict[str, torch.Tensor]]:
        """Per image: boxes (n, 4) x0, y0, x1, y1 in pixels, scores (n,) and labels (n,) in 0..K-1,
        after NMS, scores above ``score_thresh`` and at most ``detections_per_img`` of them."""
        was_training, thresh = self.training, self.fcos.score_thresh
        self.eval()
        self.fcos.score_thresh = thresh if threshold is None else threshold
        try:
            return self.fcos(list(x))
        finally:
            self.train(was_training)
            self.fcos.score_thresh = thresh


def fcos_resnet20(num_classes: int, image_size: int, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, **kw) -> TorchvisionFCOS:
    """FCOS on a fresh ResNet-20 (He et al. 2016) that normalizes with ``mean``/``std``; ``kw`` goes
    to ``TorchvisionFCOS`` (``fine``, ``num_convs``, ``score_thresh``, ``detections_per_img``)."""
    backbone = CifarResNet(depth=20, num_classes=num_classes, in_channels=3, image_size=image_size,
                           mean=mean, std=std)
    return TorchvisionFCOS(backbone, num_classes, image_size, **kw)


__all__ = ["ResNetLevels", "TorchvisionFCOS", "fcos_resnet20"]
