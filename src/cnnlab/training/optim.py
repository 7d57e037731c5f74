"""The optimizer, its learning-rate schedule and airbench's lookahead."""

from __future__ import annotations

import math

import torch

from cnnlab.config import TrainConfig


def lr_at(step: int, total: int, warmup: int, peak: float, schedule: str) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine/linear decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return peak * (1 - progress)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Weight decay on weights only: biases and norm layers are left alone. Normalization
    parameters learn ``bias_lr_scale`` times faster, the body ``body_lr_scale`` times (each
    group carries its ``lr_scale``). Built before ``freeze_epochs`` freezes the body, so the body
    is in it and learns once thawed. A GAN brings its own two groups (generator,
    discriminator at ``d_lr_scale``) and trains with Adam (beta1 = momentum, DCGAN's 0.5)."""
    if hasattr(model, "optimizer_groups"):  # a GAN: its generator's and discriminator's groups
        groups = model.optimizer_groups(cfg.d_lr_scale)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    norm = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": [p for p in params if p.ndim <= 1 and id(p) not in norm], "weight_decay": 0.0,
         "lr_scale": 1.0},
        {"params": [p for p in params if id(p) in norm], "weight_decay": 0.0,
         "lr_scale": cfg.bias_lr_scale},
    ]
    if cfg.body_lr_scale != 1.0:  # discriminative learning rates: the body slower than the head
        from cnnlab.training.transfer import body_parameters

        body = body_parameters(model)
        groups = [g | {"params": [p for p in g["params"] if (id(p) in body) == in_body],
                       "lr_scale": g["lr_scale"] * (cfg.body_lr_scale if in_body else 1.0)}
                  for g in groups for in_body in (True, False)]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


class Lookahead:
    """airbench's lookahead (after Zhang et al. 2019): every ``every`` steps the slow copy moves
    toward the weights, ``slow += (1 - decay) * (weights - slow)``, and the weights restart from
    the slow copy. ``decay`` grows as 0.95**5 * progress**3: no pull early on, a strong one at the
    end, where it acts as an average over the last steps. BatchNorm statistics are averaged too."""

    every = 5

    def __init__(self, model: torch.nn.Module):
        self.model = model  # the bare model (not a DDP or compiled wrapper): its tensors are shared
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items()
                     if v.is_floating_point()}

    @staticmethod
    def decay(step: int, total: int) -> float:
        return 0.95 ** 5 * (step / total) ** 3

    @torch.no_grad()
    def update(self, decay: float) -> None:
        for k, v in self.model.state_dict().items():
            if k in self.slow:
                self.slow[k].lerp_(v, 1 - decay)
                v.copy_(self.slow[k])

    def after_step(self, step: int, total: int) -> None:
        if step >= total:  # the end of training: the slow weights become the model
            self.update(1.0)
        elif step % self.every == 0:
            self.update(self.decay(step, total))
