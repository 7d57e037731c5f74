"""The surface every cnnlab model shares (as in timm).

Models take images in [0, 1] and normalize inside, so attacks, explanations and the web app
all work in pixel space. ``forward(x) = forward_head(forward_features(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """Base class: per-channel normalization, then ``forward_features``, then ``forward_head``."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        mean = torch.tensor(mean if mean is not None else [0.5] * in_channels, dtype=torch.float32)
        std = torch.tensor(std if std is not None else [0.25] * in_channels, dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1], shape (B, C, H, W) -> pooled features (B, D)."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, D) -> logits (B, num_classes)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def first_layer(self) -> nn.Module:
        """The first layer with weights (for filter pictures and first-layer parameter counts)."""
        return next(m for m in self.modules() if isinstance(m, nn.Conv2d | nn.Linear))
