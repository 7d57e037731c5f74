"""Robust accuracy, robustness curves, corruption accuracy and an adversarial gallery for a run.

Robust accuracy counts an image as robust only if it is classified correctly and *every*
attack in the set fails on it. Models are evaluated in eval mode, so at eps = 0 robust
accuracy equals clean accuracy.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.robustness.attacks import ATTACKS, ENSEMBLES, check_attack_names, loss_used, run_attack
from cnnlab.robustness.corruptions import CORRUPTIONS, corrupt


def expand(attacks: list[str] | tuple[str, ...]) -> list[str]:
    """Attack names with ensembles (``apgd-ens``) replaced by their members, in order."""
    check_attack_names(attacks)
    out: list[str] = []
    for a in attacks:
        out += list(ENSEMBLES.get(a, (a,)))
    return list(dict.fromkeys(out))


def norm_of(attacks: list[str]) -> str:
    """The one norm these attacks measure eps in; mixing L2 and L-inf radii is refused."""
    norms = {ATTACKS.get(a).norm for a in attacks}
    if len(norms) > 1:
        by = ", ".join(f"{a} ({ATTACKS.get(a).norm})" for a in attacks)
        raise CnnlabError(f"one eps cannot be a radius in two norms: {by}; attack with the L-inf "
                          f"and the L2 attacks in separate runs")
    return norms.pop()


def _predict(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i: i + batch]).argmax(1) for i in range(0, len(x), batch)])


def attack_all(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, eps: float,
               batch: int = 250, **kw) -> torch.Tensor:
    """Adversarial images for every input, in batches."""
    return torch.cat([run_attack(name, model, x[i: i + batch], y[i: i + batch], eps, **kw)
                      for i in range(0, len(x), batch)])


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str],
                    eps: float, batch: int = 250, **kw) -> dict:
    """Clean accuracy, accuracy under each attack alone, and robust accuracy under all.

    ``x`` is float in [0, 1]. Each attack runs on the clean-correct images only. The result's
    ``robust_mask`` (a tensor, not saved) marks the images every attack failed on."""
    model.eval()
    names = expand(attacks)
    norm = norm_of(names)
    num_classes = int(_logits(model, x[:1]).shape[1])
    correct = _predict(model, x, batch) == y
    robust = correct.clone()
    per_attack, idx = {}, torch.nonzero(correct).flatten()
    for name in names:
        t0 = time.perf_counter()
        adv = attack_all(model, name, x[idx], y[idx], eps, batch, **kw) if len(idx) else x[idx]
        survived = _predict(model, adv, batch) == y[idx] if len(idx) else correct[idx]
        robust[idx[~survived]] = False
        delta = (adv - x[idx]).flatten(1)
        size = delta.abs().max(1).values if ATTACKS.get(name).norm == "linf" else delta.norm(dim=1)
        per_attack[name] = {"accuracy": float(survived.sum()) / len(x), "norm": ATTACKS.get(name).norm,
                            "mean_perturbation": float(size.mean()) if len(idx) else 0.0,
                            "seconds": time.perf_counter() - t0, "paper": ATTACKS.get(name).paper,
                            "note": _note(name, num_classes)}
    return {"n": len(x), "eps": eps, "norm": norm, "attacks": names,
            "clean_accuracy": float(correct.float().mean()),
            "robust_accuracy": float(robust.float().mean()), "per_attack": per_attack,
            "robust_mask": robust}


def _note(name: str, num_classes: int) -> str:
    if name == "apgd-dlr" and loss_used("dlr", num_classes) != "dlr":
        return (f"{num_classes} classes: the DLR loss needs 3 logits, so this ran APGD with the "
                "cross-entropy loss")
    return ""


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def robustness_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str],
                     eps_list: list[float], batch: int = 250) -> list[dict]:
    rows = []
    for name in attacks:
        for eps in eps_list:
            r = robust_accuracy(model, x, y, [name], eps, batch) if eps > 0 else {
                "robust_accuracy": float((_predict(model, x, batch) == y).float().mean())}
            rows.append({"attack": name, "eps": eps, "accuracy": r["robust_accuracy"]})
    return rows


def corruption_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 250
                        ) -> dict[str, list[float]]:
    model.eval()
    return {name: [float((_predict(model, corrupt(x, name, s), batch) == y).float().mean())
                   for s in range(1, 6)] for name in CORRUPTIONS}


def gallery(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, most: int = 8
            ) -> dict[str, np.ndarray]:
    """Originals, perturbations and adversarial images where the attack flipped the label."""
    with torch.no_grad():
        p_clean, p_adv = model(x).softmax(1), model(adv).softmax(1)
    flipped = torch.nonzero((p_clean.argmax(1) == y) & (p_adv.argmax(1) != y)).flatten()[:most]
    to_u8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # noqa: E731
    return {"original": to_u8(x[flipped]), "adversarial": to_u8(adv[flipped]),
            "delta": (adv[flipped] - x[flipped]).numpy().astype(np.float32),
            "clean_pred": p_clean[flipped].argmax(1).numpy(),
            "clean_conf": p_clean[flipped].max(1).values.numpy(),
            "adv_pred": p_adv[flipped].argmax(1).numpy(), "adv_conf": p_adv[flipped].max(1).values.numpy(),
            "label": y[flipped].numpy()}
