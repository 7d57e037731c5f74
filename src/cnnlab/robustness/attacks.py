"""Adversarial attacks, written from their papers. Inputs are pixels in [0, 1]; models
normalize inside, so every attack works in pixel space and clips to the [0, 1] box.

- FGSM: Goodfellow, Shlens & Szegedy 2015, one signed-gradient step.
- PGD: Madry et al. 2018, projected gradient ascent with random start and restarts, L-inf or L2.
- APGD-CE / APGD-DLR: Croce & Hein 2020, PGD with momentum and an adaptive step size
  (halved at checkpoints when progress stalls); DLR is their scale-invariant margin loss.
- Square: Andriushchenko et al. 2020, black-box random search over square patches (queries
  only the logits).
- DeepFool: Moosavi-Dezfooli, Fawzi & Frossard 2016, minimal L2 perturbation by repeated
  linearisation; with ``eps`` the result is projected onto the eps ball.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry


@dataclass
class Attack:
    fn: Callable[..., torch.Tensor]
    norm: str
    """'linf' or 'l2': the ball eps is measured in."""
    defaults: dict = field(default_factory=dict)
    paper: str = ""


ATTACKS: Registry[Attack] = Registry("attack")


def register(name: str, norm: str, paper: str, **defaults):
    def decorator(fn):
        ATTACKS.register(name)(Attack(fn, norm, defaults, paper))
        return fn
    return decorator


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return delta * (eps / norms).clamp(max=1.0)


def _grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, with_errors: bool = False):
    """Per-example losses and the gradient of their sum with respect to x (and, with
    ``with_errors``, which examples the model misclassifies at x)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    losses = loss_fn(logits, y)
    (g,) = torch.autograd.grad(losses.sum(), x)
    if with_errors:
        return losses.detach(), g, logits.detach().argmax(1) != y
    return losses.detach(), g


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020): -(z_y - max_{i!=y} z_i) / (z_1 - z_3).

    It needs at least 3 classes (z_3 is the third-largest logit); ``apgd`` uses the
    cross-entropy loss instead below that, and ``loss_used`` says so."""
    if logits.shape[1] < 3:
        raise ValueError("the DLR loss needs at least 3 classes")
    z_sorted, _ = logits.sort(dim=1, descending=True)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], -float("inf"))
    return -(z_y - other.max(1).values) / (z_sorted[:, 0] - z_sorted[:, 2] + 1e-12)


def loss_used(loss: str, num_classes: int) -> str:
    """The loss APGD really uses: DLR falls back to cross-entropy with fewer than 3 classes."""
    return "ce" if loss == "dlr" and num_classes < 3 else loss


def _step(g: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return g.sign()
    return g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


def _random_start(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    d = torch.randn_like(x)
    r = torch.rand(len(x), 1, 1, 1, device=x.device)
    return d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps * r


@register("fgsm", "linf", "Goodfellow et al. 2015")
def fgsm(model, x, y, eps: float) -> torch.Tensor:
    _, g = _grad(model, x, y, ce_loss)
    return (x + eps * g.sign()).clamp(0, 1).detach()


@register("pgd", "linf", "Madry et al. 2018", steps=10, restarts=1)
def pgd(model, x, y, eps: float, steps: int = 10, step_size: float | None = None,
        restarts: int = 1, random_start: bool = True, norm: str = "linf",
        target: torch.Tensor | None = None) -> torch.Tensor:
    """Untargeted (raise the loss of y) or targeted (lower the loss of ``target``).

    Over restarts, each example keeps the first perturbation that fools the model, else the one
    with the highest loss. Default step size 2.5 * eps / steps (Madry et al.)."""
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    sign = -1.0 if target is not None else 1.0
    label = target if target is not None else y
    best, best_loss = x.clone(), torch.full((len(x),), -float("inf"), device=x.device)
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        delta = _random_start(x, eps, norm) if random_start else torch.zeros_like(x)
        adv = (x + delta).clamp(0, 1)
        for _ in range(steps):
            _, g = _grad(model, adv, label, ce_loss)
            adv = adv + sign * alpha * _step(g, norm)
            adv = (x + project(adv - x, eps, norm)).clamp(0, 1).detach()
        with torch.no_grad():
            logits = model(adv)
            loss = sign * ce_loss(logits, label)
            hit = (logits.argmax(1) == target) if target is not None else (logits.argmax(1) != y)
        better = (~fooled) & (hit | (loss > best_loss))
        best[better], best_loss[better] = adv[better], loss[better]
        fooled |= hit
    return best


register("pgd-l2", "l2", "Madry et al. 2018", steps=10)(
    lambda model, x, y, eps, steps=10, **kw: pgd(model, x, y, eps, steps=steps, norm="l2", **kw))


def _apgd_checkpoints(steps: int) -> list[int]:
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(q * steps) for q in p[1:] if q <= 1})


def apgd(model, x, y, eps: float, steps: int = 100, loss: str = "ce", norm: str = "linf",
         rho: float = 0.75, momentum: float = 0.75) -> torch.Tensor:
    """Auto-PGD (Croce & Hein 2020, Algorithm 1), per-example adaptive step sizes.

    Returns, per example, the last iterate that the model misclassified if there was one (as
    the authors' reference code does), else the iterate with the highest loss."""
    with torch.no_grad():
        loss = loss_used(loss, model(x[:1]).shape[1])
    loss_fn = ce_loss if loss == "ce" else dlr_loss
    checkpoints = _apgd_checkpoints(steps)
    eta = torch.full((len(x), 1, 1, 1), 2.0 * eps, device=x.device)
    adv = (x + _random_start(x, eps, norm)).clamp(0, 1)
    f, g, wrong = _grad(model, adv, y, loss_fn, with_errors=True)
    best, best_f = adv.clone(), f.clone()
    fooled, fooled_adv = wrong.clone(), adv.clone()
    prev = adv.clone()
    increases = torch.zeros(len(x), device=x.device)
    last_ck, last_best_f, last_eta = 0, best_f.clone(), eta.clone()
    for k in range(steps):
        z = (x + project(adv + eta * _step(g, norm) - x, eps, norm)).clamp(0, 1)
        a = 1.0 if k == 0 else momentum
        new = adv + a * (z - adv) + (1 - a) * (adv - prev)
        new = (x + project(new - x, eps, norm)).clamp(0, 1).detach()
        prev, adv = adv, new
        f_new, g, wrong = _grad(model, adv, y, loss_fn, with_errors=True)
        fooled_adv[wrong] = adv[wrong]  # the last misclassified iterate
        fooled |= wrong
        increases += (f_new > f).float()
        f = f_new
        improved = f > best_f
        best[improved], best_f[improved] = adv[improved], f[improved]
        if k + 1 in checkpoints:
            span = k + 1 - last_ck
            stalled = (increases < rho * span) | (
                (last_eta.flatten() == eta.flatten()) & (last_best_f == best_f))
            last_eta = eta.clone()
            eta[stalled] /= 2
            adv[stalled] = best[stalled]  # restart from the best point so far, no momentum
            prev[stalled] = best[stalled]
            if stalled.any():
                f[stalled], g[stalled] = _grad(model, adv[stalled], y[stalled], loss_fn)
            increases.zero_()
            last_ck, last_best_f = k + 1, best_f.clone()
    return torch.where(fooled.view(-1, 1, 1, 1), fooled_adv, best)


register("apgd-ce", "linf", "Croce & Hein 2020", steps=100)(
    lambda model, x, y, eps, steps=100, **kw: apgd(model, x, y, eps, steps=steps, loss="ce", **kw))
register("apgd-dlr", "linf", "Croce & Hein 2020", steps=100)(
    lambda model, x, y, eps, steps=100, **kw: apgd(model, x, y, eps, steps=steps, loss="dlr", **kw))


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], -float("inf"))
    return z_y - other.max(1).values  # < 0: misclassified


