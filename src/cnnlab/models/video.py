"""Action recognition on short clips: a clip of T RGB frames arrives as one image of 3T
channels (frames stacked along channels, as two-stream networks stack optical flow), so
clips flow through the classifier's data, trainer and reports unchanged.

- ``FramePool``: the baseline. One small 2D CNN reads every frame on its own and the frames'
  feature maps are averaged over time. An average forgets order, so a clip and the same clip
  played backwards look alike: it cannot tell left from right, grow from shrink, or clockwise
  from anticlockwise, whatever it learns.
- ``R2Plus1D``: sees motion. Each 3D convolution is split into a spatial (1x3x3) and a temporal
  (3x1x1) one, the (2+1)D factorization of Tran et al. 2018 ("A closer look at spatiotemporal
  convolutions for action recognition"), so order and direction of change are in its features.

Both pool to a (B, C, h, w) feature map, so Grad-CAM and the other per-image tools apply.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import ImageClassifier


def conv_bn(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


def frame_channels(in_channels: int) -> int:
    """Channels per frame: 3 (RGB) when the stacked channels divide by 3, else 1 (grey)."""
    return 3 if in_channels % 3 == 0 else 1


class ClipClassifier(ImageClassifier):
    """What both clip models share: three blocks (``layer1..3``, the first two halving the
    image), a linear classifier on the pooled map, and the clip's frame layout."""

    def __init__(self, block, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 widths: tuple[int, int, int] = (16, 32, 64), **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        self.rgb = frame_channels(in_channels)
        self.frames = in_channels // self.rgb
        a, b, c = widths
        self.layer1, self.layer2 = block(self.rgb, a, True), block(a, b, True)  # each halves H and W
        self.layer3 = block(b, c, False)
        self.fc = nn.Linear(c, num_classes)
        self.num_features = c

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = features.mean(dim=(2, 3))  # (B, 64)
        return x if pre_logits else self.fc(x)


class FramePool(ClipClassifier):
    """Per-frame CNN (3 conv layers) -> the average feature map over frames -> linear."""

    def __init__(self, **kw):
        super().__init__(conv_bn, **kw)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = self.normalize(x).reshape(b * self.frames, self.rgb, h, w)  # (B*T, 3, H, W): frames apart
        x = self.layer1(x)  # (B*T, 16, H/2, W/2)
        x = self.layer2(x)  # (B*T, 32, H/4, W/4)
        x = self.layer3(x)  # (B*T, 64, H/4, W/4)
        return x.reshape(b, self.frames, *x.shape[1:]).mean(1)  # (B, 64, H/4, W/4): order forgotten


class Conv2Plus1D(nn.Sequential):
    """A spatial 1x3x3 convolution, then a temporal 3x1x1 one, each with BatchNorm and ReLU."""

    def __init__(self, c_in: int, c_out: int, pool: bool):
        super().__init__(
            nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1), bias=False),  # space
            nn.BatchNorm3d(c_out), nn.ReLU(),
            nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0), bias=False),  # time
            nn.BatchNorm3d(c_out), nn.ReLU(),
            *([nn.MaxPool3d((1, 2, 2))] if pool else []))


class R2Plus1D(ClipClassifier):
    """Three (2+1)D blocks over (time, height, width) -> the feature map averaged over time -> linear."""

    def __init__(self, **kw):
        super().__init__(Conv2Plus1D, **kw)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = self.normalize(x).reshape(b, self.frames, self.rgb, h, w).transpose(1, 2)  # (B, 3, T, H, W)
        x = self.layer1(x)  # (B, 16, T, H/2, W/2)
        x = self.layer2(x)  # (B, 32, T, H/4, W/4)
        x = self.layer3(x)  # (B, 64, T, H/4, W/4)
        return x.mean(2)  # (B, 64, H/4, W/4)
