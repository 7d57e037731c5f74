"""fastnet: a small, fast CIFAR network in the style of airbench (Jordan 2024, arXiv 2404.00498).

A frozen 2x2 patch-whitening convolution (initialised from the training images' patch
covariance), then three groups of conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU with no
residuals, a global max-pool and a scaled linear head. Convolutions after the first start as
partial identities (Dirac initialisation), which lets a net without residuals train fast.
``bn_scale=False`` freezes the BatchNorm scales at 1, as airbench does. The recipes that train it
(configs/cifar10_fast*.yaml) add airbench's alternating flips, lookahead and 6-view test-time
augmentation; their measured accuracy and wall time are in the README and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ImageClassifier


class ConvGroup(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, bn_scale: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding="same", bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch, momentum=0.4)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding="same", bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, momentum=0.4)
        for bn in (self.bn1, self.bn2):
            bn.weight.requires_grad_(bn_scale)  # frozen at 1 when False: only the shift learns
        for conv in (self.conv1, self.conv2):
            w = conv.weight.data
            nn.init.dirac_(w[: w.size(1)])  # identity on the first in_ch outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = F.max_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x
        x = F.gelu(self.bn1(x))
        return F.gelu(self.bn2(self.conv2(x)))


class FastNet(ImageClassifier):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 widths: tuple[int, int, int] = (64, 256, 256), whiten_width: int = 0,
                 scale: float = 1 / 9, bn_scale: bool = True, whiten_eps: float = 5e-4, **kw):
        super().__init__(num_classes, in_channels, image_size, **kw)
        if len(widths) != 3 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"widths must be three positive whole numbers such as [32, 128, 128], "
                             f"not {list(widths)}")
        patch = in_channels * 2 * 2
        whiten_width = whiten_width or 2 * patch  # each eigenvector and its negative
        self.whiten = nn.Conv2d(in_channels, whiten_width, 2, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.layer1 = ConvGroup(whiten_width, widths[0], bn_scale)
        self.layer2 = ConvGroup(widths[0], widths[1], bn_scale)
        self.layer3 = ConvGroup(widths[1], widths[2], bn_scale)
        self.fc = nn.Linear(widths[2], num_classes, bias=False)
        self.scale = scale
        self.whiten_eps = whiten_eps
        self.num_features = widths[2]

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float | None = None) -> None:
        """Set the whitening filters from 2x2 patches of training images in [0, 1].

        Each filter is an eigenvector of the patch covariance divided by sqrt(eigenvalue + eps):
        ``eps`` caps how much the faintest patch directions (often compression noise) are
        amplified."""
        eps = self.whiten_eps if eps is None else eps
        x = self.normalize(images.float())
        c = x.shape[1]
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, c * 4).double()
        patches = patches - patches.mean(0)
        eigvals, eigvecs = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigvecs.T / (eigvals + eps).sqrt()[:, None]).view(-1, c, 2, 2).flip(0)
        half = self.whiten.out_channels // 2
        w = torch.cat([filters[:half], -filters[:half]])
        self.whiten.weight.copy_(w.float())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)  # (B, C, 32, 32)
        x = F.gelu(self.whiten(x))  # (B, 24, 31, 31)
        x = self.layer1(x)  # (B, 64, 15, 15)
        x = self.layer2(x)  # (B, 256, 7, 7)
        return self.layer3(x)  # (B, 256, 3, 3)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # Global max pooling, in fp32: compiled by inductor under bf16 autocast, amax on the bf16
        # map gave NaN gradients in every layer below it (torch 2.11 CUDA, 2.14 CPU). In eager
        # mode the fp32 copy changes nothing: the same maxima, ties share the gradient as before.
        x = features.float().amax(dim=(2, 3))  # (B, 256)
        return x if pre_logits else self.fc(x) * self.scale  # (B, num_classes)
