"""GANs, measured: the targets of the generation issue on the digits and on shapes.

    python benchmarks/gan.py targets          # domain FID against the floor after <= 2 minutes
    python benchmarks/gan.py targets --shapes-recipe dcgan   # shapes with DCGAN's own recipe
    python benchmarks/gan.py stabilisers      # each stabiliser against the baseline, 3 seeds
    python benchmarks/gan.py copies           # memorisation: few images against all of them
    python benchmarks/gan.py speed            # a GAN step against a classifier step, equal params
    python benchmarks/gan.py families         # GAN against a diffusion model at equal training time

Every GAN is trained as ``cnnlab generate train`` trains it (its judge first: a ResNet-20 on
the same data and split, whose embedding gives the domain FID; not comparable with published
Inception FIDs). Each part appends a row to RESULTS.md. Run on a quiet machine: the rows
carry the load average.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from common import append_result, machine

from cnnlab.analysis.generation import training_seconds
from cnnlab.config import DIFFUSION_DEFAULTS, GENERATE_DEFAULTS, TrainConfig
from cnnlab.evaluate.stats import difference_words, paired_difference_ci, significant
from cnnlab.generation import train_generator
from cnnlab.log import silent

OUT = Path(tempfile.mkdtemp(prefix="gan-bench-"))
DATA = {"digits": {}, "shapes": {"image_size": 16}}
"""The two small datasets of the targets (shapes at 16 px: 5,000 coloured shapes)."""
_SHAPES_FILE = yaml.safe_load((Path(__file__).parents[1] / "configs" / "gan_shapes.yaml").read_text())
SHAPES_RECIPE = {k: v for k, v in _SHAPES_FILE.items()
                 if k not in ("dataset", "image_size", "head", "epochs", "eval_every")}
"""configs/gan_shapes.yaml's changes to DCGAN's recipe: a deeper discriminator at 4x the rate,
and AC-GAN's auxiliary classifier."""


def gan(dataset: str, name: str, defaults: dict = GENERATE_DEFAULTS, **changes):
    cfg = TrainConfig(**defaults).derive(dataset=dataset, out_dir=str(OUT), name=name,
                                         threads=torch.get_num_threads(),
                                         **DATA.get(dataset, {}), **changes)
    run = train_generator(cfg, log=silent, progress=False, report=False)
    r = json.loads((run.path / "generation.json").read_text())
    return run, r


def targets(a) -> None:
    """Digits with generate train's conditional head (seed 0); shapes with configs/gan_shapes.yaml
    (or DCGAN's recipe) at ``--shapes-seeds`` seeds, each with its own judge."""
    recipe = SHAPES_RECIPE if a.shapes_recipe == "config" else {}
    epochs = a.shapes_epochs or (_SHAPES_FILE["epochs"] if recipe else 40)
    runs = [("digits", a.digits_epochs, 0, {})]
    runs += [("shapes", epochs, seed, recipe) for seed in range(a.shapes_seeds)]
    for dataset, epochs, seed, changes in runs:
        run, r = gan(dataset, f"target-{dataset}-{seed}", head="conditional", epochs=epochs,
                     eval_every=epochs, seed=seed, **changes)
        g, f, m = r["generated"], r["floor"], run.metrics
        words = (f"{dataset} (seed {seed}{', configs/gan_shapes.yaml' if changes else ''}): "
                 f"domain FID {g['fid']:.3f} against a floor of {f['fid']:.3f} "
                 f"({g['fid'] / f['fid']:.1f}x) after {m['train_time_s']:.0f} s of training "
                 f"({epochs} epochs); classes produced {100 * r['labels']['classes_covered']:.0f}%, "
                 f"the judge reads the class asked for in {100 * r['label_agreement']:.1f}%; "
                 f"precision {g['precision']:.2f}, recall {g['recall']:.2f}; KID {g['kid']:.4f} "
                 f"(floor {f['kid']:.4f}); near-copies {100 * r['copies']['features']['copy_share']:.1f}%")
        print(words, flush=True)
        append_result(f"GAN targets: conditional DCGAN on {dataset} (cnnlab generate train)", words,
                      " ".join(["python", *sys.argv]), machine())


