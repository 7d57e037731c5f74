"""The training loop: ``train_one_epoch`` and ``evaluate``, with the schedule written inline.

Reproducibility: the model is initialised from ``seed``; at the start of every epoch the
global RNG and the data generator are reseeded from ``(seed, epoch)``. So a resumed run needs
only the epoch number to restore every random choice, and two CPU runs with one seed (and one
thread count) repeat exactly.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnlab.config import TrainConfig
from cnnlab.data import ImageDataset, RunData
from cnnlab.data.augment import alternating_flip_mask, augment, progressive_size, resize_batch
from cnnlab.energy import meter
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.predict import predict_probs, tta_level, use_bf16
from cnnlab.log import Log, bars_shown
from cnnlab.models import ImageClassifier, create_model, to_channels_last
from cnnlab.robustness.training import adversarial_batch
from cnnlab.tasks import Task, get_task, unwrap
from cnnlab.tasks.base import input_stats
from cnnlab.training import checkpoint as ckpt
from cnnlab.training import distributed as dist_
from cnnlab.training.groups import ClassBalance, GroupLoss
from cnnlab.training.optim import Lookahead, lr_at, make_optimizer
from cnnlab.training.privacy import PrivateTraining, make_private_compatible
from cnnlab.training.state import (
    TrainState,
    format_row,
    load_training_state,
    save_training_state,
    write_results_csv,
)

DEVICES = r"auto|cpu|cuda(:\d+)?"
"""The devices cnnlab trains on: checked as a run starts, before its folder is made, not when a
saved config loads (older runs may name another)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(DEVICES, name):
        raise CnnlabError(f"--device {name}: cnnlab trains on auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"device {name} asked for, but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + stream) % (2**63)


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the weights (and buffers). A model that asks for it
    (``ema_warmup``: the diffusion model) gets diffusers' warm-up, a decay of
    min(decay, (1 + n) / (10 + n)) at the n-th update: the plain average starts from the random
    initial weights and, at 0.995, still holds 27% of them after 264 steps (a short run)."""
    if not getattr(model, "ema_warmup", False):
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    averaged: list[AveragedModel] = []  # the model below: its update count, read on the host

    @torch.no_grad()
    def warm(ema_params, params, _) -> None:
        n = int(averaged[0].n_averaged)  # a CPU buffer (restored with the checkpoint): no sync
        d = min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(ema_params[0]):
            torch._foreach_lerp_(ema_params, params, 1 - d)
        else:  # integer buffers (a step counter): kept as the model has them
            for e, p in zip(ema_params, params, strict=True):
                e.copy_(p)

    averaged.append(AveragedModel(model, multi_avg_fn=warm, use_buffers=True))
    return averaged[0]


def build_model(cfg: TrainConfig, data: RunData) -> ImageClassifier:
    task = get_task(cfg.task)
    if task is not None:
        return task.build(cfg, data)
    c, h, w = data.train.image_shape
    # DP-SGD accounts only for what the gradients reveal: statistics of the private images
    # put into the model would leak outside the budget, so it gets fixed ones (pixels in [0, 1]
    # to [-1, 1]), the same whatever the data
    mean, std = ([0.5] * c, [0.5] * c) if cfg.dp_epsilon else input_stats(cfg, data.train)
    kwargs = dict(num_classes=data.train.num_classes, in_channels=c, image_size=h, mean=mean,
                  std=std, **cfg.model_kwargs)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **kwargs)
    model.build_kwargs = kwargs  # saved in weights/meta.json so the model can be rebuilt
    if cfg.dp_epsilon:  # no BatchNorm; and no data-derived initialisation, which would leak
        return make_private_compatible(model)
    if hasattr(model, "init_from_data"):
        model.init_from_data(data.train.sample(5000, cfg.seed).x.float() / 255)
    return model


def start_model(cfg: TrainConfig, data: RunData, log: Log = print) -> ImageClassifier:
    """The model a run starts from: fresh, with another run's body (``init_from``) or a
    weights file's tensors (``pretrained``) where the config says so."""
    from cnnlab.training.transfer import init_from, pretrained

    model = build_model(cfg, data)
    if cfg.init_from:
        init_from(model, cfg.init_from, log)
    if cfg.pretrained:
        pretrained(model, cfg.pretrained, log)
    return model


