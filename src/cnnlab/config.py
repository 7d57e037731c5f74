"""Typed training configuration: one dataclass, a help string per field, YAML round trip.

The CLI builds its flags from these fields (``cnnlab train --help``), recipes in
``configs/*.yaml`` set them, and every run saves the full config as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError


def _f(default: Any, help: str, bounds: tuple[float, float] | None = None, **kw: Any) -> Any:
    """A dataclass field with a help string (shown by ``--help``) and, for a number, the
    closed interval its values must lie in (checked, with finiteness, by ``check_bounds``)."""
    meta = {"help": help, "bounds": bounds}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def check_bounds(name: str, value: float, bounds: tuple[float, float] | None) -> None:
    """One line for a number that is NaN, infinite or outside its declared interval."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise CnnlabError(f"bad config: {name} must be a finite number, not {value}")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        low, high = (f"{int(b):,}" if float(b).is_integer() else f"{b:g}" for b in bounds)
        shown = f"{value:,}" if isinstance(value, int) else f"{value:g}"
        raise CnnlabError(f"bad config: {name} must be between {low} and {high}, not {shown}")


SEED_MAX = 2**32 - 1
"""numpy and torch seeds are 32-bit here: a larger one would wrap."""


TASK_HEADS = {"classify": (), "detect": ("centernet", "centernet-fine", "fcos"), "segment": ("unet",),
              "pose": ("regression", "heatmap"),
              "generate": ("dcgan", "conditional", "ddpm", "ddpm-conditional")}
"""Each task and its heads; the first is the default."""


GAN_LOSSES = ("nonsaturating", "minimax", "hinge")
"""The GAN losses of task generate (cnnlab.models.gan)."""


GENERATE_DEFAULTS = {"task": "generate", "head": "dcgan", "dataset": "digits", "model": "resnet20",
                     "epochs": 60, "batch_size": 64, "optimizer": "adamw", "lr": 2e-4, "momentum": 0.5,
                     "weight_decay": 0.0, "schedule": "constant", "warmup_epochs": 0.0,
                     "ema": 0.99, "eval_every": 5, "flip": False, "r1_gamma": 1.0, "r1_every": 16}
"""DCGAN's recipe (Adam at 2e-4, beta1 0.5, no decay, constant rate) with an EMA of the weights
and a lazy R1 penalty (gamma 1 on every 16th discriminator step, 16x as strong: about 3% of the
time). Without R1 the discriminator wins: on CIFAR-10 the FID turned back up after 4 epochs and
the samples collapsed, on shapes recall fell to 0.04 (benchmarks/RESULTS.md, 2026-12-06).
What ``cnnlab generate train`` starts from (flags and --config override it). ``model`` is the
judge's architecture, when it trains one: ResNet-20 (LeNet-5 stays near chance on shapes)."""


DIFFUSION_DEFAULTS = GENERATE_DEFAULTS | {"head": "ddpm", "batch_size": 128, "lr": 1e-3, "momentum": 0.9,
                                          "ema": 0.995, "r1_gamma": 0.0, "r1_every": 1}
"""``cnnlab generate train --head ddpm``'s start: Adam at 1e-3 with the usual beta1 of 0.9 (the
GAN's 0.5 is for a game; a denoiser fits one regression), larger batches, a slower EMA, no R1
(there is no discriminator). Measured against the GAN at equal time in benchmarks/gan.py."""


def generate_defaults(head: str | None) -> dict:
    """The starting recipe of ``cnnlab generate train`` for this head (None: the default)."""
    if isinstance(head, str) and is_diffusion(head):  # (a file's head of another type: its check)
        return DIFFUSION_DEFAULTS | {"head": head}
    return GENERATE_DEFAULTS


def is_diffusion(head: str) -> bool:
    """The heads of task generate that train a diffusion model (the others train a GAN)."""
    return head.startswith("ddpm")


def _default(name: str) -> Any:
    """A TrainConfig field's default (a check that compares with it says the default once)."""
    return TrainConfig.__dataclass_fields__[name].default


FROM_SCRATCH = {"init_from": "", "pretrained": "", "freeze_epochs": 0, "body_lr_scale": 1.0,
                "lr_find": False}