@register("square", "linf", "Andriushchenko et al. 2020", queries=1000, p_init=0.05)
@torch.no_grad()
def square(model, x, y, eps: float, queries: int = 1000, p_init: float = 0.05) -> torch.Tensor:
    """Square attack, L-inf: random square patches of +-eps, kept when the margin falls."""
    b, c, h, w = x.shape
    stripes = eps * torch.randint(0, 2, (b, c, 1, w), device=x.device).float().mul_(2).sub_(1)
    adv = (x + stripes).clamp(0, 1)
    margin = _margin(model(adv), y)
    for i in range(queries - 1):
        alive = margin > 0
        if not alive.any():
            break
        p = p_init / 2 ** sum(i > q * queries / 10_000 for q in (10, 50, 200, 500, 1000, 2000, 4000,
                                                                      6000, 8000))
        s = max(int(round(math.sqrt(p * h * w))), 1)
        idx = torch.nonzero(alive).flatten()
        top = torch.randint(0, h - s + 1, (len(idx),), device=x.device)
        left = torch.randint(0, w - s + 1, (len(idx),), device=x.device)
        rows = torch.arange(h, device=x.device)[None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, :]
        window = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + s) &
                  (cols >= left[:, None, None]) & (cols < left[:, None, None] + s))[:, None]
        signs = eps * torch.randint(0, 2, (len(idx), c, 1, 1), device=x.device).float().mul_(2).sub_(1)
        delta = adv[idx] - x[idx]
        delta = torch.where(window, signs, delta)
        cand = (x[idx] + delta).clamp(0, 1)
        m = _margin(model(cand), y[idx])
        better = m < margin[idx]
        adv[idx[better]], margin[idx[better]] = cand[better], m[better]
    return adv


