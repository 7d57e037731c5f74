"""What a training run carries between epochs, and how it is saved: the resumable checkpoint
(``weights/last.safetensors``, see checkpoint.py) and ``results.csv``."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_write
from cnnlab.training import checkpoint as ckpt
from cnnlab.training.optim import Lookahead

COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_score", "val_robust_acc",
           "dp_epsilon", "d_loss", "g_loss", "d_real", "d_fake", "val_kid", "val_coverage", "epoch_time",
           "elapsed", "train_elapsed", "energy_kwh", "energy"]
THRESHOLDS = (0.85, 0.90, 0.93, 0.94)
"""Validation accuracies whose first crossing a run records (time to accuracy)."""


TRANSIENT = ("final_eval", "snapshot", "epoch_parts", "resumed_kwh")
"""TrainState fields of the epoch at hand, not saved in checkpoints."""


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    elapsed: float = 0.0
    train_elapsed: float = 0.0
    """Seconds spent training (evaluation excluded)."""
    images_seen: int = 0
    energy_kwh: float | None = 0.0
    """kWh of the training so far, the earlier processes of a resumed run included (None
    where nothing measures or estimates it)."""
    resumed_kwh: float = 0.0
    """Of ``energy_kwh``, what the earlier processes used (0 in a run that never resumed)."""
    history: list[dict] = field(default_factory=list)
    dp_history: list | None = None
    """DP-SGD's accountant history (noise multiplier, sample rate, steps), kept for resuming."""
    group_q: list[float] | None = None
    """Group DRO's weights over class x group cells (``groups: dro``), kept for resuming."""
    # The last epoch's validation (probabilities, loss), kept so that finish_run need not
    # predict again; not saved in checkpoints.
    final_eval: tuple | None = field(default=None, repr=False)
    snapshot: object = field(default=None, repr=False)
    """A task's picture of the last evaluation (a GAN's sample grid), written with the epoch."""
    epoch_parts: dict = field(default_factory=dict, repr=False)
    """The last epoch's mean loss parts of a task that has them (a GAN's d_loss, g_loss)."""


def format_row(row: dict, epochs: int, score_name: str = "", split: str = "val") -> str:
    """One log line per epoch; a dense task's score under its own name (mAP, mIoU, PCK); the
    evaluation named by its split (val: a hold-out of the training data; test: the test split,
    where a run holds out no validation split). results.csv keeps the val_* columns either way."""
    val = (f"  {split}_loss {row['val_loss']:.4f}  {split}_acc {100 * row['val_acc']:.2f}%"
           if row["val_acc"] is not None else "")
    if row.get("val_score") is not None:
        val += f"  {split} {score_name or 'score'} {row['val_score']:.4f}"
    if row.get("val_robust_acc") is not None:
        val += f"  robust_acc {100 * row['val_robust_acc']:.2f}%"
    if row.get("g_loss") is not None:
        val += f"  D {row['d_loss']:.3f}  G {row['g_loss']:.3f}"
    if row.get("dp_epsilon") is not None:
        val += f"  epsilon {row['dp_epsilon']:.2f}"
    acc = f"  train_acc {100 * row['train_acc']:.2f}%" if row.get("train_acc") is not None else ""
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4f}  train_loss "
            f"{row['train_loss']:.4f}{acc}{val}  {row['epoch_time']:.1f}s")


def write_results_csv(path: Path, history: list[dict]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(history)

    atomic_write(path, write)


def save_training_state(path: Path, model, optimizer, ema, state: TrainState,
                        lookahead: Lookahead | None = None) -> None:
    tensors = ckpt.prefixed("model.", model.state_dict())
    opt_tensors, opt_rest = ckpt.optimizer_to_tensors(optimizer)
    tensors.update(opt_tensors)
    if ema is not None:
        tensors.update(ckpt.prefixed("ema.", ema.state_dict()))
    if lookahead is not None:
        tensors.update(ckpt.prefixed("lookahead.", lookahead.slow))
    saved = {k: v for k, v in vars(state).items() if k not in TRANSIENT}
    meta = {"train_state": saved, "optimizer": opt_rest}
    ckpt.save_tensors(path, tensors, meta)


def load_training_state(path: Path, model, optimizer, ema,
                        lookahead: Lookahead | None = None) -> TrainState:
    tensors, meta = ckpt.load_tensors(path)
    if "train_state" not in meta:
        raise CnnlabError(f"{path} holds no training state; it cannot be resumed")
    model.load_state_dict(ckpt.strip_prefix("model.", tensors))
    ckpt.optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
    if ema is not None:
        ema.load_state_dict(ckpt.strip_prefix("ema.", tensors))
    if lookahead is not None:
        for k, v in ckpt.strip_prefix("lookahead.", tensors).items():
            lookahead.slow[k].copy_(v)
    state = TrainState(**meta["train_state"])
    state.resumed_kwh = state.energy_kwh or 0.0  # the energy results.csv counts on from
    return state


def time_to_accuracy(history: list[dict], thresholds=THRESHOLDS) -> dict[str, float | None]:
    """For each threshold, the training seconds (evaluation excluded) after which validation
    accuracy first reached it, or None. Only evaluated epochs count: with --eval-every 1 the
    answer is exact to the epoch. The schedule depends on the run's length, so a shorter run
    needs its own schedule rather than this early crossing."""
    out: dict[str, float | None] = {}
    for t in thresholds:
        hit = next((r for r in history if r.get("val_acc") is not None and r["val_acc"] >= t), None)
        out[f"{t:.2f}"] = hit.get("train_elapsed") if hit else None
    return out
