"""Batch augmentation on tensors, on whatever device trains (as in airbench), not per-image PIL.

All functions take a float batch (B, C, H, W) and a ``torch.Generator`` so that a seed fixes
every random choice.
"""

from __future__ import annotations

import torch


def random_translate(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad by ``pad`` pixels (reflect) and crop back at a random offset per image.

    Images are grouped by their offset, so the work is one slice copy per offset
    ((2 * pad + 1) ** 2 of them) rather than a gather with an index per pixel."""
    if pad == 0:
        return x
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, (2 * pad + 1) ** 2, (b,), generator=gen)
    out = torch.empty_like(x)
    for s in shifts.unique().tolist():
        sel = torch.nonzero(shifts == s).flatten().to(x.device)
        dy, dx = divmod(s, 2 * pad + 1)
        out[sel] = padded[sel, :, dy: dy + h, dx: dx + w]
    return out


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2."""
    flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, x.flip(-1), x)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Erase one random ``size`` x ``size`` square per image (DeVries & Taylor 2017)."""
    if size == 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=gen).to(x.device)[:, None, None]
    cx = torch.randint(0, w, (b,), generator=gen).to(x.device)[:, None, None]
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    inside = ((yy - cy).abs() <= size // 2) & ((xx - cx).abs() <= size // 2)  # (B, H, W)
    return x.masked_fill(inside[:, None], 0.0)


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 0, flip: bool = False,
            cutout_size: int = 0) -> torch.Tensor:
    x = random_translate(x, pad, gen)
    if flip:
        x = random_flip(x, gen)
    return cutout(x, cutout_size, gen)