@register("deepfool", "l2", "Moosavi-Dezfooli et al. 2016", steps=50, overshoot=0.02)
def deepfool(model, x, y, eps: float | None = None, steps: int = 50, overshoot: float = 0.02,
             candidates: int = 10) -> torch.Tensor:
    """Minimal L2 perturbation crossing the nearest linearised decision boundary."""
    with torch.no_grad():
        k = min(candidates, model(x[:1]).shape[1])
    r_total = torch.zeros_like(x)
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        adv = (x + (1 + overshoot) * r_total).clamp(0, 1).detach().requires_grad_(True)
        logits = model(adv)
        active &= logits.argmax(1) == y
        if not active.any():
            break
        order = logits.detach().argsort(1, descending=True)[:, :k]
        z_y = logits.gather(1, y[:, None]).squeeze(1)
        (g_y,) = torch.autograd.grad(z_y.sum(), adv, retain_graph=True)
        best_dist = torch.full((len(x),), float("inf"), device=x.device)
        best_r = torch.zeros_like(x)
        for j in range(k):
            cls = order[:, j]
            z_c = logits.gather(1, cls[:, None]).squeeze(1)
            (g_c,) = torch.autograd.grad(z_c.sum(), adv, retain_graph=j < k - 1)
            w_k = g_c - g_y
            f_k = (z_c - z_y).detach()
            w_norm = w_k.flatten(1).norm(dim=1).clamp_min(1e-8)
            dist = f_k.abs() / w_norm
            dist[cls == y] = float("inf")
            closer = dist < best_dist
            step = ((f_k.abs() + 1e-4) / w_norm**2).view(-1, 1, 1, 1) * w_k
            best_r[closer], best_dist[closer] = step[closer], dist[closer]
        r_total = r_total + best_r * active.view(-1, 1, 1, 1)
    delta = ((1 + overshoot) * r_total).detach()
    if eps is not None:
        delta = project(delta, eps, "l2")
    return (x + delta).clamp(0, 1)


AUTOATTACK = ("APGD-CE", "APGD-T", "FAB-T", "Square")
"""AutoAttack's standard four (Croce & Hein 2020): the one name of them used everywhere."""

APGD_ENSEMBLE = ("apgd-ce", "apgd-dlr")
"""``apgd-ens``: APGD on cross-entropy, then untargeted APGD on the DLR loss. It shares APGD-CE
with AutoAttack's four (``AUTOATTACK``) and uses DLR untargeted where AutoAttack runs it
targeted (APGD-T); it has neither FAB-T nor Square. A weaker evaluation than AutoAttack's:
its robust accuracy is not AutoAttack's number."""
ENSEMBLES = {"apgd-ens": APGD_ENSEMBLE}


def check_attack_names(names: list[str] | tuple[str, ...]) -> None:
    """Refuse unknown names with one clear line; ``autoattack`` is not implemented here."""
    for name in names:
        if name == "autoattack":
            raise CnnlabError(f"autoattack ({', '.join(AUTOATTACK)}) is not implemented; use "
                              "apgd-ens (APGD-CE and untargeted APGD-DLR, a weaker evaluation)")
        if name not in ENSEMBLES:
            ATTACKS.get(name)


def run_attack(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               **overrides) -> torch.Tensor:
    attack = ATTACKS.get(name)
    return attack.fn(model, x, y, eps, **(attack.defaults | overrides))
