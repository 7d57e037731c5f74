"""The milestones between LeNet-5 and ResNet, in CIFAR-sized readings (32x32 inputs; others
are resized to 32x32 first, as LeNet-5 does, so a model's size does not depend on the data).

- ``AlexNet`` (Krizhevsky, Sutskever & Hinton 2012): five convolutions with ReLU and max
  pooling, then a dropout MLP head. The paper's 11x11 stride-4 first layer reads 224x224
  photos; at 32x32 the first layer is 5x5 stride 1 and the head 1,024 wide (not 4,096).
- ``VGG11`` (Simonyan & Zisserman 2014, configuration A): only 3x3 convolutions, stacked, the
  width doubling after each of five max-poolings (64 to 512), with BatchNorm (the ``_bn``
  variant everyone trains today) and one linear classifier on the 1x1 map.
- ``Inception`` (Szegedy et al. 2014, GoogLeNet's module): each block runs 1x1, 3x3 and 5x5
  convolutions and a pooled path side by side and concatenates them, the 1x1 convolutions
  first shrinking the channels so the wide kernels stay cheap; a stem, four blocks (a max
  pooling between each pair), global average pooling and one linear layer.

For the published weights of the full-size networks, use timm's (``timm:vgg11_bn`` takes
torchvision's ``vgg11_bn-*.pth`` through ``--pretrained``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ImageClassifier

SIDE = 32


class _Resized(ImageClassifier):
    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if x.shape[-2:] != (SIDE, SIDE):
            x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
        return x


def _conv(a: int, b: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(a, b, k, padding=k // 2), nn.ReLU(inplace=True)]


def _conv_bn(a: int, b: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, k, padding=k // 2, bias=False), nn.BatchNorm2d(b),
                         nn.ReLU(inplace=True))


class AlexNet(_Resized):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 hidden: int = 1024, **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        self.features = nn.Sequential(
            *_conv(in_channels, 64, 5), nn.MaxPool2d(2),  # (64, 16, 16)
            *_conv(64, 192, 5), nn.MaxPool2d(2),  # (192, 8, 8)
            *_conv(192, 384, 3), *_conv(384, 256, 3), *_conv(256, 256, 3),
            nn.MaxPool2d(2))  # (256, 4, 4)
        self.hidden = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 4 * 4, hidden), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.fc = nn.Linear(hidden, num_classes)
        self.num_features = hidden

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self._input(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(features.flatten(1))
        return x if pre_logits else self.fc(x)


VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(_Resized):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        layers, c = [], in_channels
        for v in VGG11:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [_conv_bn(c, v, 3)]
                c = v
        self.features = nn.Sequential(*layers)  # (512, 1, 1) after five poolings of 32x32
        self.fc = nn.Linear(512, num_classes)
        self.num_features = 512

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self._input(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = features.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)


class InceptionBlock(nn.Module):
    """Four paths over the same input, concatenated: 1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max
    pooling then 1x1. The 1x1 convolutions before the wide kernels cut their cost."""

    def __init__(self, c_in: int, c1: int, c3: tuple[int, int], c5: tuple[int, int], pool: int):
        super().__init__()
        self.b1 = _conv_bn(c_in, c1, 1)
        self.b3 = nn.Sequential(_conv_bn(c_in, c3[0], 1), _conv_bn(c3[0], c3[1], 3))
        self.b5 = nn.Sequential(_conv_bn(c_in, c5[0], 1), _conv_bn(c5[0], c5[1], 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv_bn(c_in, pool, 1))
        self.out_channels = c1 + c3[1] + c5[1] + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class Inception(_Resized):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        self.stem = _conv_bn(in_channels, 64, 3)  # (64, 32, 32)
        a = InceptionBlock(64, 32, (48, 64), (8, 16), 16)  # 3a-like, 128 channels
        b = InceptionBlock(a.out_channels, 64, (64, 96), (16, 48), 32)  # 240
        c = InceptionBlock(b.out_channels, 96, (64, 128), (16, 48), 48)  # 320
        d = InceptionBlock(c.out_channels, 128, (96, 160), (24, 64), 64)  # 416
        self.blocks = nn.Sequential(nn.MaxPool2d(2), a, b, nn.MaxPool2d(2), c, d)  # (416, 8, 8)
        self.fc = nn.Linear(d.out_channels, num_classes)
        self.num_features = d.out_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(self._input(x)))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = features.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)