def train_one_epoch(model, optimizer, ema, data: RunData, cfg: TrainConfig, state: TrainState,
                    schedule: tuple[int, int], device: torch.device, progress: bool,
                    lookahead: Lookahead | None = None, group_loss: GroupLoss | None = None,
                    private: PrivateTraining | None = None, task: Task | None = None
                    ) -> tuple[float, float | None]:
    """One pass over the training images; returns (mean loss, accuracy) over all ranks (no
    accuracy for dense tasks).

    ``schedule`` is (total steps, warm-up steps) of the learning-rate schedule."""
    model.train()
    x = data.train.x
    gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, state.epoch, 1))
    weights = group_loss.sample_weights if group_loss is not None else None
    batches, steps = epoch_batches(len(x), cfg.batch_size, gen, private, x.device, weights)
    augment_batch = epoch_augmentation(data, cfg, state.epoch)
    totals = EpochTotals(device)
    guard = FiniteGuard(cfg, state.epoch, defer=device.type != "cpu")
    bar = _bar(steps, f"epoch {state.epoch + 1}/{cfg.epochs}", progress)
    step_optimizer = optimizer if private is None else private.optimizer
    for i, idx in enumerate(batches):
        idx = idx.to(x.device)
        # 1. Set this step's learning rate from the schedule.
        lr = lr_at(state.step, *schedule, cfg.lr, cfg.schedule)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        # 2. Fetch, forward (bf16 autocast where it pays), loss, backward, step.
        parts = {}
        if task is not None:
            loss, correct, n, parts = task_batch(model, step_optimizer, task, data, idx, cfg, device,
                                                 (guard, i))
        else:
            loss, correct, n = classify_batch(model, step_optimizer, data, idx, augment_batch, gen,
                                              cfg, device, (guard, i), group_loss)
        # 3. Weight averaging and the step count.
        if private is not None:
            private.stepped()
        if ema is not None:
            ema.update_parameters(model)
        state.step += 1
        if lookahead is not None:
            lookahead.after_step(state.step, schedule[0])
        state.images_seen += len(idx)
        totals.add(loss, correct, n, parts)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    guard.flush()  # before the epoch's checkpoint: weights after a non-finite loss are not kept
    loss, acc, state.epoch_parts = totals.means()
    return loss, (acc if task is None else None)


class EpochTotals:
    """Sums over an epoch's steps, kept on the device (in place, with Python numbers: no wait
    for a GPU): the loss, correct predictions, images, and a task's named loss parts (a GAN's
    generator and discriminator losses). ``means()`` sums every rank's."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(3, device=device)  # loss sum, correct count, images
        self.parts: dict[str, torch.Tensor] = {}

    def add(self, loss: torch.Tensor, correct, n: int, parts: dict[str, torch.Tensor]) -> None:
        self.sums[0] += loss.detach() * n
        self.sums[1] += correct
        self.sums[2] += n
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0) + v.detach().float() * n

    def means(self) -> tuple[float, float, dict[str, float]]:
        names = sorted(self.parts)
        sums = torch.cat([self.sums, torch.stack([self.parts[k] for k in names])]) if names else self.sums
        values = dist_.all_sum(sums).tolist()  # every rank's images count
        n = values[2]
        return values[0] / n, values[1] / n, {k: v / n for k, v in zip(names, values[3:], strict=True)}


def classify_batch(model, optimizer, data: RunData, idx: torch.Tensor, augment_batch, gen,
                   cfg: TrainConfig, device: torch.device, where: tuple[FiniteGuard, int],
                   group_loss: GroupLoss | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One classification step: fetch the global batch, scale to [0, 1], augment it as one
    tensor on the device and keep this rank's slice (all of it in one process); then train.
    Returns (loss, correct predictions, images)."""
    xb = data.train.x[idx].to(device, non_blocking=True).float().div_(255)
    yb = data.train.y[idx].to(device, non_blocking=True)
    xb, yb = dist_.shard(augment_batch(xb, idx, gen)), dist_.shard(yb)
    if cfg.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    if cfg.adv:  # adversarial training: train on attacked images instead
        xb = adversarial_batch(model, xb, yb, cfg.adv, cfg.adv_eps, cfg.adv_steps, cfg.adv_alpha)
    gb = (None if group_loss is None or data.train.groups is None else
          dist_.shard(data.train.groups[idx].to(device)))
    loss, logits = train_step(model, optimizer, xb, yb, cfg, device, where, group_loss, gb)
    return loss, (logits.argmax(1) == yb).sum(), len(yb)