VARIANTS = {"baseline (non-saturating, BatchNorm D, EMA 0.99, lazy R1)": {},
            "no EMA": {"ema": 0.0}, "minimax loss": {"gan_loss": "minimax"},
            "hinge loss": {"gan_loss": "hinge"}, "spectral norm": {"spectral_norm": True},
            "no R1": {"r1_gamma": 0.0}, "R1 on every step": {"r1_every": 1},
            "TTUR (D at 2x lr)": {"d_lr_scale": 2.0}}


def stabilisers(a) -> None:
    """Each stabiliser turned off (or on) against the baseline, on the unconditional digits head.
    Per seed the baseline's run trains the judge and every variant is scored by it, so the FIDs
    of one seed are paired and so is the interval (seed-to-seed spread cancels)."""
    fid = {k: [] for k in VARIANTS}
    for seed in range(a.seeds):
        judge = {}
        for i, (label, changes) in enumerate(VARIANTS.items()):
            run, r = gan("digits", f"stab-{seed}-{i}", seed=seed, epochs=a.epochs,
                         eval_every=a.epochs, **judge, **changes)
            judge = judge or {"judge": run.config.judge}  # the baseline's, for the rest
            fid[label].append(r["generated"]["fid"])
            print(label, seed, round(fid[label][-1], 3), flush=True)
    base = fid[next(iter(VARIANTS))]
    parts = [f"{label}: {statistics.mean(v):.3f}" + ("" if v is base else
             f" (minus baseline {difference_words(paired_difference_ci(base, v), 'FID', 1.0)})")
             for label, v in fid.items()]
    words = "domain FID, mean over seeds (lower is better; intervals paired over seeds): " + "; ".join(parts)
    print(words)
    append_result(f"GAN stabilisers on digits (unconditional DCGAN, generate train's default head, "
                  f"{a.epochs} epochs, {a.seeds} seeds, one judge per seed)",
                  words, " ".join(["python", *sys.argv]), machine())


def copies(a) -> None:
    rows = []
    for n, epochs in ((a.few, a.few_epochs), (0, a.epochs)):
        run, r = gan("digits", f"copies-{n}", head="conditional", epochs=epochs, limit_train=n,
                     eval_every=epochs)
        c, px = r["copies"]["features"], r["copies"]["pixels"]
        rows.append(f"{run.metrics['n_train']} training images ({epochs} epochs): near-copies "
                    f"{100 * c['copy_share']:.1f}% (95% CI {100 * c['ci'][0]:.1f}-{100 * c['ci'][1]:.1f}) "
                    f"in features, {100 * px['copy_share']:.1f}% ({100 * px['ci'][0]:.1f}-"
                    f"{100 * px['ci'][1]:.1f}) in pixels; domain FID {r['generated']['fid']:.3f}")
        print(rows[-1], flush=True)
    append_result("GAN memorisation on digits: few training images against all (about 5% when "
                  "nothing is copied)", "; ".join(rows), " ".join(["python", *sys.argv]), machine())


