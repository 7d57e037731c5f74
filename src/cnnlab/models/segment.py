"""Semantic segmentation: a small U-Net-style decoder on a CIFAR ResNet backbone.

Fully convolutional networks (Long, Shelhamer & Darrell 2015, "Fully convolutional networks
for semantic segmentation") turn a classifier into a per-pixel classifier and recover detail
by fusing the coarse, semantic deep map with finer, shallower ones ("skips"). U-Net
(Ronneberger, Fischer & Brox 2015) makes the fusion symmetric: each decoder stage upsamples,
concatenates the encoder map of the same resolution and convolves.

Here the encoder is a ``CifarResNet`` (its stem and ``layer1`` at full resolution, ``layer2``
at 1/2, ``layer3`` at 1/4) and the decoder has two such stages (bilinear x2, concatenate,
two 3x3 conv-BN-ReLU layers), then a 1x1 convolution to the class logits at input resolution.
For ResNet-20 (16/32/64 channels) the decoder adds about 47k parameters to the backbone's 270k.
Trained with per-pixel cross-entropy; ``segment`` is the per-pixel argmax. The backbone's
classifier ``fc`` is replaced by ``nn.Identity`` (it would get no gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.base import ImageClassifier
from cnnlab.models.resnet import CifarResNet


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """One U-Net decoder stage: upsample to the skip's size, concatenate it, two 3x3 convs."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([x, skip], dim=1)
        x = self.conv1(x)
        return self.conv2(x)


def drop_classifier(backbone: ImageClassifier) -> None:
    """Replace the backbone's final linear layer, which a dense head never reads, by ``Identity``:
    DDP wants a gradient for every weight."""
    parent, _, attr = backbone.classifier_name.rpartition(".")
    setattr(backbone.get_submodule(parent) if parent else backbone, attr, nn.Identity())


def check_cifar_resnet(backbone: nn.Module, head: str) -> None:
    if not isinstance(backbone, CifarResNet):
        raise CnnlabError(f"{head} reads the stride 1, 2 and 4 maps of a CIFAR ResNet (resnet20, resnet56); "
                          f"got {type(backbone).__name__}: choose one of those backbones")


def resnet_pyramid(backbone: CifarResNet, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A CIFAR ResNet's maps at strides 1, 2 and 4: (B, w, H, W), (B, 2w, H/2, W/2), (B, 4w, H/4, W/4)."""
    x = backbone.normalize(x)  # (B, 3, H, W)
    x = F.relu(backbone.bn1(backbone.conv1(x)))  # (B, 16, H, W)
    s1 = backbone.layer1(x)  # (B, 16, H, W)
    s2 = backbone.layer2(s1)  # (B, 32, H/2, W/2)
    s4 = backbone.layer3(s2)  # (B, 64, H/4, W/4)
    return s1, s2, s4


class Segmenter(nn.Module):
    """A CIFAR ResNet encoder and a two-stage U-Net decoder: logits (B, C, H, W), C with background."""

    takes_targets = False

    def __init__(self, backbone: CifarResNet, num_classes: int, widths: Sequence[int] = (32, 16)):
        super().__init__()
        check_cifar_resnet(backbone, "the U-Net segmenter")
        drop_classifier(backbone)
        self.backbone = backbone
        self.num_classes = num_classes
        self.image_size = backbone.image_size
        c1, c2, c4 = (backbone.layer1[-1].bn2.num_features, backbone.layer2[-1].bn2.num_features,
                      backbone.layer3[-1].bn2.num_features)
        self.up2 = UpBlock(c4, c2, widths[0])
        self.up1 = UpBlock(widths[0], c1, widths[1])
        self.classifier = nn.Conv2d(widths[1], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1, s2, x = resnet_pyramid(self.backbone, x)  # (B, 16, H, W), (B, 32, H/2, W/2), (B, 64, H/4, W/4)
        x = self.up2(x, s2)  # (B, 32, H/2, W/2)
        x = self.up1(x, s1)  # (B, 16, H, W)
        return self.classifier(x)  # (B, C, H, W)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-pixel cross-entropy against a (B, H, W) class map (0 background, 1 + class)."""
        ce = F.cross_entropy(outputs, targets.long())
        return ce, {"ce": float(ce.detach())}

    @torch.no_grad()
    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [0, 1] -> the class map (B, H, W); call ``eval()`` first."""
        return self(x).argmax(dim=1)


def unet_resnet20(num_classes: int, image_size: int, in_channels: int = 3,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Segmenter:
    """A U-Net-style segmenter on ResNet-20; ``num_classes`` counts the background class."""
    backbone = CifarResNet(depth=20, num_classes=num_classes, in_channels=in_channels,
                           image_size=image_size, mean=mean, std=std)
    return Segmenter(backbone, num_classes)
