"""Procedural coloured shapes on textured backgrounds: seeded, any size, works offline.

Each image holds one shape (circle, square, triangle or star) of random size, position,
rotation and colour on a background of random stripes and noise. Alongside the class label
the generator returns the shape's box and mask (for detection and segmentation), and a
``color_bias`` knob ties each class to one hue with that probability: a spurious feature for
bias studies (a model may learn colour instead of shape). Every image's group says whether its
colour is its own class's hue ("own colour", within 1/8 of the hue circle) or not. ``hue``
"own" or "other" redraws the same images (same shapes, places, backgrounds) in their own
class's hue or the next class's: the test of how much a model relies on colour.

Dataset names: ``shapes`` and ``shapes:bias=0.95`` (colour bias in the training split only).
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from matplotlib.path import Path as PolyPath

from cnnlab.data.base import DatasetSplits, ImageDataset
from cnnlab.errors import CnnlabError

CLASSES = ["circle", "square", "triangle", "star"]
GROUPS = ["other colour", "own colour"]


def _polygon(kind: str, cx: float, cy: float, r: float, theta: float) -> np.ndarray:
    if kind == "square":
        angles, radii = theta + np.pi / 4 + np.arange(4) * np.pi / 2, np.full(4, r)
    elif kind == "triangle":
        angles, radii = theta + np.arange(3) * 2 * np.pi / 3, np.full(3, r)
    else:  # star: 5 outer points, 5 inner
        angles = theta + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def _mask(kind: str, size: int, cx: float, cy: float, r: float, theta: float) -> np.ndarray:
    ss = 2  # supersampling for smooth edges
    coords = (np.arange(size * ss) + 0.5) / ss
    xx, yy = np.meshgrid(coords, coords)
    if kind == "circle":
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    else:
        poly = PolyPath(_polygon(kind, cx, cy, r, theta))
        inside = poly.contains_points(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(xx.shape)
    return inside.reshape(size, ss, size, ss).mean(axis=(1, 3))  # coverage in [0, 1]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.15, 0.85, 3)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 8)
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    tex = 0.12 * stripes[..., None] * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 0.05, (size, size, 3))
    return np.clip(base + tex, 0, 1)


def _colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0)))


def make_shapes(n: int, size: int = 32, seed: int = 0, color_bias: float = 0.0,
                hue: str = "random") -> ImageDataset:
    """``n`` images of ``size`` x ``size`` pixels, with ``extras`` boxes (x0, y0, x1, y1), masks
    and groups (1: the shape has its own class's colour). ``hue``: "random" (tied to the class
    with probability ``color_bias``), "own" or "other" (the next class's hue)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, size, size, 3), np.uint8)
    y = rng.integers(0, len(CLASSES), n)
    boxes = np.empty((n, 4), np.float32)
    masks = np.empty((n, size, size), bool)
    groups = np.empty(n, np.int64)
    for i in range(n):
        kind = CLASSES[y[i]]
        r = rng.uniform(0.18, 0.38) * size
        cx, cy = rng.uniform(r, size - r, 2)
        theta = rng.uniform(0, 2 * np.pi)
        cover = _mask(kind, size, cx, cy, r, theta)[..., None]
        h = _hue(rng, y[i], color_bias, hue)
        groups[i] = int(round(h * len(CLASSES))) % len(CLASSES) == y[i]
        img = _background(rng, size) * (1 - cover) + _colour(rng, h) * cover
        x[i] = np.round(img * 255).astype(np.uint8)
        m = cover[..., 0] > 0.5
        masks[i] = m
        cols, rows = np.where(m.any(0))[0], np.where(m.any(1))[0]
        boxes[i] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) if len(cols) else 0
    return ImageDataset(
        torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y), list(CLASSES),
        "shapes", flip_ok=True,
        extras={"boxes": torch.from_numpy(boxes), "masks": torch.from_numpy(masks),
                "groups": torch.from_numpy(groups)}, group_names=list(GROUPS),
    )


def _hue(rng: np.random.Generator, label: int, color_bias: float, mode: str) -> float:
    """The shape's hue in [0, 1). Without bias every mode draws twice from ``rng``, so the own-
    and other-colour versions of a set differ from it in colour only."""
    tied = rng.random() < color_bias
    if tied:
        return label / len(CLASSES)
    drawn = rng.random()
    if mode == "own":
        return label / len(CLASSES)
    if mode == "other":
        return (label + 1) % len(CLASSES) / len(CLASSES)
    return drawn


def load_shapes_splits(image_size: int = 0, n_train: int = 5000, n_test: int = 1000,
                       color_bias: float = 0.0) -> DatasetSplits:
    if not 0 <= color_bias <= 1:
        raise CnnlabError(f"shapes: bias must lie in [0, 1], got {color_bias}; e.g. shapes:bias=0.95")
    size = image_size or 32
    return DatasetSplits(
        make_shapes(n_train, size, seed=0, color_bias=color_bias),
        make_shapes(n_test, size, seed=1, color_bias=0.0),
        f"procedural shapes, {size}x{size} RGB, seeds 0 (train) and 1 (test), "
        f"colour bias {color_bias} in train",
    )


def parse_shapes_arg(arg: str) -> float:
    """The colour bias of ``shapes:bias=F`` (0 for plain ``shapes``)."""
    if not arg:
        return 0.0
    key, _, value = arg.partition("=")
    try:
        if key != "bias":
            raise ValueError
        return float(value)
    except ValueError:
        raise CnnlabError(f"shapes:{arg} is not understood; write shapes or shapes:bias=0.95 (the "
                          f"share of training images whose colour is their class's)") from None
