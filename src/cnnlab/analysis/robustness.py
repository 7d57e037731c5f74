"""Adversarial robustness: small, well-chosen noise fools a CNN.

Robust accuracy under a set of attacks at one radius (an image counts only if every attack
fails on it; the attacks must share one norm), with a Wilson interval; a gallery of attacked
images; accuracy against the radius, with the radius at which accuracy halves (the curve's
knee); and accuracy under common corruptions. Attacks: robustness/attacks.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, pct, pct_ci, table

if TYPE_CHECKING:
    from cnnlab.run import Run

DEFAULT_N = 1000
"""Evaluation images attacked when ``n`` is 0 (fewer where the split holds fewer)."""
CURVE_EPS = [0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255, 64 / 255]


def robustness(run: Run, *, attacks: tuple[str, ...] = ("fgsm", "pgd", "apgd-ens"),
               eps: float = 8 / 255, n: int = 0, curve: tuple[str, ...] = ("fgsm", "pgd"),
               curve_n: int = 500, corruptions: bool = True, log: Log = print) -> dict:
    """Attack the run's model on a seeded sample of evaluation images.

    Args:
        attacks: attacks that must all fail for an image to count as robust (comma-separated):
            fgsm, pgd, pgd-l2, apgd-ce, apgd-dlr, apgd-ens (APGD-CE + APGD-DLR), square,
            deepfool. All must share one norm.
        eps: the radius, in the attacks' norm, for pixels in [0, 1] (e.g. 8/255).
        n: evaluation images to attack (0: 1,000, or every evaluation image where there are
            fewer, as on the digits' 360).
        curve: attacks for the accuracy-versus-radius curve (empty: no curve).
        curve_n: images for the curve.
        corruptions: also measure accuracy under 7 common corruptions x 5 severities.
    """
    import torch

    norm = _check_attack(attacks, eps, n, curve, curve_n)
    model, cfg = run.load_model(), run.config
    evaluation = run.data().eval
    n = n or min(DEFAULT_N, len(evaluation))
    if n > len(evaluation):
        raise CnnlabError(f"--n {n:,} is more than the {len(evaluation):,} evaluation images; "
                          f"give at most that many (or 0: up to {DEFAULT_N:,})")
    val = evaluation.sample(n, cfg.seed)
    x, y = val.x.float() / 255, val.y
    torch.manual_seed(cfg.seed)
    result = _robust(model, x, y, list(attacks), eps, norm, log)
    result["arrays"] = _gallery_arrays(model, x, y, result["gallery_attack"], eps)
    if curve:
        rows = _curve(model, x[:curve_n], y[:curve_n], list(curve))
        result["tables"] = {"curve": rows}
        result["knee"] = knee(rows)
        result["curve_n"] = len(x[:curve_n])
    if corruptions:
        result |= _corruptions(model, x, y, log)
    result["adversarially_trained"] = cfg.adv or None
    result["grey_levels"] = int(torch.unique(val.x).numel())
    return result


def _robust(model, x, y, attacks: list[str], eps: float, norm: str, log: Log) -> dict:
    from cnnlab.evaluate.stats import accuracy_ci
    from cnnlab.robustness.attacks import ATTACKS
    from cnnlab.robustness.evaluate import expand, robust_accuracy

    for name in expand(attacks):
        a = ATTACKS.get(name)
        settings = ", ".join(f"{k}={v}" for k, v in a.defaults.items()) or "one step"
        log(f"{name}: {a.paper}, {a.norm} ball, {settings}")
    result = robust_accuracy(model, x, y, attacks, eps)
    mask = result.pop("robust_mask")
    result["robust_accuracy_ci"] = accuracy_ci(mask.numpy()).to_dict()
    log(f"clean accuracy {100 * result['clean_accuracy']:.2f}%, robust accuracy "
        f"{pct_ci(result['robust_accuracy_ci'])} under {'+'.join(result['attacks'])} at "
        f"{_radius(eps, norm)} on {len(x)} images")
    for name, r in result["per_attack"].items():
        log(f"  {name:>9}: accuracy {100 * r['accuracy']:.2f}%  mean {r['norm']} perturbation "
            f"{_size(r['mean_perturbation'], r['norm'])}  {r['seconds']:.1f}s  {r['note']}".rstrip())
    result["gallery_attack"] = result["attacks"][min(1, len(result["attacks"]) - 1)]
    return result


def _check_attack(attacks, eps: float, n: int, curve, curve_n: int) -> str:
    """The one-line errors for options no attack can run with; the attacks' shared norm."""
    from cnnlab.robustness.evaluate import expand, norm_of

    if eps < 0 or n < 0 or curve_n < 1:
        raise CnnlabError(f"attack needs eps >= 0, n >= 0 and curve_n >= 1 (got eps {eps:g}, "
                          f"n {n}, curve_n {curve_n})")
    norm = norm_of(expand(attacks))
    if curve:
        norm_of(expand(curve))
    if norm == "linf" and eps > 1:
        raise CnnlabError(f"--eps {eps:g} is past the pixel range [0, 1] of an L-inf attack; "
                          "give a radius such as 8/255")
    return norm


def _radius(eps: float, norm: str) -> str:
    return f"{'L-inf' if norm == 'linf' else 'L2'} radius {_size(eps, norm)}"


def _size(value: float, norm: str) -> str:
    """A perturbation's size as the radius is given: L-inf in grey levels of 255, L2 as is."""
    return f"{value * 255:.1f}/255" if norm == "linf" else f"{value:.3g}"


def _gallery_arrays(model, x, y, attack: str, eps: float) -> dict:
    from cnnlab.robustness.evaluate import attack_all, gallery

    adv = attack_all(model, attack, x[:64], y[:64], eps)
    return gallery(model, x[:64], y[:64], adv)


def _curve(model, x, y, attacks: list[str]) -> list[dict]:
    from cnnlab.robustness.evaluate import robustness_curve

    return robustness_curve(model, x, y, attacks, CURVE_EPS)


def knee(rows: list[dict]) -> dict | None:
    """The smallest radius on the curve at which an attack halves the clean accuracy, and the
    attack that does it (at a tie, the one that leaves the lower accuracy); None if none does."""
    clean = next((r["accuracy"] for r in rows if r["eps"] == 0), None)
    hits = [r for r in rows if r["eps"] > 0 and clean is not None and r["accuracy"] <= clean / 2]
    if not hits:
        return None
    best = min(hits, key=lambda r: (r["eps"], r["accuracy"]))
    return {"attack": best["attack"], "eps": best["eps"], "accuracy": best["accuracy"],
            "clean": clean}


def _corruptions(model, x, y, log: Log) -> dict:
    import numpy as np

    from cnnlab.robustness.evaluate import corruption_accuracy

    acc = corruption_accuracy(model, x, y)
    mean = float(np.mean([v for vs in acc.values() for v in vs]))
    log(f"mean corruption accuracy {100 * mean:.2f}% (7 corruptions x 5 severities)")
    return {"corruptions": acc, "mean_corruption_accuracy": mean}


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res, arrays = ctx.result, ctx.arrays
    eps, norm = res["eps"], res.get("norm", "linf")
    body = (f"<p>Small, well-chosen noise fools a CNN. On {res['n']} evaluation images, at "
            f"{esc(_radius(eps, norm))}: clean accuracy <b>{pct(res['clean_accuracy'])}</b>, "
            f"robust accuracy <b>{esc(pct_ci(res['robust_accuracy_ci']))}</b> (an image counts "
            f"as robust only if every attack below fails on it).</p>")
    levels = res.get("grey_levels", 256)
    if levels <= 64:
        body += (f'<p class="note">These images take {levels} grey levels, so one level is '
                 f"{255 / (levels - 1):.1f}/255: a radius below that changes no pixel by a whole "
                 "level.</p>")
    rows = [[name, r["paper"], r["norm"], pct(r["accuracy"]), _size(r["mean_perturbation"], r["norm"]),
             f"{r['seconds']:.1f}", r.get("note", "")] for name, r in res["per_attack"].items()]
    body += table(["attack", "paper", "ball", "accuracy under attack", "mean perturbation norm",
                   "seconds", "note"], rows)
    if "apgd-ens" in res["per_attack"] or {"apgd-ce", "apgd-dlr"} <= set(res["per_attack"]):
        from cnnlab.robustness.attacks import AUTOATTACK

        what = ("apgd-ens is APGD-CE followed by untargeted APGD-DLR" if "apgd-ens" in res["per_attack"]
                else "apgd-ce and apgd-dlr are APGD with two losses")
        body += para(f"{what}. AutoAttack's four are {', '.join(AUTOATTACK)}: these share APGD-CE "
                     "with them (APGD-T is the targeted form of the DLR loss) and have neither "
                     "FAB-T nor Square, so this is a weaker evaluation and its robust accuracy "
                     "is not AutoAttack's.", note=True)
    if res.get("adversarially_trained"):
        body += f"<p>This model was adversarially trained ({esc(res['adversarially_trained'])}).</p>"
    if arrays and len(arrays.get("original", [])):
        body += f"<h3>Adversarial examples ({esc(res['gallery_attack'])})</h3>"
        body += img(P.save(_gallery(arrays, ctx.run.classes, eps), ctx.plots_dir,
                           "adversarial_gallery"), "adversarial examples", "100%")
    if res.get("curve"):
        body += _curve_html(ctx, res)
    if res.get("corruptions"):
        body += _corruptions_html(ctx, res)
    return body


def curve_axis(norm: str) -> tuple[float, str]:
    """(scale of eps on the curve's x axis, its label) in the attacks' own norm."""
    return (255.0, "eps (x 1/255, L-inf)") if norm == "linf" else (1.0, "eps (L2 norm, pixels in [0, 1])")


def _curve_html(ctx: SectionContext, res: dict) -> str:
    from cnnlab.viz import plots as P

    fig, ax = P.plt.subplots(figsize=(6.5, 3.8))
    scale, xlabel = curve_axis(res.get("norm", "linf"))
    for attack in dict.fromkeys(r["attack"] for r in res["curve"]):
        pts = [r for r in res["curve"] if r["attack"] == attack]
        ax.plot([scale * float(r["eps"]) for r in pts], [100 * float(r["accuracy"]) for r in pts],
                marker="o", label=attack)
    ax.set(xlabel=xlabel, ylabel="accuracy (%)", ylim=(0, 100),
           title="Accuracy versus attack radius")
    ax.legend()
    fig.tight_layout()
    k = res.get("knee")
    linf = res.get("norm", "linf") == "linf"
    at = (f"{255 * k['eps']:.0f}/255" if linf else f"{k['eps']:.2f}") if k else ""
    knee_text = (f"The curve's knee, the smallest radius that leaves half the clean accuracy or "
                 f"less: eps = {at} for {k['attack']} ({100 * k['clean']:.0f}% -> "
                 f"{100 * k['accuracy']:.0f}%"
                 + (f" on the curve's {res['curve_n']} images" if "curve_n" in res else "") + ")."
                 if k else "No radius on this curve brings the clean accuracy down to half.")
    return ("<h3>Robustness curve</h3>" + img(P.save(fig, ctx.plots_dir, "robustness_curve"),
                                              "robustness curve", "620px")
            + f"<p>{esc(knee_text)}</p>"
            + f'<p class="note">Also in analysis/{esc(ctx.stem)}.curve.csv.</p>')


def _corruptions_html(ctx: SectionContext, res: dict) -> str:
    import numpy as np

    from cnnlab.viz import plots as P

    names = list(res["corruptions"])
    grid = np.array([res["corruptions"][n] for n in names]) * 100
    fig, ax = P.plt.subplots(figsize=(6.5, 0.45 * len(names) + 1.4))
    im = ax.imshow(grid, cmap="cividis", vmin=0, vmax=100, aspect="auto")  # readable without red-green
    ax.grid(False)
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(5), [str(s) for s in range(1, 6)])
    ax.set(xlabel="severity", title="Accuracy (%) under common corruptions")
    for i in range(len(names)):
        for j in range(5):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=9,
                    color="black" if grid[i, j] > 55 else "white")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return (f"<h3>Common corruptions</h3><p>Mean corruption accuracy "
            f"<b>{pct(res['mean_corruption_accuracy'])}</b> (CIFAR-10-C style, Hendrycks & "
            "Dietterich 2019).</p>" + img(P.save(fig, ctx.plots_dir, "corruptions"),
                                          "corruption heat map", "620px"))


