"""The training loop: ``train_one_epoch`` and ``evaluate``, with the schedule written inline.

Reproducibility: the model is initialised from ``seed``; at the start of every epoch the
global RNG and the data generator are reseeded from ``(seed, epoch)``. So a resumed run needs
only the epoch number to restore every random choice, and two CPU runs with one seed repeat
exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnlab.config import TrainConfig
from cnnlab.data import ImageDataset, RunData
from cnnlab.data.augment import alternating_flip_mask, augment
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.predict import predict_probs
from cnnlab.io import atomic_write
from cnnlab.models import ImageClassifier, create_model
from cnnlab.robustness.training import adversarial_batch
from cnnlab.train import checkpoint as ckpt
from cnnlab.train import distributed as dist_

Log = Callable[[str], None]
COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_robust_acc",
           "epoch_time", "elapsed"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"device {name} asked for, but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + stream) % (2**63)


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


def build_model(cfg: TrainConfig, data: RunData) -> ImageClassifier:
    c, h, w = data.train.image_shape
    mean, std = data.train.mean_std()
    kwargs = dict(num_classes=data.train.num_classes, in_channels=c, image_size=h, mean=mean,
                  std=std, **cfg.model_kwargs)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **kwargs)
    model.build_kwargs = kwargs  # saved in weights/meta.json so the model can be rebuilt
    if hasattr(model, "init_from_data"):
        model.init_from_data(data.train.sample(5000, cfg.seed).x.float() / 255)
    return model


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Weight decay on weights only: biases and norm layers are left alone. Normalization
    parameters learn ``bias_lr_scale`` times faster (each group carries its ``lr_scale``)."""
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


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    elapsed: float = 0.0
    images_seen: int = 0
    history: list[dict] = field(default_factory=list)
    # The last epoch's validation (probabilities, loss), kept so that finish_run need not
    # predict again; not saved in checkpoints.
    final_eval: tuple | None = field(default=None, repr=False)


def train_one_epoch(model, optimizer, ema, data: RunData, cfg: TrainConfig, state: TrainState,
                    total_steps: int, warmup_steps: int, device: torch.device,
                    progress: bool, lookahead: Lookahead | None = None) -> tuple[float, float]:
    model.train()
    x, y = data.train.x, data.train.y
    batch = min(cfg.batch_size, len(x))
    steps = len(x) // batch  # drop the last partial batch; each epoch reshuffles
    gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, state.epoch, 1))
    order = torch.randperm(len(x), generator=gen).to(x.device)
    flip = cfg.flip and data.train.flip_ok
    flip_mask = (alternating_flip_mask(len(x), state.epoch, epoch_seed(cfg.seed, 0, 2))
                 if flip and cfg.alternate_flips else None)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    bar = _bar(steps, f"epoch {state.epoch + 1}/{cfg.epochs}", progress)
    for i in range(steps):
        idx = order[i * batch: (i + 1) * batch]
        # 1. Fetch the global batch, scale to [0, 1], augment it as one tensor on the device,
        #    and keep this rank's slice (all of it in a single process).
        xb = x[idx].to(device, non_blocking=True).float().div_(255)
        yb = y[idx].to(device, non_blocking=True)
        xb = augment(xb, gen, pad=cfg.crop_padding, flip=flip, cutout_size=cfg.cutout,
                     flip_mask=None if flip_mask is None else flip_mask[idx.cpu()])
        xb, yb = dist_.shard(xb), dist_.shard(yb)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if cfg.adv:  # adversarial training: train on attacked images instead
            xb = adversarial_batch(model, xb, yb, cfg.adv, cfg.adv_eps, cfg.adv_steps, cfg.adv_alpha)
        # 2. Set this step's learning rate from the schedule.
        lr = lr_at(state.step, total_steps, warmup_steps, cfg.lr, cfg.schedule)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        # 3. Forward (bf16 autocast on CUDA), loss, backward, step.
        with torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise CnnlabError(
                f"the loss became {loss.item()} at epoch {state.epoch + 1}, step {i + 1}; "
                f"lower --lr (now {cfg.lr:g}) or check the data for bad values")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        state.step += 1
        if lookahead is not None:
            lookahead.after_step(state.step, total_steps)
        state.images_seen += len(idx)
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    n = steps * len(dist_.shard(torch.arange(batch)))
    return float(loss_sum) / n, float(correct) / n


def _bar(total: int, desc: str, progress: bool):
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="step")


def evaluate(model, data: RunData, cfg: TrainConfig, device: torch.device):
    """Probabilities on the validation set, and the loss and accuracy they give."""
    probs, loss = predict_probs(model, data.val.x, tta=cfg.tta, device=device,
                                channels_last=cfg.channels_last, y=data.val.y)
    acc = float((probs.argmax(1) == data.val.y.numpy()).mean())
    return probs, loss, acc