def speed(a) -> None:
    """Images per second of one training step: a GAN (generator + discriminator, about LeNet-5's
    parameters in all) against LeNet-5 on the same 8x8 digits at the same batch, in fp32 and
    in bf16 autocast; the GAN with DCGAN's BatchNorm discriminator (real and generated batches
    scored apart) and with spectral norm (one discriminator pass over both). Beside images/s,
    each step's arithmetic (torch's FlopCounterMode: forward and backward products) per real
    image and the FLOP/s it runs at: a GAN step passes through the discriminator three times and
    back through it twice, so per real image it computes more than a classifier of its size
    (1.3x LeNet-5's at these widths), and images/s alone compares unequal work. Both run as the
    trainer runs them: models and images in the channels_last memory format (the default of
    ``cnnlab train`` and ``cnnlab generate train``), the GAN's Adam fused (make_optimizer)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cnnlab.config import TrainConfig as C
    from cnnlab.models import create_model, to_channels_last
    from cnnlab.models.gan import GAN
    from cnnlab.training.optim import make_optimizer
    from cnnlab.training.trainer import FiniteGuard, train_step

    torch.manual_seed(0)
    x = torch.rand(a.batch, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    y = torch.randint(10, (a.batch,))
    r1 = {k: GENERATE_DEFAULTS[k] for k in ("r1_gamma", "r1_every")}  # lazy R1, as generate trains
    gans = {"BatchNorm D": GAN(1, 8, 10, conditional=True, width=a.width, **r1),
            "spectral-norm D, one pass": GAN(1, 8, 10, conditional=True, width=a.width,
                                             spectral_norm=True, **r1)}
    gans = {k: to_channels_last(g) for k, g in gans.items()}
    clf = to_channels_last(create_model("lenet5", num_classes=10, in_channels=1, image_size=8))
    gan_cfg = dataclasses.replace(C(), optimizer="adamw", momentum=0.5, weight_decay=0.0)
    opts = {k: make_optimizer(gan_cfg, g) for k, g in gans.items()}
    opt_c = make_optimizer(C(), clf)
    guard = FiniteGuard(C(), 0, defer=False)

    def time_it(step) -> float:
        for _ in range(20):
            step()
        t = time.perf_counter()
        for _ in range(a.steps):
            step()
        return a.steps * a.batch / (time.perf_counter() - t)

    def flops_per_image(step) -> float:
        """Without R1's double backward on every 16th step (FlopCounterMode cannot follow
        autograd.grad to an input); the images/s include it."""
        for g in gans.values():
            g.r1_gamma = 0.0
        try:
            with FlopCounterMode(display=False) as count:
                step()
        finally:
            for g in gans.values():
                g.r1_gamma = r1["r1_gamma"]
        return count.get_total_flops() / a.batch

    parts = []
    for precision in ("fp32", "bf16"):
        cfg, bf16 = C(precision=precision), precision == "bf16"
        steps = {k: (lambda g=g, k=k, bf16=bf16: g.train_step(
            x, y, opts[k], torch.autocast("cpu", torch.bfloat16, enabled=bf16))) for k, g in gans.items()}
        steps["LeNet-5"] = lambda cfg=cfg: train_step(clf, opt_c, x, y, cfg, torch.device("cpu"), (guard, 0))
        runs = {k: [] for k in steps}
        for _ in range(a.rounds):  # interleaved: a slow moment hits the runs of its round
            for k, step in steps.items():
                runs[k].append(time_it(step))
        ips = {k: statistics.median(v) for k, v in runs.items()}
        # The ratio within each round (runs seconds apart), then its median and range over the
        # rounds: this machine's speed drifts by a third between minutes, a ratio less so.
        ratios = {k: sorted(g / c for g, c in zip(v, runs["LeNet-5"], strict=True)) for k, v in runs.items()}
        work = {k: flops_per_image(step) for k, step in steps.items()}
        parts.append(f"{precision}: " + "; ".join(
            f"{k} {v:,.0f} images/s" + ("" if k == "LeNet-5" else
                                        f" ({statistics.median(ratios[k]):.2f}x, {ratios[k][0]:.2f}-"
                                        f"{ratios[k][-1]:.2f}x over {a.rounds} rounds)")
            + f", {work[k] / 1e6:.2f} MFLOP per image ({work[k] / work['LeNet-5']:.1f}x), "
            f"{v * work[k] / 1e9:.1f} GFLOP/s" for k, v in ips.items()))
        print(parts[-1], flush=True)
    params = (sum(p.numel() for p in gans["BatchNorm D"].parameters()),
              sum(p.numel() for p in clf.parameters()))
    words = (f"GAN (width {a.width}, {params[0]:,} parameters in G and D; one D step and one G step "
             f"per batch of real images, fused AdamW, R1 every {r1['r1_every']} D steps) against LeNet-5 "
             f"({params[1]:,}, SGD); "
             + "; ".join(parts) + f"; both channels_last, as trained; batch {a.batch}, medians of "
             f"{a.rounds} interleaved rounds of {a.steps} steps (images/s: each model's median; ratio: "
             "the median of the rounds' ratios)")
    print(words)
    append_result("GAN training step against a classifier's, about equal parameters (8x8 digits)", words,
                  " ".join(["python", *sys.argv]), machine())


def families(a) -> None:
    """The two families of generators at equal training time, on the targets' data: the
    conditional GAN (the targets' recipe) against a class-conditional diffusion model (DDPM
    training, DDIM sampling in 25 steps) trained for as many seconds. Per seed both are scored
    by one judge (trained once, on that seed): the FIDs are paired, and so is the interval.
    The diffusion model's epochs come from its measured seconds per epoch (a 3-epoch run first:
    its first epoch, then the steady rate of the next two); both clocks count training steps
    alone (``train_elapsed``), not the final evaluation."""
    rows = []
    for dataset, epochs, seeds in (("digits", a.digits_epochs, a.seeds), ("shapes", a.shapes_epochs, 1)):
        fid = {"GAN": [], "diffusion": []}
        parts = []
        for seed in range(seeds):
            g_run, g = gan(dataset, f"fam-{dataset}-gan-{seed}", head="conditional", seed=seed,
                           epochs=epochs, eval_every=epochs)
            judge = g_run.config.judge
            probe, _ = gan(dataset, f"fam-{dataset}-probe-{seed}", DIFFUSION_DEFAULTS, seed=seed,
                           head="ddpm-conditional", judge=judge, epochs=3, eval_every=100)
            elapsed = [float(r["train_elapsed"]) for r in csv.DictReader(
                (probe.path / "results.csv").read_text().splitlines())]
            per_epoch = (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)  # after the first epoch
            d_epochs = 1 + max(0, round((training_seconds(g_run) - elapsed[0]) / per_epoch))
            d_run, d = gan(dataset, f"fam-{dataset}-ddpm-{seed}", DIFFUSION_DEFAULTS, seed=seed,
                           head="ddpm-conditional", judge=judge, epochs=d_epochs, eval_every=d_epochs)
            for label, run, r in (("GAN", g_run, g), ("diffusion", d_run, d)):
                fid[label].append(r["generated"]["fid"])
                parts.append(f"seed {seed} {label}: domain FID {r['generated']['fid']:.3f} (floor "
                             f"{r['floor']['fid']:.3f}) after {training_seconds(run):.0f} s "
                             f"({run.metrics['epochs']} epochs), recall {r['generated']['recall']:.2f}, "
                             f"classes {100 * r['labels']['classes_covered']:.0f}%, the judge reads "
                             f"the class asked for in {100 * r['label_agreement']:.1f}%")
                print(parts[-1], flush=True)
        ci = paired_difference_ci(fid["GAN"], fid["diffusion"])
        mean = {k: statistics.mean(v) for k, v in fid.items()}
        better = min(mean, key=mean.get)
        words = f"diffusion minus GAN {difference_words(ci, 'FID', 1.0)}"
        if seeds < 2:
            verdict = f"{better} lower on one seed (no interval)"
        elif significant(ci):
            verdict = f"{better} lower, {words}, paired over {seeds} seeds"
        else:
            verdict = f"no significant difference ({words}, paired over {seeds} seeds)"
        rows.append(f"{dataset}: GAN {mean['GAN']:.3f}, diffusion {mean['diffusion']:.3f}: {verdict}; "
                    + "; ".join(parts))
        print(rows[-1], flush=True)
    append_result("GAN against a diffusion model at equal training time (both class-conditional, "
                  "one judge per seed)", " | ".join(rows), " ".join(["python", *sys.argv]), machine())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("part", choices=["targets", "stabilisers", "copies", "speed", "families"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--digits-epochs", type=int, default=150)
    p.add_argument("--shapes-epochs", type=int, default=0,
                   help="0: the recipe's (configs/gan_shapes.yaml: 48; DCGAN's: 40)")
    p.add_argument("--shapes-seeds", type=int, default=3)
    p.add_argument("--shapes-recipe", choices=["config", "dcgan"], default="config",
                   help="targets: configs/gan_shapes.yaml, or generate train's defaults")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--few", type=int, default=100)
    p.add_argument("--few-epochs", type=int, default=600)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--rounds", type=int, default=9, help="speed: interleaved rounds")
    p.add_argument("--width", type=int, default=16)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    {"targets": targets, "stabilisers": stabilisers, "copies": copies, "speed": speed,
     "families": families}[a.part](a)


if __name__ == "__main__":
    main()
