"""Which training images drove a prediction: TracIn over saved checkpoints, and neighbours.

TracIn (Pruthi et al. 2020) traces gradient descent: the influence of a training image z on
a test image z' is the sum over saved checkpoints t of lr_t * grad L(z) . grad L(z'). Positive:
training on z lowered the loss of z' (a proponent); negative: raised it (an opponent). Captum's
TracInCPFast takes the gradients of the last linear layer only, where they factorise into
(dL/dlogits) x (the layer's input), so scoring every training image costs one forward pass
per checkpoint. The self-influence of z (its own gradient norm, summed the same way) is large
for images the model keeps having to learn: mislabelled ones, typically.

Nearest neighbours in the embedding are the other, model-agnostic answer: the training images
the final model sees as most alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class _Scaled(Dataset):
    """uint8 images and labels served as ([0, 1] floats, labels), a whole batch per fetch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i].float() / 255, self.y[i]

    def __getitems__(self, idx: list[int]):
        idx_t = torch.as_tensor(idx)
        return self.x[idx_t].float() / 255, self.y[idx_t]


def _identity(batch):
    return batch


def tracin(model: nn.Module, classifier: nn.Linear, checkpoints: Sequence[str],
           load: Callable[[nn.Module, str], float], train_x: torch.Tensor, train_y: torch.Tensor,
           batch_size: int = 500):
    """Captum's TracInCPFast over ``checkpoints`` (``load(model, path)`` loads one and returns
    its learning rate; never torch.load), scoring the uint8 training images (N, C, H, W)."""
    from captum.influence import TracInCPFast

    loader = DataLoader(_Scaled(train_x, train_y), batch_size=batch_size, shuffle=False,
                        collate_fn=_identity)
    model.eval()
    return TracInCPFast(model, classifier, loader, list(checkpoints), checkpoints_load_func=load,
                        loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=batch_size)


def self_influence(tracer) -> np.ndarray:
    """TracIn self-influence of every training image (N,): high means hard to learn."""
    with torch.no_grad():
        return tracer.self_influence(outer_loop_by_checkpoints=True).double().numpy()


def proponents(tracer, x: torch.Tensor, target: torch.Tensor, k: int,
               opponents: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The k training images that pushed hardest toward (or against) ``target`` for each
    uint8 image in ``x``: (indices (M, k), influence scores (M, k))."""
    idx, scores = tracer.influence((x.float() / 255, target), k=k, proponents=not opponents)
    return idx.numpy(), scores.double().numpy()


def nearest(train_emb: np.ndarray, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k training images nearest each query in the embedding, by cosine similarity:
    (indices (M, k), similarities (M, k)), most similar first."""
    train = nn.functional.normalize(torch.as_tensor(train_emb, dtype=torch.float32), dim=1)
    query = nn.functional.normalize(torch.as_tensor(query_emb, dtype=torch.float32), dim=1)
    sims, idx = (query @ train.T).topk(min(k, len(train)), dim=1)
    return idx.numpy(), sims.double().numpy()
