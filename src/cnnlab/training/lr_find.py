"""The learning-rate range test (Smith 2017, "Cyclical learning rates for training neural
networks"; fastai's ``lr_find``): train a fresh model for a few hundred steps while the
learning rate grows exponentially from tiny to huge, and read off the loss against it.

The loss first barely moves (too small a step), then falls fastest, then turns and explodes.
Two readings are marked, as fastai marks them: ``steepest``, where the smoothed loss falls
fastest per decade of learning rate, and ``minimum / 10``, a decade below the lowest loss.
The suggestion is the steepest fall. Measured against a factor-2 sweep of whole trainings
(benchmarks/lr_find.py, validation hold-outs): the steepest fall was within 1.2x of the
sweep's best on digits and shapes; the rule first chosen, the smaller of the two readings,
was 2.7x below it on digits (still on the plateau of good rates there, 0.5 points lower).

The test runs the run's own training step (its optimizer, augmentation, precision, task loss,
class or group weighting, and the body frozen where the first epoch freezes it), so what it
finds is for that recipe; it starts from the model the run would start from
(``init_from`` / ``pretrained`` included) and throws the model away afterwards. Written here
because torch-lr-finder, the small library for it, drives its own loop over a DataLoader and
would skip cnnlab's augmentation and task losses.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from cnnlab.config import TrainConfig
from cnnlab.data import RunData
from cnnlab.errors import CnnlabError
from cnnlab.log import Log

BETA = 0.98
"""Exponential smoothing of the loss (fastai's), bias-corrected."""

DIVERGED = 4.0
"""The test stops once the smoothed loss is this many times its lowest."""


class _Tolerant:
    """A loss guard that lets a non-finite loss through: divergence is what the test looks for."""

    def __init__(self):
        self.bad = False

    def check(self, loss: torch.Tensor, step: int) -> None:
        self.bad = self.bad or not bool(torch.isfinite(loss))


def lr_range_test(cfg: TrainConfig, data: RunData, start: float = 1e-6, end: float = 10.0,
                  steps: int = 100, log: Log = print) -> dict:
    """Losses against exponentially growing learning rates, and the suggested learning rate."""
    if cfg.optimizer == "muon":
        raise CnnlabError("lr-find sweeps one learning rate and optimizer muon has two: give "
                          "--lr and --muon-lr, or find SGD's with --optimizer sgd")
    if not 0 < start < end < math.inf or not 10 <= steps <= 10_000:
        raise CnnlabError(f"lr-find needs 0 < start < end (finite) and 10 to 10,000 steps; got "
                          f"start {start:g}, end {end:g}, {steps} steps")
    lrs, losses, smooth, avg, best = [], [], [], 0.0, math.inf
    for lr, value in _training_steps(cfg, data, start, end, steps, log):
        if not math.isfinite(value):
            break
        avg = BETA * avg + (1 - BETA) * value
        lrs.append(lr)
        losses.append(value)
        smooth.append(avg / (1 - BETA ** len(lrs)))
        best = min(best, smooth[-1])
        if smooth[-1] > DIVERGED * best:
            break
    return {"lrs": lrs, "losses": losses, "smoothed": smooth, **suggest(lrs, smooth)}


def _training_steps(cfg: TrainConfig, data: RunData, start: float, end: float, steps: int, log: Log):
    """(learning rate, loss) of the run's own training step at each rate of the range, on a
    model started as the run would start (lazily: it stops when the caller stops asking)."""
    from cnnlab.tasks import get_task
    from cnnlab.training import trainer as T
    from cnnlab.training.optim import make_optimizer
    from cnnlab.training.transfer import body_freezer

    device = T.resolve_device(cfg.device)
    model = T.prepare_model(T.start_model(cfg, data, log), cfg, device)
    body_freezer(cfg, model)(0)  # as the first epoch trains: the body frozen if it will be
    optimizer = make_optimizer(dataclasses.replace(cfg, lr=start), model)
    data, task = T.data_on(data, device), get_task(cfg.task)
    gen = torch.Generator().manual_seed(cfg.seed)
    augment_batch, guard = T.epoch_augmentation(data, cfg, 0), _Tolerant()
    group_loss = T.make_group_loss(cfg, data.train, None)  # --balance, --groups: the run's loss
    weights = group_loss.sample_weights if group_loss is not None else None
    model.train()
    for k, idx in zip(range(steps), _passes(T, data, cfg.batch_size, gen, weights), strict=False):
        lr = start * (end / start) ** (k / (steps - 1))
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        idx = idx.to(data.train.x.device)
        if task is not None:
            loss = T.task_batch(model, optimizer, task, data, idx, cfg, device, (guard, k))[0]
        else:
            loss = T.classify_batch(model, optimizer, data, idx, augment_batch, gen, cfg, device,
                                    (guard, k), group_loss)[0]
        yield lr, (math.nan if guard.bad else float(loss.detach()))


def _passes(T, data: RunData, batch_size: int, gen: torch.Generator, weights=None):
    """Batches of indices, one shuffled (or weighted) pass over the images after another."""
    while True:
        yield from T.epoch_batches(len(data.train), batch_size, gen, None, data.train.x.device,
                                   weights)[0]


def choose_lr(cfg: TrainConfig, data: RunData, log: Log = print) -> tuple[TrainConfig, dict]:
    """``cfg`` with the range test's suggested learning rate (``--lr auto``), and the test."""
    from cnnlab.training import distributed as dist_

    if dist_.world()[1] > 1:
        raise CnnlabError("lr auto runs in one process; run cnnlab lr-find first, then torchrun "
                          "with --lr set to its suggestion")
    res = lr_range_test(cfg, data, log=log)
    log(f"lr auto: {res['suggestion']:.3g}, the range test's suggestion over {len(res['lrs'])} steps "
        f"(steepest fall at {res['steepest']:.3g}, a decade below the minimum {res['minimum_over_10']:.3g})")
    return dataclasses.replace(cfg, lr=res["suggestion"]), res


def suggest(lrs: list[float], smoothed: list[float]) -> dict:
    """The steepest fall, a decade below the minimum, and the suggestion (the steepest fall)."""
    if len(lrs) < 5:
        raise CnnlabError(f"the learning-rate test diverged after {len(lrs)} steps; start lower "
                          "(--start) or check the data")
    log_lr, loss = np.log10(lrs), np.asarray(smoothed)
    low = int(np.argmin(loss))
    slope = np.gradient(loss, log_lr)
    skip = max(1, len(lrs) // 10)  # the first steps: the smoothing has not settled
    minimum = float(lrs[low]) / 10
    # the loss rose from the start: no fall to read, so a decade below the lowest loss
    steepest = float(lrs[skip + int(np.argmin(slope[skip:low]))]) if low > skip else minimum
    return {"steepest": steepest, "minimum_over_10": minimum, "lowest_loss_at": float(lrs[low]),
            "suggestion": steepest}


def figure(res: dict, title: str = ""):
    """Loss against learning rate (log scale) with both readings and the suggestion marked."""
    from cnnlab.viz.plots import plt

    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    ax.plot(res["lrs"], res["losses"], color="#cbd5e1", lw=1, label="loss per step")
    ax.plot(res["lrs"], res["smoothed"], color="#1d4ed8", lw=2, label="smoothed loss")
    for key, colour, words in (("steepest", "#15803d", "steepest fall"),
                               ("minimum_over_10", "#a16207", "minimum / 10")):
        ax.axvline(res[key], color=colour, ls="--", lw=1.2, label=f"{words}: {res[key]:.2g}")
    ax.plot([res["suggestion"]], [np.interp(np.log10(res["suggestion"]), np.log10(res["lrs"]),
                                            res["smoothed"])], "o", color="#b91c1c", ms=9,
            label=f"suggestion: {res['suggestion']:.2g}")
    top = min(max(res["smoothed"]), 2.5 * res["smoothed"][0])
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss",
           ylim=(0.9 * min(res["smoothed"]), top), title=title or "Learning-rate range test")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig
