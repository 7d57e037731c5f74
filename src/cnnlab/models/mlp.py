"""A multi-layer perceptron: the baseline that ignores where pixels are.

Its first layer has one weight per input pixel per hidden unit, and it would do just as well
on images whose pixels were all shuffled by one fixed permutation.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import ImageClassifier


class MLP(ImageClassifier):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 hidden: tuple[int, ...] = (512, 256), dropout: float = 0.1, **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.features = nn.Sequential(*layers)
        self.num_features = width
        self.fc = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)  # (B, C, H, W)
        x = self.features(x)  # (B, hidden[-1])
        return x[:, :, None, None]  # (B, hidden[-1], 1, 1): no spatial map, one "pixel"

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = features.flatten(1)  # (B, hidden[-1])
        return x if pre_logits else self.fc(x)  # (B, num_classes)
