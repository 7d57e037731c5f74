"""Residual networks (He, Zhang, Ren & Sun 2016, "Deep residual learning for image recognition").

``resnet20`` and ``resnet56`` are the paper's CIFAR networks (Section 4.2): a 3x3 stem with 16
channels, three stages of n basic blocks with 16, 32 and 64 channels (6n + 2 layers), global
average pooling and a linear layer; shortcuts that change shape subsample and pad channels
with zeros (option A), so they add no parameters: 0.27M and 0.85M parameters.
``resnet18`` is torchvision's ImageNet ResNet-18 with the usual CIFAR stem (3x3 stride-1
convolution, no max-pool): 11.2M parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock as TVBasicBlock
from torchvision.models.resnet import ResNet as TVResNet

from cnnlab.models.base import ImageClassifier


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut; option A shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.extra = stride, planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(ImageClassifier):
    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3,
                 image_size: int = 32, width: int = 16, **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        w = [width, 2 * width, 4 * width]
        self.conv1 = nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.layer1 = self._stage(w[0], w[0], n, stride=1)
        self.layer2 = self._stage(w[0], w[1], n, stride=2)
        self.layer3 = self._stage(w[1], w[2], n, stride=2)
        self.fc = nn.Linear(w[2], num_classes)
        self.num_features = w[2]
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)  # (B, C, 32, 32)
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
        x = self.layer1(x)  # (B, 16, 32, 32)
        x = self.layer2(x)  # (B, 32, 16, 16)
        return self.layer3(x)  # (B, 64, 8, 8)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = features.mean(dim=(2, 3))  # (B, 64): global average pooling
        return x if pre_logits else self.fc(x)  # (B, num_classes)


class ResNet18(ImageClassifier):
    """torchvision's ResNet-18 with a CIFAR stem; its layers keep torchvision's names."""

    classifier_name = "net.fc"

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        net = TVResNet(TVBasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
        self.net = net
        self.num_features = 512

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = self.normalize(x)  # (B, C, 32, 32)
        x = n.relu(n.bn1(n.conv1(x)))  # (B, 64, 32, 32)
        x = n.layer1(x)  # (B, 64, 32, 32)
        x = n.layer2(x)  # (B, 128, 16, 16)
        x = n.layer3(x)  # (B, 256, 8, 8)
        return n.layer4(x)  # (B, 512, 4, 4)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = features.mean(dim=(2, 3))  # (B, 512): global average pooling
        return x if pre_logits else self.net.fc(x)  # (B, num_classes)
