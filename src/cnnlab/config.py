"""Typed training configuration: one dataclass, a help string per field, YAML round trip.

The CLI builds its flags from these fields (``cnnlab train --help``), recipes in
``configs/*.yaml`` set them, and every run saves the full config as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help string (shown by ``--help``)."""
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


TASK_HEADS = {"classify": (), "detect": ("centernet", "centernet-fine", "fcos"), "segment": ("unet",),
              "pose": ("regression", "heatmap")}
"""Each task and its heads; the first is the default."""


@dataclass
class TrainConfig:
    """Everything needed to repeat a training run."""

    dataset: str = _f("digits", "dataset name (`cnnlab datasets`), e.g. digits, cifar10, npz:PATH")
    model: str = _f("lenet5", "model name (`cnnlab models`); for detect, segment and pose the backbone")
    task: str = _f(
        "classify", "classify (one label per image), detect (boxes), segment (a class per pixel) or "
        "pose (keypoints of each object, on crops of its box); dense tasks need data with "
        "annotations: scenes, yolo:PATH, coco:PATH, voc:PATH")
    head: str = _f(
        "", "the task's head: detect: centernet (ours, default) or fcos (torchvision's, the "
        "reference); pose: regression (DeepPose, default) or heatmap; segment: unet")
    model_kwargs: dict = _f({}, "extra keyword arguments for the model builder, e.g. {width: 2}")
    data_dir: str = _f("~/.cache/cnnlab", "where downloaded datasets are cached and looked for")
    image_size: int = _f(0, "resize folder images to this square size (0: dataset default)")
    val_split: float = _f(
        0.0,
        "hold out this many training images (>=1) or this fraction (<1) for validation; "
        "0 evaluates on the dataset's test split (or holds out 10%% if it has none)",
    )
    val_seed: int = _f(
        0, "seed of the validation hold-out; fixed apart from --seed, so seeds compare models "
        "on one split")
    limit_train: int = _f(0, "train on a seeded random subset of N training images (0: all)")
    skip_bad: bool = _f(
        False, "detection data: leave out images whose annotations are malformed (listed in the "
        "run folder's skipped.json) instead of stopping at the first")
    label_noise: float = _f(
        0.0, "flip the labels of this fraction of the training images to another class, seeded "
        "by val_seed (a known answer for finding bad data; the flipped images are recorded)")
    drop_train: str = _f(
        "", "leave out these training images: a text file of indices into the training split "
        "(after the hold-out and limit_train), one per line (remove-and-retrain, k-fold)")
    permute_pixels: bool = _f(
        False, "shuffle pixel positions of every image by one fixed permutation (the permutation test)")
    epochs: int = _f(20, "passes over the training set")
    batch_size: int = _f(128, "images per optimizer step")
    optimizer: str = _f("sgd", "sgd (Nesterov momentum) or adamw")
    lr: float = _f(0.05, "peak learning rate, reached after warm-up")
    momentum: float = _f(0.9, "SGD momentum (AdamW: beta1)")
    nesterov: bool = _f(True, "use Nesterov momentum with SGD")
    weight_decay: float = _f(5e-4, "weight decay on weights (not on biases or norm layers)")
    warmup_epochs: float = _f(1.0, "linear warm-up from 0 to lr over this many epochs")
    schedule: str = _f("cosine", "decay after warm-up: cosine, linear or constant")
    label_smoothing: float = _f(0.0, "label smoothing for the cross-entropy loss")
    bias_lr_scale: float = _f(
        1.0, "multiply the learning rate of normalization-layer parameters by this (airbench: 64)")
    ema: float = _f(0.0, "decay of an exponential moving average of weights (0: off)")
    lookahead: bool = _f(
        False, "every 5 steps move slow weights toward the weights and restart from them, with "
        "a pull that weakens as training ends (airbench); the slow weights are the final model")
    tta: int = _f(0, "test-time augmentation: 0 off, 1 average with the mirror image, "
                  "2 also one-pixel shifts of both (6 views)")
    crop_padding: int = _f(0, "random translation by up to this many pixels (pad-and-crop)")
    flip: bool = _f(True, "random horizontal flips, where the dataset allows them")
    alternate_flips: bool = _f(
        False, "flip each image in every other epoch (random phase per image) instead of at "
        "random each epoch: no image is seen unflipped twice in a row (airbench)")
    cutout: int = _f(0, "side of a random square erased from each training image (0: off)")
    resize_start: int = _f(
        0, "progressive resizing: train the first epochs on images downscaled to this side, "
        "growing to full size by resize_epochs (0: off); evaluation is always at full size")
    resize_epochs: int = _f(0, "progressive resizing: epochs until images reach full size")
    groups: str = _f(
        "", "train with the data's groups (shapes' colour, an npz groups array): balance "
        "(every class x group cell weighs the same) or dro (Group DRO, Sagawa et al. 2020); "
        "empty: plain ERM")
    dro_eta: float = _f(0.01, "Group DRO's step size for the group weights")
    dp_epsilon: float = _f(
        0.0, "differentially private training (DP-SGD with Opacus): spend at most this epsilon "
        "over all epochs, at dp_delta (BatchNorm becomes GroupNorm; fp32; 0: off)")
    dp_delta: float = _f(1e-5, "DP-SGD's delta (keep it below 1 / training images)")
    dp_clip: float = _f(1.0, "DP-SGD: each image's gradient is clipped to this norm")
    adv: str = _f("", "adversarial training: pgd (Madry et al. 2018) or fgsm-rs (Wong et al. 2020)")
    adv_eps: float = _f(8 / 255, "adversarial training radius (L-inf, pixels in [0, 1]); 8/255 works")
    adv_steps: int = _f(7, "PGD steps per batch in adversarial training")
    adv_alpha: float = _f(0.0, "attack step size (0: 2.5*eps/steps for pgd, 1.25*eps for fgsm-rs)")
    adv_eval: int = _f(500, "validation images attacked (PGD-10) at each evaluation when --adv is set")
    seed: int = _f(0, "seed for weights, data order and augmentation; CPU runs repeat exactly")
    threads: int = _f(
        1, "CPU threads for torch (0: one per core). One by default: on 2 cores a second thread "
        "trains 1.7-2.0x faster on a quiet machine but 1.6-25x slower beside one busy process "
        "(benchmarks/threads.py); the record recipes set 2. The count is saved in config.yaml, "
        "since a CPU run repeats exactly for a given count")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    channels_last: bool = _f(True, "use the channels_last memory format for convolutions")
    precision: str = _f(
        "auto", "fp32, bf16 (autocast, fp32 master weights) or auto: bf16 on CUDA and on CPUs "
        "with AMX-BF16 (measured 2.4-3.3x faster for fastnet), fp32 elsewhere")
    compile: bool = _f(False, "compile the model with torch.compile")
    sync_bn: bool = _f(False, "distributed training: synchronise BatchNorm statistics across ranks")
    checkpoints: int = _f(
        0, "also keep the model's weights at this many evenly spaced epochs "
        "(weights/epoch-NNN.safetensors, with the epoch's learning rate), for TracIn")
    eval_every: int = _f(1, "evaluate on the validation set every N epochs (and at the end)")
    country: str = _f(
        "", "ISO 3166 alpha-3 code of the grid that powers this machine (e.g. FRA, USA, DEU), "
        "to turn measured energy into gCO2eq; empty: energy only, and the report says so")
    name: str = _f("", "run folder name under out_dir (default: dataset-model-time)")
    out_dir: str = _f("runs", "folder that holds run folders")

    def __post_init__(self) -> None:
        if isinstance(self.tta, bool):
            self.tta = int(self.tta)  # recipes written as `tta: true` mean level 1
        _check_types(self)
        for ok, message in self._checks():
            if not ok:
                raise CnnlabError(f"bad config: {message}")

    def _checks(self) -> list[tuple[bool, str]]:
        """(condition, what to fix) for every rule a config must keep."""
        return [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.optimizer in ("sgd", "adamw"), "optimizer must be sgd or adamw"),
            (self.schedule in ("cosine", "linear", "constant"),
             "schedule must be cosine, linear or constant"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (0 <= self.ema < 1, "ema must be in [0, 1)"),
            (not (self.ema and self.lookahead), "use ema or lookahead, not both"),
            (self.tta in (0, 1, 2), "tta must be 0, 1 or 2"),
            (self.bias_lr_scale > 0, "bias_lr_scale must be positive"),
            (self.val_split >= 0, "val_split must be >= 0"),
            (0 <= self.label_noise < 1, "label_noise must be in [0, 1)"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (self.crop_padding >= 0 and self.cutout >= 0, "crop_padding and cutout must be >= 0"),
            (self.resize_start >= 0 and self.resize_epochs >= 0,
             "resize_start and resize_epochs must be >= 0"),
            (self.country == "" or (len(self.country) == 3 and self.country.isalpha()),
             f"country must be an ISO 3166 alpha-3 code such as FRA or USA, not {self.country!r}"),
            (self.groups in ("", "balance", "dro"), "groups must be balance or dro (or empty for off)"),
            (self.dro_eta > 0, "dro_eta must be positive"),
            (self.dp_epsilon >= 0 and 0 < self.dp_delta < 1 and self.dp_clip > 0,
             "dp_epsilon must be >= 0, dp_delta in (0, 1) and dp_clip > 0"),
            (not (self.dp_epsilon and (self.adv or self.groups or self.compile)),
             "dp_epsilon (DP-SGD) cannot be combined with adv, groups or compile"),
            (self.adv in ("", "pgd", "fgsm-rs"), "adv must be pgd or fgsm-rs (or empty for off)"),
            (self.precision in ("auto", "fp32", "bf16"), "precision must be auto, fp32 or bf16"),
            (0 <= self.checkpoints <= self.epochs, "checkpoints must be in [0, epochs]"),
            (self.eval_every >= 1, "eval_every must be at least 1"),
            (self.task in TASK_HEADS, f"task must be one of {', '.join(TASK_HEADS)}"),
            (self.head in ("", *TASK_HEADS.get(self.task, ())),
             f"head {self.head!r} does not fit task {self.task}; choose from "
             f"{', '.join(TASK_HEADS.get(self.task, ())) or 'nothing (leave it empty)'}"),
            (self.task == "classify" or not (self.adv or self.groups or self.dp_epsilon or self.permute_pixels
                                              or self.label_noise or self.tta),
             "adv, groups, dp_epsilon, permute_pixels, label_noise and tta apply to task classify only"),
            (self.threads >= 0, "threads must be >= 0 (0: one per core)"),
            (self.limit_train >= 0 and self.image_size >= 0, "limit_train and image_size must be >= 0"),
            (self.name == "" or (self.name not in (".", "..") and "/" not in self.name
                                 and "\\" not in self.name),
             f"name must be a plain folder name inside out_dir, not {self.name!r}"),
            (not (self.permute_pixels and (self.crop_padding or self.cutout)),
             "permute_pixels needs crop_padding 0 and cutout 0 (shifts of shuffled pixels mean nothing)"),
        ]

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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(d) - known)
        if unknown:
            raise CnnlabError(f"unknown config keys {unknown}; see `cnnlab train --help`")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        from cnnlab.io import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise CnnlabError(f"config file {path} not found; pass an existing YAML file")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
            raise CnnlabError(f"config file {path} is not valid YAML ({e.__class__.__name__})") from None
        if not isinstance(d, dict):
            raise CnnlabError(f"config file {path} must hold a mapping of field: value")
        return cls.from_dict(d)

    def digest(self, ignore: tuple[str, ...] = ("name", "out_dir")) -> str:
        """A short hash of every setting but ``ignore``: equal digests mean equal runs."""
        d = {k: v for k, v in self.to_dict().items() if k not in ignore}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def differences(self, other: TrainConfig, ignore: tuple[str, ...] = ()) -> list[str]:
        """Fields whose values differ, as 'field: old -> new' strings."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in ignore and a[k] != b[k]]


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
