"""Adversarial training: each batch is replaced by adversarial examples before the step.

- ``pgd``: Madry et al. 2018, PGD with random start (default 7 steps of 2.5 * eps / steps).
- ``fgsm-rs``: Wong, Rice & Kolter 2020 ("Fast is better than free"), one FGSM step of
  1.25 * eps from a uniform random start.
The model stays in training mode while the examples are made, as in both papers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def adversarial_batch(model, x: torch.Tensor, y: torch.Tensor, method: str, eps: float,
                      steps: int = 7, alpha: float = 0.0) -> torch.Tensor:
    if method == "fgsm-rs":
        steps, alpha = 1, alpha or 1.25 * eps
    else:
        alpha = alpha or 2.5 * eps / steps
    delta = torch.empty_like(x).uniform_(-eps, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
        (g,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * g.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()