def task_batch(model, optimizer, task: Task, data: RunData, idx: torch.Tensor, cfg: TrainConfig,
               device: torch.device, where: tuple[FiniteGuard, int]
               ) -> tuple[torch.Tensor, int, int, dict]:
    """One step of a dense task: this rank's images and their targets (boxes, class maps,
    keypoints) fetched by index, the task model's own loss. No augmentation: scenes are
    generated afresh, and a flip would have to move boxes, masks and keypoint order.

    A model with its own ``train_step`` (a GAN: a discriminator step, then a generator step)
    takes the batch, the optimizer and the autocast context and returns (loss, its parts)."""
    idx = dist_.shard(idx)
    xb = data.train.x[idx].to(device, non_blocking=True).float().div_(255)
    if cfg.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    targets = task.targets(data.train, idx, device)
    inner = unwrap(model)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=use_bf16(cfg, device))
    guard, step = where
    if hasattr(inner, "train_step"):
        loss, parts = inner.train_step(xb, targets, optimizer, autocast)
        guard.check(loss, step)
        return loss, 0, len(idx), parts
    with autocast:
        outputs = model(xb, targets) if inner.takes_targets else model(xb)
    loss, _ = inner.loss(outputs, targets)
    guard.check(loss, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, 0, len(idx), {}


class FiniteGuard:
    """A non-finite loss stops the run with the step it happened at and what to change.

    On the CPU each step is checked as it ends. On a GPU, reading the loss would make the host
    wait for the device at every step, so the first bad step is kept on the device and read at
    the end of the epoch (before its checkpoint is written: the saved weights stay finite)."""

    def __init__(self, cfg: TrainConfig, epoch: int, defer: bool):
        self.cfg, self.epoch, self.defer = cfg, epoch, defer
        self.first_bad = self.bad_loss = None  # on the device, from the first deferred check

    def check(self, loss: torch.Tensor, step: int) -> None:
        if not self.defer:
            if not torch.isfinite(loss):
                self.fail(loss.item(), step)
            return
        loss = loss.detach().float()
        new = ~torch.isfinite(loss)
        if self.first_bad is None:
            self.first_bad, self.bad_loss = torch.where(new, step, -1), loss
            return
        new &= self.first_bad < 0
        self.first_bad = torch.where(new, step, self.first_bad)
        self.bad_loss = torch.where(new, loss, self.bad_loss)

    def flush(self) -> None:
        if self.first_bad is not None and self.first_bad.item() >= 0:
            self.fail(self.bad_loss.item(), int(self.first_bad.item()))

    def fail(self, value: float, step: int) -> None:
        raise CnnlabError(
            f"the loss became {value} at epoch {self.epoch + 1}, step {step + 1}; "
            f"lower --lr (now {self.cfg.lr:g}) or check the data for bad values")


def check_divergence(train_loss: float, num_classes: int, cfg: TrainConfig, epoch: int) -> None:
    """A classifier's cross-entropy starts near ln(classes), a uniform guess's; an epoch whose
    mean is 100 times that has diverged even where the loss stayed finite (SGD at lr 1e6 on the
    digits: 1.3e27 after one epoch, 12% accuracy). Stops the run before the epoch's weights are
    saved, as a non-finite loss does."""
    guess = math.log(max(2, num_classes))
    if train_loss > 100 * guess:
        raise CnnlabError(f"the training loss averaged {train_loss:.3g} in epoch {epoch + 1}, over 100x "
                          f"a uniform guess's {guess:.2f}: training diverged; lower --lr (now {cfg.lr:g})")


def epoch_augmentation(data: RunData, cfg: TrainConfig, epoch: int):
    """This epoch's augmentation of a batch (images in [0, 1], their indices, the generator):
    translation, flips (alternating ones keep a per-image phase), cutout, and the image side
    of progressive resizing."""
    x = data.train.x
    flip = cfg.flip and data.flip_ok
    mask = (alternating_flip_mask(len(x), epoch, epoch_seed(cfg.seed, 0, 2)).to(x.device)
            if flip and cfg.alternate_flips else None)
    side = progressive_size(x.shape[-1], cfg.resize_start, cfg.resize_epochs, epoch)

    def apply(xb: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        xb = augment(xb, gen, pad=cfg.crop_padding, flip=flip, cutout_size=cfg.cutout,
                     flip_mask=None if mask is None else mask[idx])
        return resize_batch(xb, side)

    return apply


def train_step(model, optimizer, xb: torch.Tensor, yb: torch.Tensor, cfg: TrainConfig,
               device: torch.device, where: tuple[FiniteGuard, int],
               group_loss: GroupLoss | None = None, gb: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, loss, backward and one optimizer step; a non-finite loss stops the run
    (``where``: the epoch's guard and the step in it)."""
    with torch.autocast(device.type, torch.bfloat16, enabled=use_bf16(cfg, device)
                        and not cfg.dp_epsilon):  # Opacus's per-image gradients in fp32
        logits = model(xb)
    if group_loss is not None:
        loss = group_loss(logits.float(), yb, gb)
    else:
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
    guard, step = where
    guard.check(loss, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def save_image(path: Path, image) -> None:
    """A uint8 (H, W, C) picture as a PNG, written atomically."""
    from PIL import Image

    from cnnlab.io import atomic_write

    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def _bar(total: int, desc: str, progress: bool):
    if not progress or not bars_shown():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="step")


def evaluate(model, data: RunData, cfg: TrainConfig, device: torch.device):
    """Probabilities on the validation set, and the loss and accuracy they give."""
    probs, loss = predict_probs(model, data.eval.x, tta=tta_level(cfg), device=device,
                                channels_last=cfg.channels_last, y=data.eval.y, flip=data.flip_ok,
                                bf16=use_bf16(cfg, device))
    acc = float((probs.argmax(1) == data.eval.y.numpy()).mean())
    return probs, loss, acc


def robust_val_accuracy(model, data: RunData, cfg: TrainConfig, device: torch.device) -> float:
    """PGD-10 accuracy at the training radius on ``adv_eval`` (seeded random) validation images."""
    from cnnlab.robustness.evaluate import robust_accuracy

    val = data.eval.sample(cfg.adv_eval, cfg.seed)
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
    from cnnlab.training.transfer import body_freezer

    device = resolve_device(cfg.device)
    task = get_task(cfg.task)
    if model is None:  # a resumed run reads its own checkpoint instead of any start
        model = start_model(cfg, data, log) if not resume else build_model(cfg, data)
    model = prepare_model(model, cfg, device)
    optimizer = make_optimizer(cfg, model)
    ema = make_ema(model, cfg.ema) if cfg.ema else None
    lookahead = Lookahead(model) if cfg.lookahead else None
    state = TrainState()
    if resume:
        state = load_training_state(run_dir / "weights" / "last.safetensors", model, optimizer, ema,
                                    lookahead)
        log(f"resuming from epoch {state.epoch} of {cfg.epochs}")
    data = data_on(data, device)
    group_loss = make_group_loss(cfg, data.train, state.group_q)
    private = make_private(cfg, model, optimizer, len(data.train), state.dp_history)
    step_model = _step_model(model, private, device, cfg.compile)
    energy_before = meter().snapshot()
    steps_per_epoch = max(1, len(data.train) // min(cfg.batch_size, len(data.train)))
    schedule = (cfg.epochs * steps_per_epoch, int(round(cfg.warmup_epochs * steps_per_epoch)))
    freeze = body_freezer(cfg, model)
    while state.epoch < cfg.epochs:
        freeze(state.epoch)  # --freeze-epochs: the body frozen for the first epochs, then thawed
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(cfg.seed, state.epoch))  # dropout and other global draws
        train_loss, train_acc = train_one_epoch(step_model, optimizer, ema, data, cfg, state,
                                                schedule, device, progress, lookahead, group_loss,
                                                private, task)
        state.train_elapsed += time.perf_counter() - t0  # training alone, evaluation excluded
        if task is None:  # a classifier: a finite loss can still say the steps overshoot
            check_divergence(train_loss, data.train.num_classes, cfg, state.epoch)
        row = {"epoch": state.epoch + 1, "lr": schedule_lr(optimizer),
               "train_loss": train_loss, "train_acc": train_acc}
        row |= keep_loss_state(state, group_loss, private) | state.epoch_parts
        row |= end_of_epoch_eval(eval_model(model, ema), data, cfg, state, device, task)
        close_epoch(state, row, t0, energy_before)
        if dist_.is_main():  # rank 0 alone writes the run folder
            save_epoch(run_dir, model, optimizer, ema, state, lookahead, row)
            if state.epoch in checkpoint_epochs(cfg):
                save_checkpoint(run_dir, model, state.epoch, schedule, steps_per_epoch, cfg)
            log(format_row(row, cfg.epochs, task.score_name if task is not None else "", data.eval_split))
        dist_.barrier()
    return eval_model(model, ema), state


def _step_model(model, private: PrivateTraining | None, device: torch.device, compile_: bool):
    """What the steps call: DP-SGD's wrapped module, the model itself (a GAN averages its own
    gradients over the ranks), or the model under DDP past one process; compiled if asked."""
    if private is not None:
        step_model = private.module
    elif hasattr(model, "train_step"):
        step_model = model
    else:
        step_model = dist_.wrap(model, device)
    return torch.compile(step_model) if compile_ else step_model


def schedule_lr(optimizer) -> float:
    """The schedule's learning rate (the run's --lr as scheduled now), which each parameter
    group scales by its own ``lr_scale`` (a slower body, faster norm layers, Muon's filters)."""
    group = next((g for g in optimizer.param_groups if g.get("lr_scale", 1.0)), optimizer.param_groups[0])
    return group["lr"] / (group.get("lr_scale", 1.0) or 1.0)


def close_epoch(state: TrainState, row: dict, t0: float, energy_before) -> None:
    """Time and energy so far into the epoch's row; the row into the history; the epoch count on."""
    epoch_time = time.perf_counter() - t0
    state.elapsed += epoch_time
    kwh = meter().kwh_since(energy_before)  # this process's
    state.energy_kwh = None if kwh is None else state.resumed_kwh + kwh
    row.update(epoch_time=epoch_time, elapsed=state.elapsed, train_elapsed=state.train_elapsed,
               energy_kwh=state.energy_kwh, energy=meter().method()["kind"])
    state.history.append(row)
    state.epoch += 1


def data_on(data: RunData, device: torch.device) -> RunData:
    """On CUDA, the uint8 training images (and groups) moved to the GPU: no copies per step."""
    if device.type != "cuda":
        return data
    train = data.train
    groups = {"groups": train.groups.to(device)} if train.groups is not None else {}
    return dataclasses.replace(data, train=ImageDataset(
        train.x.to(device), train.y.to(device), train.classes, train.name, train.flip_ok,
        groups, train.group_names))


def keep_loss_state(state: TrainState, group_loss: GroupLoss | None,
                    private: PrivateTraining | None) -> dict:
    """Store Group DRO's weights and DP-SGD's accountant in the training state (for resume);
    the epoch's row gains the epsilon spent so far."""
    if group_loss is not None and group_loss.mode == "dro":
        state.group_q = group_loss.q.tolist()
    if private is None:
        return {}
    state.dp_history = [list(h) for h in private.accountant.history]
    return {"dp_epsilon": private.epsilon()}


def epoch_batches(n: int, batch_size: int, gen: torch.Generator,
                  private: PrivateTraining | None, device: torch.device | None = None,
                  weights: torch.Tensor | None = None):
    """(this epoch's batches of indices, their number): a shuffled order cut into full batches
    (the last partial one dropped), DP-SGD's Poisson batches, or, with ``weights``, n draws with
    replacement in proportion to them (Group DRO's group-balanced sampling). The order is drawn
    on the CPU (the same on every machine) and moved to ``device`` once per epoch."""
    if private is not None:
        return private.batches(n, gen), private.steps_per_epoch
    batch = min(batch_size, n)
    order = (torch.randperm(n, generator=gen) if weights is None else
             torch.multinomial(weights, n, replacement=True, generator=gen)).to(device or "cpu")
    return (order[i * batch: (i + 1) * batch] for i in range(n // batch)), n // batch


def make_private(cfg: TrainConfig, model, optimizer, n_train: int,
                 history: list | None) -> PrivateTraining | None:
    """DP-SGD's machinery for ``cfg.dp_epsilon`` > 0 (one process only), else None."""
    if not cfg.dp_epsilon:
        return None
    if dist_.world()[1] > 1:
        raise CnnlabError("--dp-epsilon runs in one process (the accountant is per process); "
                          "drop torchrun or --dp-epsilon")
    return PrivateTraining(model, optimizer, n_train, min(cfg.batch_size, n_train), cfg.epochs,
                           cfg.dp_epsilon, cfg.dp_delta, cfg.dp_clip, history)


def make_group_loss(cfg: TrainConfig, train: ImageDataset, q: list[float] | None) -> GroupLoss | None:
    """The loss of ``cfg.groups`` or ``cfg.balance`` (None for plain ERM); checks the data has
    groups."""
    if cfg.balance:
        return ClassBalance(cfg.balance, train.y, train.num_classes, cfg.label_smoothing)
    if not cfg.groups:
        return None
    if train.groups is None:
        raise CnnlabError(f"--groups {cfg.groups} needs data with a group per image ({cfg.dataset} "
                          f"has none): use shapes, or an npz file with a groups array")
    if dist_.world()[1] > 1:
        raise CnnlabError("--groups runs in one process: its group weights are not shared across "
                          "ranks; drop torchrun or --groups")
    return GroupLoss(cfg.groups, train.y, train.groups, train.num_classes, len(train.group_names),
                     cfg.dro_eta, cfg.label_smoothing, q)


def checkpoint_epochs(cfg: TrainConfig) -> list[int]:
    """The epochs whose weights ``cfg.checkpoints`` keeps: evenly spaced, the last included."""
    n = cfg.checkpoints
    return sorted({round(cfg.epochs * j / n) for j in range(1, n + 1)}) if n else []


def tracin_weight(epoch: int, cfg: TrainConfig, schedule: tuple[int, int], steps_per_epoch: int) -> float:
    """The step size a kept checkpoint stands for in TracIn (Pruthi et al. 2020): the learning
    rate summed over the steps since the previous kept checkpoint, in epochs (so a constant lr
    over one epoch weighs lr). The lr at one instant would not do: on a cosine schedule the
    last epoch's middle has ~1/1000 of the peak, and the model whose mistakes are explained
    would barely count."""
    kept = checkpoint_epochs(cfg)
    previous = max([e for e in kept if e < epoch], default=0)
    steps = range(previous * steps_per_epoch, epoch * steps_per_epoch)
    return sum(lr_at(s, *schedule, cfg.lr, cfg.schedule) for s in steps) / steps_per_epoch


def save_checkpoint(run_dir: Path, model, epoch: int, schedule: tuple[int, int],
                    steps_per_epoch: int, cfg: TrainConfig) -> None:
    """weights/epoch-NNN.safetensors: the model after ``epoch`` epochs, with the step size it
    stands for in TracIn (``tracin_weight``)."""
    ckpt.save_tensors(run_dir / "weights" / f"epoch-{epoch:03d}.safetensors", model.state_dict(),
                      {"epoch": epoch, "lr": tracin_weight(epoch, cfg, schedule, steps_per_epoch),
                       "lr_is": "summed over the interval since the previous kept checkpoint"})


def prepare_model(model: ImageClassifier, cfg: TrainConfig, device: torch.device) -> ImageClassifier:
    """Move the model to its device and memory format; SyncBatchNorm under DDP if asked."""
    if cfg.sync_bn and dist_.world()[1] > 1:
        if device.type != "cuda":
            raise CnnlabError("sync_bn needs CUDA (torch's SyncBatchNorm runs on GPUs only); on "
                              "CPU drop --sync-bn: each rank then keeps its own BatchNorm statistics")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    return to_channels_last(model) if cfg.channels_last else model


def end_of_epoch_eval(model, data: RunData, cfg: TrainConfig, state: TrainState,
                      device: torch.device, task: Task | None = None) -> dict:
    """Validation loss and accuracy, or a dense task's score (rank 0, every ``eval_every``
    epochs and at the end)."""
    row = {"val_loss": None, "val_acc": None, "val_robust_acc": None, "val_score": None}
    last = state.epoch + 1 == cfg.epochs
    due = dist_.is_main() and (last or (state.epoch + 1) % cfg.eval_every == 0)
    if due and task is not None:
        with meter().phase("evaluation"):
            result = task.evaluate(model, data.eval, device, use_bf16(cfg, device))
        row["val_score"] = result["score"]
        row |= result.get("row", {})  # a task's own columns (a GAN's KID, class coverage)
        state.snapshot = result.get("snapshot")  # a task's picture of the epoch (a GAN's samples)
        state.final_eval = result if last else None
    elif due:
        with meter().phase("evaluation"):
            probs, row["val_loss"], row["val_acc"] = evaluate(model, data, cfg, device)
        if not math.isfinite(row["val_loss"]):  # the last steps broke the weights: no model to save
            raise CnnlabError(f"the validation loss became {row['val_loss']} after epoch {state.epoch + 1}: "
                              f"the model's outputs are no longer numbers; lower --lr (now {cfg.lr:g})")
        state.final_eval = (probs, row["val_loss"]) if last else None
        if cfg.adv:
            row["val_robust_acc"] = robust_val_accuracy(model, data, cfg, device)
    return row


def save_epoch(run_dir: Path, model, optimizer, ema, state: TrainState,
               lookahead: Lookahead | None, row: dict) -> None:
    """The best weights so far, the resumable checkpoint and results.csv, each written atomically."""
    score = row["val_acc"] if row["val_acc"] is not None else row.get("val_score")
    if score is not None and row.get("lower_is_better"):  # a GAN's FID: the best is the lowest
        score = -score
    if score is not None and (score > state.best_acc or state.best_epoch < 0):
        state.best_acc, state.best_epoch = score, state.epoch
        ckpt.save_tensors(run_dir / "weights" / "best.safetensors",
                          eval_model(model, ema).state_dict(), {"epoch": state.epoch})
    save_training_state(run_dir / "weights" / "last.safetensors", model, optimizer, ema, state,
                        lookahead)
    if state.snapshot is not None:  # as StyleGAN keeps its training snapshots
        save_image(run_dir / "snapshots" / f"epoch-{state.epoch:03d}.png", state.snapshot)
        state.snapshot = None
    write_results_csv(run_dir / "results.csv", state.history)
