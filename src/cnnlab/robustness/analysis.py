"""``cnnlab attack RUN``: robust accuracy, a gallery, a robustness curve and corruptions."""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.data import prepare_data
from cnnlab.io import atomic_write_json
from cnnlab.robustness.attacks import ATTACKS
from cnnlab.robustness.evaluate import (
    attack_all,
    corruption_accuracy,
    expand,
    gallery,
    robust_accuracy,
    robustness_curve,
    write_curve_csv,
)
from cnnlab.run import Run, save_npz
from cnnlab.train.trainer import Log

CURVE_EPS = [0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255]


def robustness_analysis(run: Run, attacks: tuple[str, ...] = ("fgsm", "pgd", "autoattack"),
                        eps: float = 8 / 255, n: int = 1000, curve: tuple[str, ...] = ("fgsm", "pgd"),
                        corruptions: bool = True, log: Log = print) -> dict:
    """Attack the run's model on up to ``n`` evaluation images; save results for the report."""
    cfg = run.config
    data = prepare_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.val_split, cfg.seed,
                        cfg.limit_train, cfg.permute_pixels)
    model = run.load_model()
    val = data.val.sample(n, cfg.seed)
    x, y = val.x.float() / 255, val.y
    torch.manual_seed(cfg.seed)
    for name in expand(list(attacks)):
        a = ATTACKS.get(name)
        settings = ", ".join(f"{k}={v}" for k, v in a.defaults.items()) or "one step"
        log(f"{name}: {a.paper}, {a.norm} ball, {settings}")
    result = robust_accuracy(model, x, y, list(attacks), eps)
    result.pop("robust_mask")
    log(f"clean accuracy {100 * result['clean_accuracy']:.2f}%, robust accuracy "
        f"{100 * result['robust_accuracy']:.2f}% under {'+'.join(result['attacks'])} at eps "
        f"{eps * 255:.1f}/255 on {len(x)} images")
    for name, r in result["per_attack"].items():
        log(f"  {name:>9}: accuracy {100 * r['accuracy']:.2f}%  mean {r['norm']} perturbation "
            f"{r['mean_perturbation']:.4f}  {r['seconds']:.1f}s")
    first = result["attacks"][min(1, len(result["attacks"]) - 1)]
    shown = x[:64]
    adv = attack_all(model, first, shown, y[:64], eps)
    save_npz(run.path / "analysis" / "robustness.npz", **gallery(model, shown, y[:64], adv))
    result["gallery_attack"] = first
    if curve:
        rows = robustness_curve(model, x[:500], y[:500], list(curve), CURVE_EPS)
        write_curve_csv(run.path / "analysis" / "robustness.csv", rows)
        result["curve"] = rows
    if corruptions:
        acc = corruption_accuracy(model, x, y)
        result["corruptions"] = acc
        result["mean_corruption_accuracy"] = float(np.mean([v for vs in acc.values() for v in vs]))
        log(f"mean corruption accuracy {100 * result['mean_corruption_accuracy']:.2f}% "
            f"(7 corruptions x 5 severities)")
    result["adversarially_trained"] = cfg.adv or None
    atomic_write_json(run.path / "analysis" / "robustness.json", result)
    return result
