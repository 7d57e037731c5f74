"""Training that looks at groups: group-balanced reweighting and Group DRO.

A spurious feature (a shape's colour that usually gives away its class) lets plain training
(ERM: the mean loss over images) do well on average and badly on the rare groups where the
feature lies. Both fixes need each training image's group; the unit is the class x group cell
(e.g. "square, other colour"), as in Sagawa et al. 2020.

- ``balance``: weight each image by the inverse size of its cell, so that every cell weighs
  the same in the loss.
- ``dro``: Group DRO (Sagawa et al. 2020, Algorithm 1). Batches are drawn with every cell
  equally likely (group-balanced sampling, as their experiments do), so each batch sees the
  rare cells; keep a distribution q over cells; at each step raise the weight of every cell by
  exp(eta x its mean loss in the batch), renormalise, and minimise the q-weighted sum of the
  cells' mean losses: the optimiser is pushed toward the worst cell. Their other ingredient,
  strong L2 (or early stopping), is the caller's weight decay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError


def cell_ids(y: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """The class x group cell of each image: label * n_groups + group."""
    return y * n_groups + groups


def group_mean_losses(losses: torch.Tensor, cells: torch.Tensor, n_cells: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss of each cell, whether the cell has images in the batch); absent cells get 0."""
    total = torch.zeros(n_cells, device=losses.device).index_add(0, cells, losses)
    count = torch.zeros(n_cells, device=losses.device).index_add(0, cells, torch.ones_like(losses))
    return total / count.clamp(min=1), count > 0


def dro_update(q: torch.Tensor, cell_losses: torch.Tensor, eta: float) -> torch.Tensor:
    """Group DRO's exponentiated-gradient step: q_g exp(eta l_g), renormalised (cells absent
    from the batch have l_g = 0 and only shrink by the renormalisation)."""
    q = q * torch.exp(eta * cell_losses.detach())
    return q / q.sum()


class ClassBalance:
    """``--balance``: every class weighs the same in training, by drawing each image with
    probability proportional to 1/|its class| (``sampler``: batches balanced on average) or by
    weighting each image's loss so (``loss``). The remedy for class imbalance that torch's
    WeightedRandomSampler and weighted cross-entropy give; here on the trainer's own batches."""

    def __init__(self, mode: str, y: torch.Tensor, n_classes: int, label_smoothing: float = 0.0):
        if mode not in ("sampler", "loss"):
            raise CnnlabError(f"balance must be sampler or loss, not {mode!r}")
        count = torch.bincount(y.cpu(), minlength=n_classes).double()
        self.mode, self.smoothing = mode, label_smoothing
        self.class_weights = torch.where(count > 0, len(y) / ((count > 0).sum() * count.clamp(min=1)), 0.0)
        self.sample_weights = self.class_weights[y.cpu()].float() if mode == "sampler" else None

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None
                 ) -> torch.Tensor:
        if self.mode == "sampler":  # the batches are balanced already
            return F.cross_entropy(logits, y, label_smoothing=self.smoothing)
        losses = F.cross_entropy(logits, y, reduction="none", label_smoothing=self.smoothing)
        w = self.class_weights.to(losses.device, losses.dtype)[y]
        return (w * losses).sum() / w.sum()


class GroupLoss:
    """The training loss for ``cfg.groups`` = balance or dro (state: Group DRO's q)."""

    def __init__(self, mode: str, y: torch.Tensor, groups: torch.Tensor, n_classes: int,
                 n_groups: int, eta: float = 0.01, label_smoothing: float = 0.0,
                 q: list[float] | None = None):
        if mode not in ("balance", "dro"):
            raise CnnlabError(f"groups must be balance or dro, not {mode!r}")
        self.mode, self.eta, self.smoothing = mode, eta, label_smoothing
        self.n_groups, self.n_cells = n_groups, n_classes * n_groups
        count = torch.bincount(cell_ids(y, groups, n_groups).cpu(), minlength=self.n_cells).double()
        # balance: every non-empty cell weighs the same; weights average 1 over the training set
        self.weights = torch.where(count > 0, len(y) / ((count > 0).sum() * count.clamp(min=1)), 0.0)
        self.q = torch.tensor(q, dtype=torch.float64) if q else torch.full(
            (self.n_cells,), 1.0 / self.n_cells, dtype=torch.float64)
        # Group DRO draws its batches with each image weighed 1/|its cell|: every cell alike
        cells = cell_ids(y, groups, n_groups).cpu()
        self.sample_weights = self.weights[cells].float() if mode == "dro" else None

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits, y, reduction="none", label_smoothing=self.smoothing)
        cells = cell_ids(y, groups, self.n_groups)
        if self.mode == "balance":
            w = self.weights.to(losses.device, losses.dtype)[cells]
            return (w * losses).sum() / w.sum()
        cell_losses, _ = group_mean_losses(losses, cells, self.n_cells)
        self.q = dro_update(self.q.to(losses.device), cell_losses.double(), self.eta)
        return (self.q.to(losses.dtype) * cell_losses).sum()