def robust_val_accuracy(model, data: RunData, cfg: TrainConfig, device: torch.device) -> float:
    """PGD-10 accuracy at the training radius on ``adv_eval`` (seeded random) validation images."""
    from cnnlab.robustness.evaluate import robust_accuracy

    val = data.val.sample(cfg.adv_eval, cfg.seed)
    x = val.x.to(device).float() / 255
    torch.manual_seed(cfg.seed)
    result = robust_accuracy(model, x, val.y.to(device), ["pgd"], cfg.adv_eps)
    return result["robust_accuracy"]


def eval_model(model, ema):
    """The model to evaluate and save: the EMA of weights when enabled."""
    return ema.module if ema is not None else model


def fit(cfg: TrainConfig, data: RunData, run_dir: Path, resume: bool = False,
        log: Log = print, progress: bool = True, model: ImageClassifier | None = None,
        ) -> tuple[ImageClassifier, TrainState]:
    """Train ``cfg.model`` on ``data`` (or fine-tune ``model``), checkpointing into
    ``run_dir/weights`` every epoch."""
    device = resolve_device(cfg.device)
    model = (model if model is not None else build_model(cfg, data)).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
           if cfg.ema else None)
    lookahead = Lookahead(model) if cfg.lookahead else None
    state = TrainState()
    if resume:
        state = load_training_state(run_dir / "weights" / "last.safetensors", model, optimizer, ema,
                                    lookahead)
        log(f"resuming from epoch {state.epoch} of {cfg.epochs}")
    if device.type == "cuda":  # keep the uint8 training images on the GPU: no copies per step
        train = data.train
        data = dataclasses.replace(data, train=ImageDataset(
            train.x.to(device), train.y.to(device), train.classes, train.name, train.flip_ok))
    step_model = dist_.wrap(model, device)
    step_model = torch.compile(step_model) if cfg.compile else step_model
    main = dist_.is_main()
    steps_per_epoch = max(1, len(data.train) // min(cfg.batch_size, len(data.train)))
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    while state.epoch < cfg.epochs:
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(cfg.seed, state.epoch))  # dropout and other global draws
        train_loss, train_acc = train_one_epoch(step_model, optimizer, ema, data, cfg, state,
                                                total_steps, warmup_steps, device, progress,
                                                lookahead)
        last = state.epoch + 1 == cfg.epochs
        row = {"epoch": state.epoch + 1, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": train_loss, "train_acc": train_acc, "val_loss": None, "val_acc": None}
        row["val_robust_acc"] = None
        if main and (last or (state.epoch + 1) % cfg.eval_every == 0):
            probs, row["val_loss"], row["val_acc"] = evaluate(eval_model(model, ema), data, cfg, device)
            state.final_eval = (probs, row["val_loss"]) if last else None
            if cfg.adv:
                row["val_robust_acc"] = robust_val_accuracy(eval_model(model, ema), data, cfg, device)
        epoch_time = time.perf_counter() - t0
        state.elapsed += epoch_time
        row.update(epoch_time=epoch_time, elapsed=state.elapsed)
        state.history.append(row)
        state.epoch += 1
        if main:  # rank 0 alone writes the run folder
            if row["val_acc"] is not None and row["val_acc"] > state.best_acc:
                state.best_acc, state.best_epoch = row["val_acc"], state.epoch
                ckpt.save_tensors(run_dir / "weights" / "best.safetensors",
                                  eval_model(model, ema).state_dict(), {"epoch": state.epoch})
            save_training_state(run_dir / "weights" / "last.safetensors", model, optimizer, ema, state,
                                lookahead)
            write_results_csv(run_dir / "results.csv", state.history)
            log(format_row(row, cfg.epochs))
        dist_.barrier()
    return eval_model(model, ema), state


def last_epoch_only(log: Log, prefix: str) -> Log:
    """A log for sub-runs: only the final epoch's line, prefixed with the sub-run's name."""

    def inner(line: str) -> None:
        if line.startswith("epoch"):
            done, total = line.split()[1].split("/")
            if done == total:
                log(f"  [{prefix}] {line}")

    return inner


def format_row(row: dict, epochs: int) -> str:
    val = (f"  val_loss {row['val_loss']:.4f}  val_acc {100 * row['val_acc']:.2f}%"
           if row["val_acc"] is not None else "")
    if row.get("val_robust_acc") is not None:
        val += f"  robust_acc {100 * row['val_robust_acc']:.2f}%"
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4f}  train_loss "
            f"{row['train_loss']:.4f}  train_acc {100 * row['train_acc']:.2f}%{val}  "
            f"{row['epoch_time']:.1f}s")


def write_results_csv(path: Path, history: list[dict]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
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
    saved = {k: v for k, v in vars(state).items() if k != "final_eval"}
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
    return TrainState(**meta["train_state"])
