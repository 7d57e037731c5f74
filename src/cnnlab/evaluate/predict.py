"""Batched inference over an in-memory uint8 image tensor."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 500,
                  tta: bool = False, device: torch.device | str = "cpu",
                  channels_last: bool = False, y: torch.Tensor | None = None,
                  ) -> tuple[np.ndarray, float | None]:
    """Softmax probabilities (N, K) for uint8 images (N, C, H, W), and the mean loss if ``y``.

    With ``tta`` the probabilities are averaged with those of the left-right flipped images.
    """
    model.eval()
    probs, loss_sum = [], 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start: start + batch_size].to(device, non_blocking=True).float().div_(255)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        logits = model(xb).float()
        if tta:
            logits = torch.stack([logits, model(xb.flip(-1)).float()])
            p = logits.softmax(-1).mean(0)
        else:
            p = logits.softmax(-1)
        if y is not None:
            yb = y[start: start + batch_size].to(device)
            loss_sum += float(F.nll_loss(p.clamp_min(1e-12).log(), yb, reduction="sum"))
        probs.append(p.cpu())
    out = torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32)
    return out, (loss_sum / len(x) if y is not None and len(x) else None)