def _gallery(a: dict, classes: list[str], eps: float):
    import numpy as np

    from cnnlab.viz.plots import plt, show

    n = len(a["original"])
    fig, axes = plt.subplots(3, n, figsize=(1.9 * n, 6.6), squeeze=False)
    for j in range(n):
        show(axes[0, j], a["original"][j])
        delta = a["delta"][j]
        amp = np.clip(delta / (2 * max(eps, 1e-8)) + 0.5, 0, 1)
        show(axes[1, j], (amp * 255).astype(np.uint8))
        show(axes[2, j], a["adversarial"][j])
        axes[0, j].set_title(f"clean: {classes[a['clean_pred'][j]]} ({100 * a['clean_conf'][j]:.0f}%)",
                             fontsize=12, color="tab:green")
        axes[2, j].set_xlabel(f"attacked: {classes[a['adv_pred'][j]]} ({100 * a['adv_conf'][j]:.0f}%)",
                              fontsize=12, color="tab:red")
    axes[0, 0].set_ylabel("original", fontsize=10)
    axes[1, 0].set_ylabel("noise (amplified)", fontsize=10)
    axes[2, 0].set_ylabel("adversarial", fontsize=10)
    fig.tight_layout()
    return fig


def pixel_step(run: Run) -> float | None:
    """One grey level of the run's data when its pixels take few values (the digits take 17,
    so one level is 1/16 = 15.9/255), else None (8-bit photos: one level is 1/255)."""
    import torch

    levels = torch.unique(run.data().train.x).numel()
    return 1 / (levels - 1) if 2 < levels <= 64 else None


