"""What every image generator of task generate shares, a GAN (cnnlab.models.gan) or a diffusion
model (cnnlab.models.diffusion): noise to start from, labels to ask for, a seeded ``sample``,
the generated side, and the gradient averaging that data-parallel training needs when a model
takes its own training step.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def generated_side(image_size: int) -> int:
    """The generated side: the smallest 4 * 2**k (k >= 1) at least ``image_size``."""
    return 4 * 2 ** max(1, math.ceil(math.log2(image_size / 4)))


class ImageGenerator(nn.Module):
    """What every generator of task generate shares (a GAN, a diffusion model): noise, labels to
    ask for, and ``sample``, which draws the same images for one seed. A subclass sets
    ``latent_dim``, ``conditional``, ``num_classes``, ``in_channels`` and ``image_size`` and
    defines ``generate(z, y)`` (images in [0, 1]), ``parameter_counts``, and for the trainer
    ``train_step`` (its own step) and ``optimizer_groups``."""

    takes_targets = False
    final_samples = 10_000
    """Samples whose classes the final label histogram counts (cnnlab.tasks.generate)."""

    def noise(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def random_labels(self, n: int, device=None) -> torch.Tensor | None:
        return torch.randint(self.num_classes, (n,), device=device) if self.conditional else None

    def between(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Points on the way from noise ``a`` to noise ``b`` (``t`` in [0, 1]): a straight line."""
        return a * (1 - t) + b * t

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, labels: torch.Tensor | None = None,
               batch_size: int = 500) -> torch.Tensor:
        """``n`` images as uint8 (N, C, H, W), the same for one seed (in eval mode: a GAN's
        BatchNorm with its running statistics). Labels default to cycling through the classes."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        g = torch.Generator().manual_seed(seed)
        z = self.noise(n, g)
        if labels is None and self.conditional:
            labels = torch.arange(n) % self.num_classes
        out = []
        for i in range(0, n, batch_size):
            y = labels[i: i + batch_size].to(device) if labels is not None else None
            x = self.generate(z[i: i + batch_size].to(device), y)
            out.append((x * 255).round().to(torch.uint8).cpu())
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.in_channels, self.image_size,
                                                      self.image_size, dtype=torch.uint8)


def world() -> tuple[int, int]:
    """(rank, world size) of data-parallel training; (0, 1) in one process."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(net: nn.Module, size: int) -> None:
    """Under data-parallel training, each gradient of ``net`` averaged over the ranks (in one
    flat all-reduce), so every rank takes the same step. A GAN does this itself: DDP averages
    in the backward of its wrapper's one forward, and a GAN step is two steps around two
    networks that call each other."""
    if size == 1:
        return
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([gr.flatten() for gr in grads])
    torch.distributed.all_reduce(flat)
    flat /= size
    offset = 0
    for gr in grads:
        gr.copy_(flat[offset: offset + gr.numel()].view_as(gr))
        offset += gr.numel()
