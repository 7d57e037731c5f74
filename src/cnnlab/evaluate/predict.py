"""Batched inference over an in-memory uint8 image tensor."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.config import TrainConfig
from cnnlab.env import cpu_flags

BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
"""CPU flags of native bf16 arithmetic: Intel's AMX tiles (Sapphire Rapids and later: a
fastnet training step 2.4-2.8x faster than fp32) and AVX512-BF16 dot products (Cooper Lake,
AMD Zen 4 and later: 1.6-1.8x on a 2-core EPYC, benchmarks/step_speed.py)."""


def use_bf16(cfg: TrainConfig, device: torch.device | str) -> bool:
    """Whether a run computes in bf16 (autocast; weights stay fp32). ``auto`` picks bf16 on
    CUDA and on CPUs with bf16 arithmetic (``BF16_CPU_FLAGS``), where oneDNN runs bf16
    convolutions 1.6-2.8x faster than fp32; elsewhere (bf16 would be converted in software)
    it keeps fp32."""
    if cfg.precision != "auto":
        return cfg.precision == "bf16"
    return torch.device(device).type == "cuda" or bool(BF16_CPU_FLAGS & cpu_flags())


def tta_level(cfg: TrainConfig) -> int:
    """The TTA level a run's config asks for, 0 on permuted pixels (a shifted or mirrored
    permuted image is not a view of the same image)."""
    return 0 if cfg.permute_pixels else cfg.tta


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 500,
                  tta: int = 0, device: torch.device | str = "cpu",
                  channels_last: bool = False, y: torch.Tensor | None = None, flip: bool = True,
                  bf16: bool = False) -> tuple[np.ndarray, float | None]:
    """Softmax probabilities (N, K) for uint8 images (N, C, H, W), and the mean loss if ``y``.

    ``tta`` (test-time augmentation) averages the probabilities of several views of each image:
    1 = the image and its mirror image; 2 = those two (half the weight) and both of them shifted
    one pixel up-left and one pixel down-right (the other half), as in airbench. With
    ``flip=False`` (digits, MNIST: a mirrored 2 is not a 2) no view is mirrored: level 1 is
    the image alone, level 2 the image (half) and its two shifts (a quarter each). ``bf16``
    runs the model under bf16 autocast; the probabilities are averaged in fp32.
    """
    model.eval()
    probs, loss_sum = [], 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start: start + batch_size].to(device, non_blocking=True).float().div_(255)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
            p = sum(w * model(view).float().softmax(-1) for w, view in tta_views(xb, int(tta), flip))
        if y is not None:
            yb = y[start: start + batch_size].to(device)
            loss_sum += float(F.nll_loss(p.clamp_min(1e-12).log(), yb, reduction="sum"))
        probs.append(p.cpu())
    out = torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32)
    return out, (loss_sum / len(x) if y is not None and len(x) else None)


def tta_views(x: torch.Tensor, level: int, flip: bool = True) -> list[tuple[float, torch.Tensor]]:
    """(weight, batch) pairs whose weights sum to 1; level 0 is the batch itself."""
    base = [(0.5, x), (0.5, x.flip(-1))] if flip else [(1.0, x)]
    if level <= 0 or (level == 1 and not flip):
        return [(1.0, x)]
    if level == 1:
        return base
    h, w = x.shape[-2:]
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]  # content moves down-right, up-left
    shifted = [s.contiguous(memory_format=fmt or torch.contiguous_format) for s in shifted]
    views = [v for s in shifted for v in ((s, s.flip(-1)) if flip else (s,))]
    return [(0.5 * wt, v) for wt, v in base] + [(0.5 / len(views), v) for v in views]