def quick(run: Run) -> dict:
    """In ``cnnlab run``: 200 images, 100 for the curve; on data with few grey levels the
    radius is one grey level (8/255 is half a level of the digits, too small to mean much)."""
    step = pixel_step(run)
    return {"n": 200, "curve_n": 100} | ({"eps": round(step, 6)} if step else {})


def full(run: Run) -> dict:
    """In ``cnnlab run --full``: the defaults (1,000 images, 500 for the curve), or every
    evaluation image where there are fewer (the digits have 360)."""
    step = pixel_step(run)
    n = min(DEFAULT_N, run.metrics["n"])
    return {"n": n, "curve_n": min(n, 500)} | ({"eps": round(step, 6)} if step else {})


def claims(res: dict) -> list[Claim]:
    """Small noise fools a CNN: robust accuracy (an image counts only if every attack fails)."""
    ci, clean = res["robust_accuracy_ci"], res["clean_accuracy"]
    radius = f"{res['eps'] * 255:.1f}/255" if res["norm"] == "linf" else f"{res['eps']:.2f}"
    return [Claim("Small, well-chosen noise fools a CNN",
                  f"{res['norm'].replace('linf', 'L-inf').replace('l2', 'L2')} radius {radius}: "
                  f"clean {100 * clean:.1f}%, under attack {100 * ci['estimate']:.1f}% (95% CI "
                  f"{100 * ci['low']:.1f}-{100 * ci['high']:.1f}) on {res['n']} images",
                  True if ci["high"] < clean else None)]


ANALYSIS = register(Analysis(
    name="robustness", title="Adversarial robustness", compute=robustness, section=section,
    order=86, verb=("attack",), quick=quick, full=full,
    claims=claims,
    bounds={"eps": (1e-6, 64), "n": (0, 1e7), "curve_n": (1, 1e7)},
))
