"""Batch augmentation on tensors, on whatever device trains (as in airbench), not per-image PIL.

All functions take a float batch (B, C, H, W) and a ``torch.Generator`` so that a seed fixes
every random choice.
"""

from __future__ import annotations

import torch


def random_translate(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad by ``pad`` pixels (reflect) and crop back at a random offset per image.

    On the CPU images are grouped by their offset, so the work is one slice copy per offset
    ((2 * pad + 1) ** 2 of them) rather than a gather with an index per pixel. On a GPU that
    grouping would wait for the device at every offset, so it is one gather there; both give
    the same pixels for the same draws."""
    if pad == 0:
        return x
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, (2 * pad + 1) ** 2, (b,), generator=gen)
    if x.device.type != "cpu":
        shifts = shifts.to(x.device, non_blocking=True)
        return crop_at(padded, shifts // (2 * pad + 1), shifts % (2 * pad + 1), h, w)
    out = torch.empty_like(x)
    for s in shifts.unique().tolist():
        sel = torch.nonzero(shifts == s).flatten()
        dy, dx = divmod(s, 2 * pad + 1)
        out[sel] = padded[sel, :, dy: dy + h, dx: dx + w]
    return out


def crop_at(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Each image's h x w window whose top-left corner is (dy, dx): one gather for the batch."""
    rows = (dy[:, None] + torch.arange(h, device=padded.device))[:, :, None]  # (B, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=padded.device))[:, None, :]  # (B, 1, w)
    batch = torch.arange(len(padded), device=padded.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()  # (B, h, w, C) -> NCHW


def random_flip(x: torch.Tensor, gen: torch.Generator, mask: torch.Tensor | None = None,
                ) -> torch.Tensor:
    """Flip each image left-right with probability 1/2, or where ``mask`` (B,) is True."""
    if mask is None:
        mask = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(mask.to(x.device, non_blocking=True)[:, None, None, None], x.flip(-1), x)


def alternating_flip_mask(n: int, epoch: int, seed: int) -> torch.Tensor:
    """Which of ``n`` images to flip in ``epoch``: a random half in even epochs (the same half
    every time, fixed by ``seed``) and the other half in odd epochs (airbench's alternating flip)."""
    phase = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
    return phase ^ bool(epoch % 2)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Erase one random ``size`` x ``size`` square per image (DeVries & Taylor 2017)."""
    if size == 0:
        return x
    b, _, h, w = x.shape
    # The square's top-left corner; squares centred near the border are cut by it.
    top = torch.randint(0, h, (b,), generator=gen).to(x.device, non_blocking=True)[:, None, None] - size // 2
    left = torch.randint(0, w, (b,), generator=gen).to(x.device, non_blocking=True)[:, None, None] - size // 2
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    inside = (yy >= top) & (yy < top + size) & (xx >= left) & (xx < left + size)  # (B, H, W)
    return x.masked_fill(inside[:, None], 0.0)


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 0, flip: bool = False,
            cutout_size: int = 0, flip_mask: torch.Tensor | None = None) -> torch.Tensor:
    x = random_translate(x, pad, gen)
    if flip:
        x = random_flip(x, gen, flip_mask)
    return cutout(x, cutout_size, gen)


def progressive_size(full: int, start: int, epochs: int, epoch: int) -> int:
    """Image side for ``epoch`` under progressive resizing: ``start`` at epoch 0, growing
    linearly to ``full`` at epoch ``epochs`` (even sides only), ``full`` from then on or when
    ``start`` is 0. Early epochs cost about (side / full)^2 of a full one."""
    if not start or epoch >= epochs or start >= full:
        return full
    side = start + (full - start) * epoch / epochs
    return min(full, 2 * round(side / 2))


def resize_batch(x: torch.Tensor, side: int) -> torch.Tensor:
    """Downscale a batch (B, C, H, W) to side x side (antialiased bilinear); same side: as is."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear",
                                           antialias=True, align_corners=False)
