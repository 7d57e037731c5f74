"""The optimizer, its learning-rate schedule and airbench's lookahead."""

from __future__ import annotations

import math

import torch

from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError


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
    is in it and learns once thawed. A generator (GAN, diffusion model) brings its own groups
    (a GAN's discriminator at ``d_lr_scale``) and trains with Adam (beta1 = momentum, DCGAN's
    0.5), fused into one kernel per step: a GAN's step takes two optimizer steps over small
    tensors, where Adam's loop over them costs more than its arithmetic (``benchmarks/gan.py
    speed``). A run resumed from a checkpoint saved unfused goes on unfused, as it began (the
    saved groups carry the setting)."""
    if hasattr(model, "optimizer_groups"):
        groups = model.optimizer_groups(cfg.d_lr_scale)
        fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), fused=fused or None)
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
    if cfg.optimizer == "muon":
        return MuonSGD(groups, cfg, model)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


class MuonSGD:
    """airbench94_muon's split (Jordan 2024): convolution filters learn with Muon, the rest
    (head, biases, norm layers) with SGD and Nesterov momentum, as ``groups`` say.

    Muon (``torch.optim.Muon``) keeps a momentum of a layer's gradient and steps along its
    orthogonalisation (Newton-Schulz iterations): every direction of the weight matrix moves by
    about as much, however unevenly the gradient spreads over them. A filter bank of shape
    (out, in, k, k) is the matrix out x (in*k*k). After each step every bank is rescaled to norm
    sqrt(out), as airbench94_muon does: under the BatchNorm that follows each convolution the
    network computes the same function, and Muon's steps keep one size relative to the weights
    (no weight decay needed). That holds only where a normalization layer follows each
    convolution, so a model with a trainable convolution that has a bias (LeNet-5, a dense
    task's output layer) is refused. Each Muon group carries its source group's ``lr_scale``
    times muon_lr / lr, so the run's schedule (warm-up, decay) and discriminative rates
    (``body_lr_scale``) move both learning rates together. Filters without a gradient (a frozen
    body) are left exactly as they are.

    The trainer sees one optimizer: ``param_groups`` (SGD's, then Muon's), ``zero_grad``,
    ``step`` and a ``state_dict`` in torch's layout (parameters numbered SGD's first)."""

    def __init__(self, groups: list[dict], cfg: TrainConfig, model: torch.nn.Module):
        if not any(p.ndim == 4 for g in groups for p in g["params"]):
            raise CnnlabError(f"optimizer muon steps convolution filters, and model {cfg.model} "
                              f"has none; use --optimizer sgd")
        biased = [name for name, m in model.named_modules()
                  if isinstance(getattr(m, "weight", None), torch.nn.Parameter) and m.weight.ndim == 4
                  and m.weight.requires_grad and getattr(m, "bias", None) is not None]
        if biased:
            raise CnnlabError(f"optimizer muon rescales each filter bank, which leaves a network "
                              f"unchanged only where a convolution has no bias and a "
                              f"normalization layer follows it; {cfg.model}'s {biased[0]} has a "
                              f"bias: use --optimizer sgd")
        rest = [g | {"params": [p for p in g["params"] if p.ndim != 4]} for g in groups]
        self.sgd = torch.optim.SGD([g for g in rest if g["params"]], lr=cfg.lr,
                                   momentum=cfg.momentum, nesterov=cfg.nesterov)
        # Muon wants 2-D parameters: it steps these matrices, copied from and back to the
        # filters around each step (the filters may be channels-last, or moved by lookahead).
        self.filters, muon_groups = [], []
        for g in groups:
            banks = [p for p in g["params"] if p.ndim == 4]
            if banks:
                self.filters += banks
                muon_groups.append({"params": [p.detach().reshape(len(p), -1).clone() for p in banks],
                                    "lr_scale": g["lr_scale"] * cfg.muon_lr / cfg.lr})
        self.matrices = [m for g in muon_groups for m in g["params"]]
        self.muon = torch.optim.Muon(muon_groups, lr=cfg.muon_lr, weight_decay=0.0,
                                     momentum=cfg.muon_momentum, nesterov=True, ns_steps=3)

    @property
    def param_groups(self) -> list[dict]:
        return self.sgd.param_groups + self.muon.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.sgd.zero_grad(set_to_none)
        for p in self.filters:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.sgd.step()
        stepped = [(p, m) for p, m in zip(self.filters, self.matrices, strict=True)
                   if p.grad is not None]  # Muon skips the others, and so does the rescaling
        for p, m in stepped:
            m.copy_(p.reshape(m.shape))
            m.grad = p.grad.reshape(m.shape)
        self.muon.step()
        for p, m in stepped:
            m.mul_(len(m) ** 0.5 / m.norm().clamp_min(1e-12))
            p.copy_(m.view(p.shape))
            m.grad = None

    def state_dict(self) -> dict:
        sgd, muon = self.sgd.state_dict(), self.muon.state_dict()
        n = _count(sgd["param_groups"])
        return {"state": sgd["state"] | {i + n: s for i, s in muon["state"].items()},
                "param_groups": sgd["param_groups"] + [
                    g | {"params": [i + n for i in g["params"]]} for g in muon["param_groups"]]}

    def load_state_dict(self, sd: dict) -> None:
        k = len(self.sgd.param_groups)
        n = _count(sd["param_groups"][:k])
        self.sgd.load_state_dict({"state": {i: s for i, s in sd["state"].items() if i < n},
                                  "param_groups": sd["param_groups"][:k]})
        self.muon.load_state_dict({
            "state": {i - n: s for i, s in sd["state"].items() if i >= n},
            "param_groups": [g | {"params": [i - n for i in g["params"]]}
                             for g in sd["param_groups"][k:]]})


def _count(groups: list[dict]) -> int:
    return sum(len(g["params"]) for g in groups)


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
