"""In-memory image datasets: one uint8 tensor (N, C, H, W), int64 labels, class names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cnnlab.errors import CnnlabError


@dataclass
class ImageDataset:
    """Images as one uint8 tensor ``x`` of shape (N, C, H, W) and labels ``y`` of shape (N,)."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    name: str = ""
    flip_ok: bool = True
    """Whether a horizontal flip keeps the label (not for digits or text)."""
    extras: dict = field(default_factory=dict)
    """Per-image extras of other tasks, e.g. boxes and masks for ``shapes``; ``groups`` (int64,
    one per image) names each image's group for bias audits."""
    group_names: list[str] = field(default_factory=list)
    """Names of the values of ``extras["groups"]`` (e.g. "own colour", "other colour")."""

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.ndim != 4:
            raise CnnlabError(
                f"dataset {self.name}: images must be uint8 (N, C, H, W), got "
                f"{self.x.dtype} {tuple(self.x.shape)}"
            )
        if self.y.shape != (len(self.x),):
            raise CnnlabError(
                f"dataset {self.name}: {len(self.x)} images but labels of shape "
                f"{tuple(self.y.shape)}; give one label per image"
            )
        self.y = self.y.long()
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise CnnlabError(
                f"dataset {self.name}: labels must lie in 0..{len(self.classes) - 1}, "
                f"found {int(self.y.min())}..{int(self.y.max())}"
            )

        if "groups" in self.extras:
            self._check_groups()

    def _check_groups(self) -> None:
        g = torch.as_tensor(self.extras["groups"])
        if g.shape != (len(self.x),) or g.is_floating_point():
            raise CnnlabError(f"dataset {self.name}: groups must be one whole number per image "
                              f"({len(self.x)}), got shape {tuple(g.shape)} {g.dtype}")
        self.extras["groups"] = g = g.long()
        if not self.group_names:
            self.group_names = [f"group {i}" for i in range(int(g.max()) + 1 if len(g) else 0)]
        if len(g) and (g.min() < 0 or g.max() >= len(self.group_names)):
            raise CnnlabError(f"dataset {self.name}: groups must lie in 0..{len(self.group_names) - 1}"
                              f" ({len(self.group_names)} group names), found {int(g.min())}..{int(g.max())}")

    @property
    def groups(self) -> torch.Tensor | None:
        """Each image's group (int64), or None where the data has none."""
        return self.extras.get("groups")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # (C, H, W)

    def subset(self, index: torch.Tensor | np.ndarray) -> ImageDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        extras = {k: v[index] for k, v in self.extras.items()}
        return ImageDataset(self.x[index], self.y[index], self.classes, self.name, self.flip_ok, extras,
                            self.group_names)

    def sample(self, n: int, seed: int = 0) -> ImageDataset:
        """A seeded random subset of ``n`` images in their original order (all if n >= len).

        Use this, not ``[:n]``: dataset files are often sorted by class."""
        if n >= len(self):
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return self.subset(keep.sort().values)

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation of the pixels, scaled to [0, 1]."""
        x = self.x.float().div_(255)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return mean.tolist(), std.tolist()

    def class_counts(self) -> list[int]:
        return torch.bincount(self.y, minlength=self.num_classes).tolist()


@dataclass
class DatasetSplits:
    """A dataset's official splits; ``test`` is None where the source has none (e.g. npz)."""

    train: ImageDataset
    test: ImageDataset | None
    source: str = ""
    """Where the data came from, for the data card."""
    skipped: list = field(default_factory=list)
    """(file, reason) of annotated images left out as malformed (``skip_bad``)."""


def from_numpy(x: np.ndarray, y: np.ndarray, classes: list[str], name: str, **kw) -> ImageDataset:
    """Build a dataset from uint8 arrays in (N, H, W), (N, H, W, C) or (N, C, H, W) layout."""
    if x.dtype != np.uint8:
        raise CnnlabError(f"dataset {name}: images must be uint8, got {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise CnnlabError(f"dataset {name}: images must have 3 or 4 dimensions, got {x.shape}")
    if 0 in x.shape[1:] or x.shape[1] not in (1, 3):
        raise CnnlabError(f"dataset {name}: images of shape {x.shape[1:]} (C, H, W); give N x H x W "
                          f"(grey) or N x H x W x 3 (colour) uint8 arrays")
    return ImageDataset(torch.from_numpy(np.require(x, requirements=["C", "W"])),
                        torch.from_numpy(y.astype(np.int64)),
                        classes, name, **kw)


def split_holdout(ds: ImageDataset, n_val: int, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """A seeded random hold-out of ``n_val`` images: (train, val)."""
    if len(ds) < 2:
        raise CnnlabError(f"dataset {ds.name} has {len(ds)} training images; a validation hold-out "
                          f"needs at least 2, so give it more images")
    if not 0 < n_val < len(ds):
        raise CnnlabError(
            f"cannot hold out {n_val} of {len(ds)} images; choose a val_split between 1 and "
            f"{len(ds) - 1} (or a fraction)"
        )
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    return ds.subset(perm[n_val:].sort().values), ds.subset(perm[:n_val].sort().values)
