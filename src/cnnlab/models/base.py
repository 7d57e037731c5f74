"""The surface every cnnlab model shares (as in timm).

Models take images in [0, 1] and normalize inside, so attacks, explanations and the web app
all work in pixel space. Every model splits into two halves:

    forward_features(x)                 -> the last convolutional feature map (B, C, h, w)
    forward_head(f)                     -> logits (B, num_classes): pool, (hidden layers), classify
    forward_head(f, pre_logits=True)    -> the pooled embedding (B, num_features)
    forward(x) = forward_head(forward_features(x));  embed(x) = the embedding

so Grad-CAM, segmentation and detection heads read ``forward_features`` without hooks, and the
CNN tree and transfer learning swap heads with ``reset_classifier``. A model without
convolutions (the MLP) returns its last hidden layer as a (B, D, 1, 1) map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """Base class: per-channel normalization, then ``forward_features``, then ``forward_head``."""

    classifier_name = "fc"
    """The attribute path of the final linear layer (``get_classifier``)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.num_features = 0  # set by subclasses: the embedding size
        mean = torch.tensor(mean if mean is not None else [0.5] * in_channels, dtype=torch.float32)
        std = torch.tensor(std if std is not None else [0.25] * in_channels, dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1], shape (B, C, H, W) -> the last feature map (B, C', h, w)."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits (B, num_classes), or the pooled embedding if ``pre_logits``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding the classifier reads: (B, num_features)."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def get_classifier(self) -> nn.Linear:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs."""
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        parent, _, attr = self.classifier_name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, attr, new)
        self.num_classes = num_classes

    def first_layer(self) -> nn.Module:
        """The first layer with weights (for filter pictures and first-layer parameter counts)."""
        return next(m for m in self.modules() if isinstance(m, nn.Conv2d | nn.Linear))
