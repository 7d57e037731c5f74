"""Datasets: one registry, ``load_dataset(name)`` and the train/validation split of a run.

Names: ``digits`` (embedded, the default), ``shapes`` (procedural), ``cifar10``, ``cifar100``,
``mnist``, ``fashion-mnist``, ``folder:PATH`` and ``npz:PATH``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.config import TrainConfig
from cnnlab.data.base import DatasetSplits, ImageDataset, split_holdout
from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

# A loader takes (argument after "name:", data folder, image size) and returns the splits.
DATASETS: Registry[Callable[[str, Path, int], DatasetSplits]] = Registry("dataset")

DESCRIPTIONS = {
    "digits": "1,797 real 8x8 handwritten digits shipped with scikit-learn (offline default); "
              "digits:fold=2 tests on another fifth of them (0 to 4; 0 is the plain split)",
    "shapes": "procedural coloured shapes on textured backgrounds, 4 classes, seeded (offline); "
              "shapes:bias=0.95 ties colour to class in 95% of training images; shapes:kinds=8 adds "
              "look-alike kinds (pentagon, hexagon, rhombus, cross); shapes:n=10000 trains on more; "
              "shapes:test=2000 tests on more",
    "cifar10": "60,000 32x32 colour images, 10 classes (official binary release)",
    "cifar100": "60,000 32x32 colour images, 100 classes (official binary release)",
    "mnist": "70,000 28x28 handwritten digits (official IDX files)",
    "fashion-mnist": "70,000 28x28 clothing images, 10 classes (official IDX files)",
    "folder": "folder:PATH, your images, one sub-folder per class (train/ and test/ optional)",
    "npz": "npz:PATH, arrays x (uint8 N x H x W x C) and y; optional x_test, y_test, classes",
    "scenes": "procedural scenes of several shapes with exact boxes, masks and keypoints, seeded "
              "(offline; detect, segment, pose); 64 px, or --image-size 128; scenes:n=4000 trains on more",
    "videos": "procedural clips of moving shapes, seeded (offline): action recognition on 8 frames "
              "stacked as 24 channels (models framepool, r2plus1d); videos:n=2400,objects=1 trains "
              "on more clips, with no other object in them (default: 1,200, at most 3 objects)",
    "yolo": "yolo:PATH, your boxes: PATH/images/ and PATH/labels/*.txt (class cx cy w h, normalized)",
    "coco": "coco:PATH, your boxes, polygons and keypoints: a COCO instances JSON file",
    "voc": "voc:PATH, your boxes: PATH/Annotations/*.xml and PATH/JPEGImages/",
}


@DATASETS.register("digits")
def _digits(arg: str, data_dir: Path, image_size: int) -> DatasetSplits:
    from cnnlab.data.digits import load_digits_splits, parse_digits_arg

    return load_digits_splits(fold=parse_digits_arg(arg))


@DATASETS.register("shapes")
def _shapes(arg: str, data_dir: Path, image_size: int) -> DatasetSplits:
    from cnnlab.data.shapes import parse_shapes_arg

    return _cached_shapes(image_size, **parse_shapes_arg(arg))


@functools.lru_cache(maxsize=8)
def _cached_shapes(image_size: int, color_bias: float = 0.0, kinds: int = 4, n: int = 0,
                   test: int = 0) -> DatasetSplits:
    """Generated once per process: the main job's analyses train dozens of sub-runs on shapes
    (about 1-2 s to generate each time). Callers get the same tensors and never write into them."""
    from cnnlab.data.shapes import load_shapes_splits

    return load_shapes_splits(image_size, color_bias=color_bias, kinds=kinds, n=n, test=test)


def _cifar(name: str):
    def load(arg: str, data_dir: Path, image_size: int) -> DatasetSplits:
        from cnnlab.data.cifar import load_cifar_splits

        return load_cifar_splits(name, data_dir)

    return load


def _idx(name: str):
    def load(arg: str, data_dir: Path, image_size: int) -> DatasetSplits:
        from cnnlab.data.idx import load_idx_splits

        return load_idx_splits(name, data_dir)

    return load


for _name in ("cifar10", "cifar100"):
    DATASETS.register(_name)(_cifar(_name))
for _name in ("mnist", "fashion-mnist"):
    DATASETS.register(_name)(_idx(_name))


@DATASETS.register("folder")
def _folder(arg: str, data_dir: Path, image_size: int) -> DatasetSplits:
    from cnnlab.data.files import load_folder_splits

    return load_folder_splits(arg, image_size)


@DATASETS.register("npz")
def _npz(arg: str, data_dir: Path, image_size: int) -> DatasetSplits:
    from cnnlab.data.files import load_npz_splits

    return load_npz_splits(arg)


@DATASETS.register("scenes")
def _scenes(arg: str, data_dir: Path, image_size: int) -> DatasetSplits:
    from cnnlab.data.dense import to_image_dataset

    n, objects = _count_args("scenes", arg, 2000, 4)
    size = image_size or 64
    train = _cached_scenes(n, size, 0, objects)
    test = _cached_scenes(max(100, n // 4), size, 2, objects)
    return DatasetSplits(to_image_dataset(train), to_image_dataset(test),
                         f"scenes: procedural, {n} training images (seed 0) and the test split "
                         f"(seed 2), 1 to {objects} objects each")


def _count_args(name: str, arg: str, n: int, objects: int) -> tuple[int, int]:
    """``n=COUNT[,objects=K]`` -> (training scenes or clips, most objects in one), with defaults."""
    values = {"n": n, "objects": objects}
    for part in filter(None, arg.split(",")):
        key, _, value = part.partition("=")
        if key not in values or not value.isdigit():
            raise CnnlabError(f"{name}:{arg}: write {name}:n=COUNT[,objects=K], e.g. {name}:n=600,objects=2")
        values[key] = int(value)
    if values["n"] < 10 or not 1 <= values["objects"] <= 8:
        raise CnnlabError(f"{name}:{arg}: COUNT must be >= 10 and objects between 1 and 8")
    return values["n"], values["objects"]


@functools.lru_cache(maxsize=4)
def _cached_scenes(n: int, size: int, seed: int, objects: int = 4):
    """Scenes are generated once per process (the main job trains four tasks on them); callers
    get new ImageDatasets on the same tensors and never write into them."""
    from cnnlab.data.scenes import make_scenes

    return make_scenes(n, size, seed, objects)


@DATASETS.register("videos")
def _videos(arg: str, data_dir: Path, image_size: int) -> DatasetSplits:
    """Action recognition: each clip of ``VIDEO_FRAMES`` frames as one image of 3T channels."""
    n, objects = _count_args("videos", arg, 1200, 3)
    size = image_size or 32
    train, test = _cached_clips(n, size, 0, objects), _cached_clips(max(100, n // 4), size, 2, objects)
    crowd = f"at most {objects} objects" if objects > 1 else "no other object"
    return DatasetSplits(train, test, f"videos: procedural clips of {VIDEO_FRAMES} frames ({crowd}), {n} "
                                      f"training clips (seed 0) and the test split (seed 2); label: the "
                                      f"main object's action")


VIDEO_FRAMES = 8
"""Frames per action clip: every other frame of a 16-frame clip."""


@functools.lru_cache(maxsize=4)
def _cached_clips(n: int, size: int, seed: int, objects: int = 3) -> ImageDataset:
    from cnnlab.data.videos import make_videos

    clips = make_videos(n, size, frames=2 * VIDEO_FRAMES, seed=seed, max_objects=objects)
    x = clips.x[:, ::2]  # (N, T, 3, H, W)
    return ImageDataset(x.reshape(len(x), -1, size, size).contiguous(), clips.actions,
                        list(clips.action_names), f"videos{size}", flip_ok=False)


def _annotated(kind: str):
    def load(arg: str, data_dir: Path, image_size: int, skip_bad: bool = False) -> DatasetSplits:
        from cnnlab.data.annotations import load_detection, yolo_splits
        from cnnlab.data.dense import to_image_dataset

        spec, size = f"{kind}:{arg}", image_size or 64
        split = yolo_splits(arg) if kind == "yolo" else None
        if split:  # data.yaml's train and val folders: the split the user made is the one scored
            (train, skipped), (val, skipped_val) = (load_detection(spec, size, skip_bad, f) for f in split)
            source = f"{spec} (data.yaml: train {split[0]}, val {split[1]})"
            return DatasetSplits(to_image_dataset(train), to_image_dataset(val), source,
                                 skipped + skipped_val)
        ds, skipped = load_detection(spec, size, skip_bad)
        return DatasetSplits(to_image_dataset(ds), None, spec, skipped)

    return load


for _name in ("yolo", "coco", "voc"):
    DATASETS.register(_name)(_annotated(_name))


def list_datasets() -> list[str]:
    return DATASETS.names()


def load_dataset(name: str, data_dir: str | Path = "~/.cache/cnnlab", image_size: int = 0,
                 skip_bad: bool = False) -> DatasetSplits:
    """Load a dataset's official splits into memory, e.g. ``load_dataset("cifar10")``.
    ``skip_bad``: annotated data (yolo, coco, voc) leaves out malformed images instead of stopping."""
    kind, _, arg = name.partition(":")
    if kind in ("folder", "npz", *ANNOTATED) and not arg:
        raise CnnlabError(f"dataset {kind} needs a path: {kind}:PATH")
    loader = DATASETS.get(kind)
    if arg and kind in WITHOUT_OPTIONS:
        raise CnnlabError(f"dataset {kind} takes no options (got {kind}:{arg}); write {kind} "
                          f"(only digits, shapes, scenes, videos and the path datasets take any)")
    if kind in ANNOTATED:
        return loader(arg, Path(data_dir).expanduser(), image_size, skip_bad)
    return loader(arg, Path(data_dir).expanduser(), image_size)


ANNOTATED = ("yolo", "coco", "voc")
WITHOUT_OPTIONS = ("cifar10", "cifar100", "mnist", "fashion-mnist")


@dataclass
class RunData:
    """The images a run trains on (``train``) and is scored on (``eval``).

    ``load_dataset`` gives a source's official splits, ``.train`` and ``.test``; a run's
    ``eval`` is one of two things, named by ``eval_split``: that official ``test`` split, or
    ``val``, images held out from the official training split (``--val-split``, or 10% where
    the source has no test split).
    """

    train: ImageDataset
    eval: ImageDataset
    eval_split: str
    """``test`` (the official test split) or ``val`` (held out from train)."""
    source: str
    flipped: torch.Tensor | None = None
    """Indices of training images whose labels ``label_noise`` flipped (None: none were)."""
    skipped: list = dataclasses.field(default_factory=list)
    """(file, reason) of annotated images left out by ``skip_bad``."""

    @property
    def flip_ok(self) -> bool:
        """Whether mirrored images keep their labels (training flips and flip TTA)."""
        return self.train.flip_ok


PERMUTATION_SEED = 1234  # one fixed permutation for every run, model and split


def pixel_permutation(height: int, width: int) -> torch.Tensor:
    """The fixed random permutation of the height*width pixel positions."""
    return torch.randperm(height * width, generator=torch.Generator().manual_seed(PERMUTATION_SEED))


def permute_pixels(ds: ImageDataset, perm: torch.Tensor) -> ImageDataset:
    """Pixel j of every output image is pixel perm[j] of the input, in every channel."""
    n, c, h, w = ds.x.shape
    x = ds.x.reshape(n, c, h * w)[:, :, perm].reshape(n, c, h, w)
    return ImageDataset(x.contiguous(), ds.y, ds.classes, ds.name, flip_ok=False)


def prepare_data(dataset: str, data_dir: str, image_size: int, val_split: float, seed: int,
                 limit_train: int = 0, permute: bool = False, label_noise: float = 0.0,
                 drop_train: str = "", skip_bad: bool = False) -> RunData:
    """Load ``dataset`` and choose its evaluation set.

    ``val_split`` > 0 holds out that many training images (or that fraction) as validation;
    0 evaluates on the official test split, or holds out 10% when there is none. ``seed`` is
    the data seed (a run's ``val_seed``): it fixes the hold-out and the ``limit_train``
    subset, apart from the training seed, so runs with different seeds see the same data.
    """
    splits = load_dataset(dataset, data_dir, image_size, skip_bad)
    train, test = splits.train, splits.test
    automatic = val_split == 0 and test is None
    if automatic:
        val_split = 0.1
    if val_split > 0:
        n_val = int(round(val_split * len(train))) if val_split < 1 else int(val_split)
        n_val = max(n_val, 1) if automatic else n_val  # 10% of 5 images: still one to score on
        train, val = split_holdout(train, n_val, seed=seed)
        eval_split = "val"
    else:
        val, eval_split = test, "test"
    if limit_train:  # a seeded random subset: files may be sorted by class
        train = train.sample(limit_train, seed + 1)
    if val.image_shape != train.image_shape:
        raise CnnlabError(f"{dataset}: test images are {val.image_shape}, train images "
                          f"{train.image_shape}; give both splits one shape")
    source = splits.source
    if permute:
        perm = pixel_permutation(*train.image_shape[1:])
        train, val = permute_pixels(train, perm), permute_pixels(val, perm)
        source += f"; pixels permuted by one fixed permutation (seed {PERMUTATION_SEED})"
    flipped = None
    if label_noise:
        train, flipped = flip_labels(train, label_noise, seed + 2)
        source += f"; labels of {len(flipped)} training images flipped on purpose (seed {seed + 2})"
    if drop_train:
        train, flipped = drop_images(train, flipped, read_indices(drop_train, len(train)))
        source += f"; training images listed in {drop_train} left out"
    return RunData(train, val, eval_split, source, flipped, splits.skipped)


def read_indices(path: str, n: int) -> torch.Tensor:
    """The sorted, distinct training indices listed one per line in ``path`` (all in [0, n))."""
    from pathlib import Path

    try:
        lines = Path(path).read_text().split()
        idx = torch.tensor(sorted({int(v) for v in lines}), dtype=torch.long)
    except (OSError, ValueError) as e:
        raise CnnlabError(f"drop_train: cannot read {path} as one whole number per line ({e}); "
                          f"write the training indices to leave out, one per line") from None
    if len(idx) and (idx[0] < 0 or idx[-1] >= n):
        raise CnnlabError(f"drop_train: {path} lists index {int(idx[-1] if idx[-1] >= n else idx[0])}"
                          f" but the training split has {n} images (indices 0..{n - 1})")
    if len(idx) >= n:
        raise CnnlabError(f"drop_train: {path} leaves out all {n} training images; keep some")
    return idx


def drop_images(ds: ImageDataset, flipped: torch.Tensor | None,
                drop: torch.Tensor) -> tuple[ImageDataset, torch.Tensor | None]:
    """``ds`` without the images at ``drop``; ``flipped`` re-indexed to the images kept."""
    keep = torch.ones(len(ds), dtype=torch.bool)
    keep[drop] = False
    new_index = torch.cumsum(keep, 0) - 1
    if flipped is not None:
        flipped = new_index[flipped[keep[flipped]]]
    return ds.subset(keep.nonzero().squeeze(1)), flipped


def flip_labels(ds: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, torch.Tensor]:
    """A copy of ``ds`` in which a seeded random ``fraction`` of the images carry another class's
    label (uniform over the other classes): label noise with a known answer."""
    gen = torch.Generator().manual_seed(seed)
    n = int(round(fraction * len(ds)))
    which = torch.randperm(len(ds), generator=gen)[:n].sort().values
    shift = torch.randint(1, ds.num_classes, (n,), generator=gen)
    y = ds.y.clone()
    y[which] = (y[which] + shift) % ds.num_classes
    return ImageDataset(ds.x, y, ds.classes, ds.name, ds.flip_ok, ds.extras, ds.group_names), which


def data_for(cfg: TrainConfig) -> RunData:
    """The data a run with this config trains and evaluates on, exactly as it was trained."""
    return prepare_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.val_split, cfg.val_seed,
                        cfg.limit_train, cfg.permute_pixels, cfg.label_noise, cfg.drop_train,
                        cfg.skip_bad)


__all__ = ["DATASETS", "DatasetSplits", "ImageDataset", "RunData", "data_for", "drop_images",
           "flip_labels", "list_datasets", "load_dataset", "permute_pixels", "pixel_permutation",
           "prepare_data", "read_indices"]
