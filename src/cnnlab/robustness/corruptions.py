"""Common corruptions in the style of CIFAR-10-C (Hendrycks & Dietterich 2019), five
severities each, on batches of images in [0, 1]. Severity parameters follow the paper's
CIFAR settings where they transfer to any image size."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def gaussian_noise(x, s, g):
    sigma = [0.04, 0.06, 0.08, 0.09, 0.10][s - 1]
    return x + sigma * torch.randn(x.shape, generator=g)


def shot_noise(x, s, g):
    lam = [500, 250, 100, 75, 50][s - 1]
    return torch.poisson(x * lam, generator=g) / lam


def blur(x, s, g):
    sigma = [0.4, 0.6, 0.7, 0.8, 1.0][s - 1] * x.shape[-1] / 32
    k = 2 * int(3 * sigma) + 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


def contrast(x, s, g):
    c = [0.75, 0.5, 0.4, 0.3, 0.15][s - 1]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def brightness(x, s, g):
    return x + [0.05, 0.1, 0.15, 0.2, 0.3][s - 1]


def jpeg(x, s, g):
    quality = [80, 65, 58, 50, 40][s - 1]
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for img in u8:
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, "JPEG", quality=quality)
        dec = np.array(Image.open(buf))
        out.append(dec[..., None] if dec.ndim == 2 else dec)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def pixelate(x, s, g):
    factor = [0.95, 0.9, 0.85, 0.75, 0.65][s - 1]
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * factor)), max(1, int(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "blur": blur,
    "contrast": contrast, "brightness": brightness, "jpeg": jpeg, "pixelate": pixelate,
}


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corrupt a batch in [0, 1]; the result is clipped back to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return CORRUPTIONS[name](x.float(), severity, g).clamp(0, 1)