"""The settings of where a run starts, at their from-scratch values (``TrainConfig.fresh``)."""


@dataclass
class TrainConfig:
    """Everything needed to repeat a training run."""

    dataset: str = _f("digits", "dataset name (`cnnlab datasets`), e.g. digits, cifar10, npz:PATH")
    model: str = _f("lenet5", "model name (`cnnlab models`); for detect, segment and pose the backbone; "
                    "for generate the judge's, when cnnlab generate train trains one")
    task: str = _f(
        "classify", "classify (one label per image), detect (boxes), segment (a class per pixel) or "
        "pose (keypoints of each object, on crops of its box); dense tasks need data with "
        "annotations: scenes, yolo:PATH, coco:PATH, voc:PATH")
    head: str = _f(
        "", "the task's head: detect: centernet (ours, default), centernet-fine (on a stride-2 "
        "map) or fcos (torchvision's, the reference); pose: regression (DeepPose, default) or "
        "heatmap; segment: unet; generate: dcgan (default) or conditional (GANs), ddpm or "
        "ddpm-conditional (diffusion)")
    model_kwargs: dict = _f({}, "extra keyword arguments for the model builder, e.g. {width: 2}")
    gan_loss: str = _f(
        "nonsaturating", "generate: the GAN loss, nonsaturating (Goodfellow et al.'s practical "
        "one), minimax (the original game) or hinge")
    spectral_norm: bool = _f(False, "generate: spectral normalisation of the discriminator "
                             "(Miyato et al. 2018) instead of its BatchNorm")
    r1_gamma: float = _f(0.0, "generate: weight of the R1 gradient penalty on real images "
                         "(Mescheder et al. 2018; 0: off)", bounds=(0, 1e6))
    r1_every: int = _f(1, "generate: apply the R1 penalty every this many discriminator steps, "
                       "scaled up as many times (StyleGAN2's lazy regularisation; 1: every step)",
                       bounds=(1, 10_000))
    aux_weight: float = _f(
        0.0, "generate, conditional head: weight of an auxiliary classifier's loss (AC-GAN, Odena "
        "et al. 2017): the discriminator also classifies real images, and the generator is "
        "rewarded when its images read as the class asked for (0: off)", bounds=(0, 1e3))
    d_lr_scale: float = _f(1.0, "generate: the discriminator's learning rate as a multiple of "
                           "the generator's (TTUR, Heusel et al. 2017)", bounds=(1e-6, 1e4))
    latent_dim: int = _f(64, "generate: length of the generator's noise vector", bounds=(1, 4096))
    sampling_steps: int = _f(25, "generate, ddpm heads: DDIM steps per image drawn (more: slower "
                             "sampling, a little better images)", bounds=(1, 1000))
    judge: str = _f(
        "", "generate: a classifier run on the same data whose features score the samples "
        "(domain FID, class coverage); `cnnlab generate train` trains one when empty")
    data_dir: str = _f("~/.cache/cnnlab", "where downloaded datasets are cached and looked for")
    image_size: int = _f(0, "resize folder and annotated images to this square side, or draw procedural "
                            "data (shapes, scenes, videos) at it; digits, MNIST, CIFAR and npz keep their "
                            "own (0: the dataset's default)", bounds=(0, 4096))
    val_split: float = _f(
        0.0,
        "hold out this many training images (>=1) or this fraction (<1) for validation; "
        "0 evaluates on the dataset's test split (or holds out 10%% if it has none)",
        bounds=(0, 1e7))
    val_seed: int = _f(
        0, "seed of the validation hold-out; fixed apart from --seed, so seeds compare models "
        "on one split", bounds=(0, SEED_MAX))
    limit_train: int = _f(0, "train on a seeded random subset of N training images (0: all)", bounds=(0, 1e9))
    skip_bad: bool = _f(
        False, "detection data: leave out images whose annotations are malformed (listed in the "
        "run folder's skipped.json) instead of stopping at the first")
    label_noise: float = _f(
        0.0, "flip the labels of this fraction of the training images to another class, seeded "
        "by val_seed (a known answer for finding bad data; the flipped images are recorded)",
            bounds=(0, 0.99))
    drop_train: str = _f(
        "", "leave out these training images: a text file of indices into the training split "
        "(after the hold-out and limit_train), one per line (remove-and-retrain, k-fold)")
    permute_pixels: bool = _f(
        False, "shuffle pixel positions of every image by one fixed permutation (the permutation test)")
    epochs: int = _f(20, "passes over the training set", bounds=(1, 100_000))
    batch_size: int = _f(128, "images per optimizer step", bounds=(1, 1_000_000))
    optimizer: str = _f("sgd", "sgd (Nesterov momentum), adamw, or muon (Muon for convolution "
                        "filters, SGD for the rest: airbench94_muon)")
    lr: float = _f(0.05, "peak learning rate, reached after warm-up; auto: the suggestion of the "
                   "learning-rate range test (cnnlab lr-find), run first", bounds=(1e-12, 1e6))
    lr_find: bool = _f(False, "choose lr by the learning-rate range test before training (what "
                       "--lr auto and lr: auto set); the config saved keeps the lr it chose")
    momentum: float = _f(0.9, "SGD momentum (AdamW: beta1)", bounds=(0, 0.9999))
    nesterov: bool = _f(True, "use Nesterov momentum with SGD")
    muon_lr: float = _f(0.24, "optimizer muon: peak learning rate of the convolution filters "
                        "(airbench94_muon's 0.24)", bounds=(1e-9, 100))
    muon_momentum: float = _f(0.6, "optimizer muon: the filters' momentum (airbench94_muon's 0.6)",
                              bounds=(0, 0.9999))
    weight_decay: float = _f(5e-4, "weight decay on weights (not on biases or norm layers)", bounds=(0, 1))
    warmup_epochs: float = _f(1.0, "linear warm-up from 0 to lr over this many epochs", bounds=(0, 100_000))
    schedule: str = _f("cosine", "decay after warm-up: cosine, linear or constant")
    label_smoothing: float = _f(0.0, "label smoothing for the cross-entropy loss", bounds=(0, 0.99))
    bias_lr_scale: float = _f(
        1.0, "multiply the learning rate of normalization-layer parameters by this (airbench: 64)",
            bounds=(1e-6, 1e4))
    ema: float = _f(0.0, "decay of an exponential moving average of weights (0: off)", bounds=(0, 0.999999))
    lookahead: bool = _f(
        False, "every 5 steps move slow weights toward the weights and restart from them, with "
        "a pull that weakens as training ends (airbench); the slow weights are the final model")
    tta: int = _f(0, "test-time augmentation: 0 off, 1 average with the mirror image, "
                  "2 also one-pixel shifts of both (6 views)", bounds=(0, 2))
    crop_padding: int = _f(0, "random translation by up to this many pixels (pad-and-crop)", bounds=(0, 256))
    flip: bool = _f(True, "random horizontal flips, where the dataset allows them")
    alternate_flips: bool = _f(
        False, "flip each image in every other epoch (random phase per image) instead of at "
        "random each epoch: no image is seen unflipped twice in a row (airbench)")
    cutout: int = _f(0, "side of a random square erased from each training image (0: off)", bounds=(0, 4096))
    resize_start: int = _f(
        0, "progressive resizing: train the first epochs on images downscaled to this side, "
        "growing to full size by resize_epochs (0: off); evaluation is always at full size", bounds=(0, 4096))
    resize_epochs: int = _f(0, "progressive resizing: epochs until images reach full size",
        bounds=(0, 100_000))
    balance: str = _f(
        "", "class imbalance: sampler (draw each class equally often) or loss (weigh each class's "
        "loss equally); empty: the classes as the data has them")
    groups: str = _f(
        "", "train with the data's groups (shapes' colour, an npz groups array): balance "
        "(every class x group cell weighs the same) or dro (Group DRO, Sagawa et al. 2020); "
        "empty: plain ERM")
    dro_eta: float = _f(0.01, "Group DRO's step size for the group weights", bounds=(1e-9, 100))
    dp_epsilon: float = _f(
        0.0, "differentially private training (DP-SGD with Opacus): spend at most this epsilon "
        "over all epochs, at dp_delta (BatchNorm becomes GroupNorm; fp32; 0: off)", bounds=(0, 1e6))
    dp_delta: float = _f(1e-5, "DP-SGD's delta (keep it below 1 / training images)", bounds=(1e-30, 0.5))
    dp_clip: float = _f(1.0, "DP-SGD: each image's gradient is clipped to this norm", bounds=(1e-9, 1e6))
    adv: str = _f("", "adversarial training: pgd (Madry et al. 2018) or fgsm-rs (Wong et al. 2020)")
    adv_eps: float = _f(8 / 255, "adversarial training radius (L-inf, pixels in [0, 1]); 8/255 works",
        bounds=(0, 1))
    adv_steps: int = _f(7, "PGD steps per batch in adversarial training", bounds=(1, 1000))
    adv_alpha: float = _f(0.0, "attack step size (0: 2.5*eps/steps for pgd, 1.25*eps for fgsm-rs)",
        bounds=(0, 1))
    adv_eval: int = _f(500, "validation images attacked (PGD-10) at each evaluation when --adv is set",
        bounds=(0, 1e7))
    init_from: str = _f(
        "", "start from the trained body of this run folder (a classifier's layers or a dense "
        "model's backbone, by name and shape; heads start fresh), e.g. a run on more data")
    pretrained: str = _f(
        "", "start from a weights file you have (its classifier starts fresh): safetensors in "
        "timm's / Hugging Face's layout or cnnlab's, or torchvision's .pth (read with "
        "weights_only=True, the hash in its name checked); e.g. --model timm:resnet18 "
        "--pretrained resnet18-f37072fd.pth. Nothing is downloaded")
    freeze_epochs: int = _f(
        0, "fine-tuning: train only the head (and BatchNorm) for this many epochs, the body "
        "frozen, then everything; epochs or more: a linear probe (the body never trains)",
        bounds=(0, 100_000))
    body_lr_scale: float = _f(
        1.0, "fine-tuning: the body's learning rate as a fraction of the head's (discriminative "
        "learning rates, e.g. 0.1)", bounds=(1e-6, 1))
    seed: int = _f(0, "seed for weights, data order and augmentation; CPU runs repeat exactly",
        bounds=(0, SEED_MAX))
    threads: int = _f(
        1, "CPU threads for torch (0: one per core). One by default: on 2 cores a second thread "
        "trains 1.7-2.0x faster on a quiet machine but 1.6-25x slower beside one busy process "
        "(benchmarks/threads.py); the record recipes set 2. The count is saved in config.yaml, "
        "since a CPU run repeats exactly for a given count", bounds=(0, 1024))
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    channels_last: bool = _f(True, "use the channels_last memory format for convolutions")
    precision: str = _f(
        "auto", "fp32, bf16 (autocast, fp32 master weights) or auto: bf16 on CUDA and on CPUs "
        "with AMX-BF16 or AVX512-BF16 (measured 1.6-2.8x faster for fastnet), fp32 elsewhere")
    compile: bool = _f(False, "compile the model with torch.compile")
    sync_bn: bool = _f(False, "distributed training: synchronise BatchNorm statistics across ranks")
    checkpoints: int = _f(
        0, "also keep the model's weights at this many evenly spaced epochs "
        "(weights/epoch-NNN.safetensors, with the epoch's learning rate), for TracIn", bounds=(0, 100_000))
    eval_every: int = _f(1, "evaluate on the validation set every N epochs (and at the end)",
        bounds=(1, 100_000))
    country: str = _f(
        "", "ISO 3166 alpha-3 code of the grid that powers this machine (e.g. FRA, USA, DEU), "
        "to turn measured energy into gCO2eq; empty: energy only, and the report says so")
    name: str = _f("", "run folder name under out_dir (default: dataset-model-time)")
    out_dir: str = _f("runs", "folder that holds run folders")

    def __post_init__(self) -> None:
        if isinstance(self.tta, bool):
            self.tta = int(self.tta)  # recipes written as `tta: true` mean level 1
        _check_types(self)
        for f in dataclasses.fields(self):
            if f.type in ("int", "float"):
                check_bounds(f.name, getattr(self, f.name), f.metadata["bounds"])
        for ok, message in self._checks() + self._gan_checks():
            if not ok:
                raise CnnlabError(f"bad config: {message}")

    def _checks(self) -> list[tuple[bool, str]]:
        """(condition, what to fix) for every rule a config must keep."""
        return self._training_checks() + self._data_checks()

    def _training_checks(self) -> list[tuple[bool, str]]:
        """The optimizer, its schedule and the run's length, precision and threads."""
        return [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.optimizer in ("sgd", "adamw", "muon"), "optimizer must be sgd, adamw or muon"),
            (not (self.optimizer == "muon" and (self.dp_epsilon or self.task != "classify")),
             "optimizer muon is for classifiers without DP-SGD (dense heads end in convolutions "
             "with a bias, which its rescaling would change): use sgd or adamw"),
            (not (self.optimizer == "muon" and self.lr_find),
             "lr auto sweeps one learning rate and optimizer muon has two: give --lr and --muon-lr"),
            (self.schedule in ("cosine", "linear", "constant"),
             "schedule must be cosine, linear or constant"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (0 <= self.ema < 1, "ema must be in [0, 1)"),
            (not (self.ema and self.lookahead), "use ema or lookahead, not both"),
            (self.tta in (0, 1, 2), "tta must be 0, 1 or 2"),
            (self.bias_lr_scale > 0, "bias_lr_scale must be positive"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (self.precision in ("auto", "fp32", "bf16"), "precision must be auto, fp32 or bf16"),
            (0 <= self.checkpoints <= self.epochs, "checkpoints must be in [0, epochs]"),
            (self.eval_every >= 1, "eval_every must be at least 1"),
            (self.threads >= 0, "threads must be >= 0 (0: one per core)"),
        ]

    def _data_checks(self) -> list[tuple[bool, str]]:
        """The data and what is done to it, the task, its options, names."""
        return [
            (self.val_split >= 0, "val_split must be >= 0"),
            (0 <= self.label_noise < 1, "label_noise must be in [0, 1)"),
            (self.crop_padding >= 0 and self.cutout >= 0, "crop_padding and cutout must be >= 0"),
            (self.resize_start >= 0 and self.resize_epochs >= 0,
             "resize_start and resize_epochs must be >= 0"),
            (self.country == "" or (len(self.country) == 3 and self.country.isalpha()),
             f"country must be an ISO 3166 alpha-3 code such as FRA or USA, not {self.country!r}"),
            (self.groups in ("", "balance", "dro"), "groups must be balance or dro (or empty for off)"),
            (self.balance in ("", "sampler", "loss"), "balance must be sampler or loss (or empty for off)"),
            (not (self.balance and (self.groups or self.dp_epsilon)),
             "balance (classes) cannot be combined with groups or dp_epsilon; give one"),
            (self.dro_eta > 0, "dro_eta must be positive"),
            (self.dp_epsilon >= 0 and 0 < self.dp_delta < 1 and self.dp_clip > 0,
             "dp_epsilon must be >= 0, dp_delta in (0, 1) and dp_clip > 0"),
            (not (self.dp_epsilon and (self.adv or self.groups or self.compile or self.freeze_epochs)),
             "dp_epsilon (DP-SGD) cannot be combined with adv, groups, compile or freeze_epochs"),
            (self.adv in ("", "pgd", "fgsm-rs"), "adv must be pgd or fgsm-rs (or empty for off)"),
            (not (self.lr_find and self.dp_epsilon),
             "lr auto is not for DP-SGD (the range test would spend privacy); give --lr"),
            (not (self.init_from and self.pretrained),
             "give init_from (a run) or pretrained (a weights file), not both"),
            (self.task in TASK_HEADS, f"task must be one of {', '.join(TASK_HEADS)}"),
            (self.head in ("", *TASK_HEADS.get(self.task, ())),
             f"head {self.head!r} does not fit task {self.task}; choose from "
             f"{', '.join(TASK_HEADS.get(self.task, ())) or 'nothing (leave it empty)'}"),
            (self.task == "classify" or not (self.adv or self.groups or self.balance or self.dp_epsilon
                                              or self.permute_pixels or self.label_noise or self.tta),
             "adv, groups, balance, dp_epsilon, permute_pixels, label_noise and tta apply to task "
             "classify only"),
            (self.limit_train >= 0 and self.image_size >= 0, "limit_train and image_size must be >= 0"),
            (self.name == "" or (self.name not in (".", "..") and "/" not in self.name
                                 and "\\" not in self.name),
             f"name must be a plain folder name inside out_dir, not {self.name!r}"),
            (not (self.permute_pixels and (self.crop_padding or self.cutout)),
             "permute_pixels needs crop_padding 0 and cutout 0 (shifts of shuffled pixels mean nothing)"),
        ]

    def _gan_checks(self) -> list[tuple[bool, str]]:
        gan_only = (self.gan_loss != "nonsaturating" or self.spectral_norm or self.r1_gamma
                    or self.r1_every != 1 or self.d_lr_scale != 1.0 or self.aux_weight
                    or self.latent_dim != _default("latent_dim"))
        gan = gan_only or self.judge
        width = self.model_kwargs.get("width", 32)
        return [
            (self.gan_loss in GAN_LOSSES, f"gan_loss must be one of {', '.join(GAN_LOSSES)}"),
            (self.task == "generate" or not gan,
             "gan_loss, spectral_norm, r1_gamma, r1_every, aux_weight, d_lr_scale and judge apply "
             "to task generate only"),
            (not self.aux_weight or self.head == "conditional" or is_diffusion(self.head),
             "aux_weight (AC-GAN) needs labels to ask for: add --head conditional"),
            (not (is_diffusion(self.head) and gan_only),
             f"--head {self.head} trains a diffusion model (no discriminator, its noise is an "
             "image): drop gan_loss, spectral_norm, r1_gamma, r1_every, d_lr_scale, aux_weight "
             "and latent_dim"),
            (self.sampling_steps == _default("sampling_steps") or is_diffusion(self.head),
             "sampling_steps applies to the diffusion heads (ddpm, ddpm-conditional) only"),
            (not is_diffusion(self.head) or not isinstance(width, int) or width % 8 == 0,
             "the diffusion UNet's width must be a multiple of 8 (its GroupNorm has 8 groups): "
             "set model_kwargs width to 8, 16, 32, ..."),
            (self.task != "generate" or not (self.init_from or self.pretrained or self.freeze_epochs
                                             or self.lookahead or self.lr_find),
             "task generate trains from scratch: drop init_from, pretrained, freeze_epochs, "
             "lookahead and lr auto"),
        ]

    def check_generator_kwargs(self) -> None:
        """A generator's model_kwargs: its width (both kinds) and, for a GAN, its discriminator's
        d_depth (3x3 convolutions at each side), each a positive whole number. Checked when a
        generator starts training (cnnlab generate train, the task's build), not when a
        config loads: a run written before the check still loads."""
        allowed = {"width"} if is_diffusion(self.head) else {"width", "d_depth"}
        unknown = sorted(set(self.model_kwargs) - allowed)
        if unknown:
            takes = ("width (its narrowest layer's channels), e.g. {width: 64}; a diffusion model "
                     "has no discriminator, so no d_depth" if allowed == {"width"}
                     else "width (its narrowest layer's channels) and d_depth (the discriminator's "
                     "3x3 convolutions at each side), e.g. {width: 64, d_depth: 2}")
            raise CnnlabError(f"bad config: model_kwargs {', '.join(unknown)}: this generator takes "
                              f"only {takes}")
        for key in sorted(allowed & set(self.model_kwargs)):
            value = self.model_kwargs[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                what = "channels" if key == "width" else "convolutions"
                raise CnnlabError(f"bad config: model_kwargs {key} must be a positive whole number "
                                  f"of {what}, not {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def derive(self, **changes: Any) -> TrainConfig:
        """The config of a sub-run (an analysis's own training): this one with ``changes``.

        A sub-run keeps only what its analysis reads: no kept checkpoints unless ``changes``
        asks for them (a run trained with ``--checkpoints 4`` must not make a 2-epoch node or
        fold fail, nor keep 40 MB of weights nobody reads), and never more than its epochs.
        """
        changes = {"checkpoints": 0} | changes
        epochs = changes.get("epochs", self.epochs)
        changes["checkpoints"] = min(changes["checkpoints"], epochs)
        return dataclasses.replace(self, **changes)

    @property
    def started(self) -> bool:
        """Whether the run starts other than from scratch (``FROM_SCRATCH``'s settings: weights,
        freezing, the body's learning-rate scale, the range test)."""
        return any(getattr(self, k) != v for k, v in FROM_SCRATCH.items())

    def fresh(self, **changes: Any) -> TrainConfig:
        """A sub-run's config that trains from scratch: ``derive``, with the run's start
        (``init_from``, ``pretrained``, freezing, the body's learning-rate scale, the range
        test) reset unless ``changes`` sets it. An analysis's other models (an MLP, a shapes
        fastnet, a noisy twin) must not try to load the main CNN's start."""
        return scratch_optimizer(self.derive(**(FROM_SCRATCH | changes)), self.model, changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if d.get("lr") == "auto":  # a recipe's lr: auto
            d = {k: v for k, v in d.items() if k != "lr"} | {"lr_find": True}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(d) - known)
        if unknown:
            raise CnnlabError(f"unknown config keys {unknown}; see `cnnlab train --help`")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        from cnnlab.io import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path, recipe: Callable[[dict], dict] | None = None) -> TrainConfig:
        """The config a YAML file holds. ``recipe``: a verb's starting recipe for the file's
        settings (``cnnlab generate train``'s depends on the head), which the file overrides;
        without it, fields the file leaves out take TrainConfig's defaults."""
        path = Path(path)
        if not path.is_file():
            raise CnnlabError(f"config file {path} not found; pass an existing YAML file")
        try:
            d = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
        except _DuplicateKey as e:
            raise CnnlabError(f"config file {path} sets {e} twice; keep one") from None
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
            raise CnnlabError(f"config file {path} is not valid YAML ({e.__class__.__name__})") from None
        if d is None:
            raise CnnlabError(f"config file {path} is empty; write field: value lines (see configs/)")
        if not isinstance(d, dict):
            raise CnnlabError(f"config file {path} must hold a mapping of field: value")
        return cls.from_dict((recipe(d) if recipe else {}) | d)

    def digest(self, ignore: tuple[str, ...] = ("name", "out_dir")) -> str:
        """A short hash of every setting but ``ignore``: equal digests mean equal runs."""
        d = {k: v for k, v in self.to_dict().items() if k not in ignore}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def differences(self, other: TrainConfig, ignore: tuple[str, ...] = ()) -> list[str]:
        """Fields whose values differ, as 'field: old -> new' strings."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in ignore and a[k] != b[k]]


class _DuplicateKey(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice (plain YAML keeps the later silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(repr(key))
            seen.add(key)
        return super().construct_mapping(node, deep)


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}
_WORDS = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
          "dict": "a mapping like {width: 2}"}


def _check_types(cfg: TrainConfig) -> None:
    """Refuse a value of the wrong type (``epochs: "two"`` in a YAML recipe) with one line."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        ok = isinstance(value, _TYPES[f.type]) and not (f.type != "bool" and isinstance(value, bool))
        if not ok:
            raise CnnlabError(f"bad config: {f.name} must be {_WORDS[f.type]}, got {value!r}")
        if f.type == "float":
            setattr(cfg, f.name, float(value))


def config_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(TrainConfig))


def scratch_optimizer(cfg: TrainConfig, run_model: str, changes: dict) -> TrainConfig:
    """An analysis's other model trains with SGD where the run used Muon (unless ``changes``
    says otherwise): Muon is chosen for a network with BatchNorm after each convolution, and an
    MLP or LeNet-5 has none. The run's lr is already SGD's (Muon's own is ``muon_lr``)."""
    if cfg.optimizer == "muon" and cfg.model != run_model and "optimizer" not in changes:
        return cfg.derive(optimizer="sgd")
    return cfg
