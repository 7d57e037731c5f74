"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
document recognition"), in its common modern reading.

The paper's network reads 32x32 images: C1 6@28x28 (5x5) -> S2 6@14x14 -> C3 16@10x10 (5x5)
-> S4 16@5x5 -> C5 120 -> F6 84 -> 10 outputs. We keep that layout (average pooling, tanh)
with a full C3 connection table and a linear output layer instead of RBF units: 61,706
parameters for 10 classes, the lecture's "about 60k". Inputs of another size are resized to
32x32 first, so the parameter count is the paper's whatever the dataset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ImageClassifier


class LeNet5(ImageClassifier):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32, **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)  # C1
        self.pool1 = nn.AvgPool2d(2)  # S2
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)  # C3
        self.pool2 = nn.AvgPool2d(2)  # S4
        self.fc1 = nn.Linear(16 * 5 * 5, 120)  # C5
        self.fc2 = nn.Linear(120, 84)  # F6
        self.fc = nn.Linear(84, num_classes)
        self.num_features = 84

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        x = self.pool1(torch.tanh(self.conv1(x)))  # (B, 6, 14, 14)
        return self.pool2(torch.tanh(self.conv2(x)))  # (B, 16, 5, 5)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.tanh(self.fc1(features.flatten(1)))  # (B, 120)
        x = torch.tanh(self.fc2(x))  # (B, 84)
        return x if pre_logits else self.fc(x)  # (B, num_classes)
