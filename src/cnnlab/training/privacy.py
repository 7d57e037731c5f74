"""Differentially private training (DP-SGD, Abadi et al. 2016) with Opacus.

Each step samples a Poisson batch (every image joins with probability q = batch / N, as the
accountant assumes), clips each image's gradient to norm ``dp_clip``, adds Gaussian noise of
standard deviation sigma x clip, and averages. sigma is chosen by Opacus so that all the
epochs' steps together spend exactly (``dp_epsilon``, ``dp_delta``) under its RDP
accountant, which also reports the epsilon spent after every epoch. BatchNorm mixes images
within a batch, which per-image clipping cannot bound: models are made DP-compatible by
replacing it with GroupNorm (checked by Opacus's ModuleValidator), here and whenever the
weights are loaded again.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from cnnlab.errors import CnnlabError

CHANNELS_PER_GROUP = 16


def make_private_compatible(model: nn.Module) -> nn.Module:
    """The model with each BatchNorm2d(C) replaced by GroupNorm over groups of 16 channels and
    in-place activations made out-of-place, then checked by Opacus's ModuleValidator.
    (Opacus's own fix makes min(32, C) groups: with C <= 32 that is one channel per group,
    and on the 1x1 maps of fastnet's last stage every group then holds a single value,
    normalised to zero: the features vanish.)"""
    from opacus.validators import ModuleValidator

    for name, child in model.named_children():
        if getattr(child, "inplace", False):  # in-place activations break per-image gradient hooks
            child.inplace = False
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            setattr(model, name, nn.GroupNorm(max(1, c // CHANNELS_PER_GROUP), c))
        else:
            make_private_compatible(child)
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise CnnlabError(f"{type(model).__name__} cannot be trained with DP-SGD: {errors[0]}")
    return model


ALPHAS = [1 + x / 10 for x in range(1, 100)] + list(range(12, 512))
"""Renyi orders the accountant minimises epsilon over: Opacus's defaults stop at 63, where
small budgets over few steps still find their optimum at the edge (its 'optimal order is the
largest alpha' warning, a looser epsilon than the truth); a wider range gives the tight one."""


class PrivateTraining:
    """Opacus's pieces for one run: per-image gradients, the noisy optimizer, the accountant."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, n_train: int,
                 batch_size: int, epochs: int, epsilon: float, delta: float, clip: float,
                 history: list | None = None):
        # Opacus's notices that do not concern this use: the input images need no gradient,
        # and a secure RNG (secure_mode) is for deployments, not teaching runs (said in docs)
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        self.sample_rate = min(1.0, batch_size / n_train)
        self.steps_per_epoch = max(1, round(1 / self.sample_rate))
        try:
            self.sigma = get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                              sample_rate=self.sample_rate,
                                              steps=epochs * self.steps_per_epoch, accountant="rdp",
                                              alphas=ALPHAS)
        except ValueError as e:
            raise CnnlabError(f"Opacus cannot reach epsilon {epsilon} at delta {delta} with "
                              f"{epochs} epochs of batches of {batch_size} from {n_train} images "
                              f"({e}); raise --dp-epsilon or --dp-delta, or train fewer "
                              f"epochs or with smaller batches") from None
        self.delta = delta
        self.module = GradSampleModule(model)
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.sigma, max_grad_norm=clip,
                                     expected_batch_size=batch_size)
        self.accountant = RDPAccountant()
        self.accountant.history = [tuple(h) for h in (history or [])]

    def batches(self, n: int, gen: torch.Generator):
        """This epoch's Poisson batches: index tensors of random size (empty ones skipped)."""
        for _ in range(self.steps_per_epoch):
            idx = torch.nonzero(torch.rand(n, generator=gen) < self.sample_rate).flatten()
            if len(idx):
                yield idx

    def stepped(self) -> None:
        self.accountant.step(noise_multiplier=self.sigma, sample_rate=self.sample_rate)

    def epsilon(self) -> float:
        return float(self.accountant.get_epsilon(self.delta, alphas=ALPHAS))
