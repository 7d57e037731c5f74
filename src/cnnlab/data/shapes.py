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
MORE_KINDS = ["pentagon", "hexagon", "rhombus", "cross"]
"""``shapes:kinds=8`` adds these: classes that look alike in pairs and triples (a pentagon, a
hexagon and a circle; a square and a rhombus; a star and a cross), so a model's confusions
have structure (the CNN tree's data)."""
GROUPS = ["other colour", "own colour"]


def _polygon(kind: str, cx: float, cy: float, r: float, theta: float) -> np.ndarray:
    sides = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
    if kind in sides:
        n = sides[kind]
        turn = np.pi / 4 if kind == "square" else 0.0  # as drawn before more kinds came
        angles, radii = theta + turn + np.arange(n) * 2 * np.pi / n, np.full(n, r)
    elif kind == "rhombus":  # a square squashed along one diagonal
        angles, radii = theta + np.arange(4) * np.pi / 2, np.array([r, 0.6 * r, r, 0.6 * r])
    elif kind == "cross":  # a plus sign: arms a third of the width
        a = r / 3
        corners = np.array([(a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a),
                            (-a, -r), (a, -r), (a, -a), (r, -a), (r, a)])
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        return np.array([cx, cy]) + corners @ rot.T
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
                hue: str = "random", kinds: int = 4) -> ImageDataset:
    """``n`` images of ``size`` x ``size`` pixels, with ``extras`` boxes (x0, y0, x1, y1), masks
    and groups (1: the shape has its own class's colour). ``hue``: "random" (tied to the class
    with probability ``color_bias``), "own" or "other" (the next class's hue). ``kinds``: the
    first 4 to 8 of ``CLASSES + MORE_KINDS``."""
    classes = (CLASSES + MORE_KINDS)[:kinds]
    rng = np.random.default_rng(seed)
    x = np.empty((n, size, size, 3), np.uint8)
    y = rng.integers(0, len(classes), n)
    boxes = np.empty((n, 4), np.float32)
    masks = np.empty((n, size, size), bool)
    groups = np.empty(n, np.int64)
    for i in range(n):
        kind = classes[y[i]]
        r = rng.uniform(0.18, 0.38) * size
        cx, cy = rng.uniform(r, size - r, 2)
        theta = rng.uniform(0, 2 * np.pi)
        cover = _mask(kind, size, cx, cy, r, theta)[..., None]
        h = _hue(rng, y[i], len(classes), color_bias, hue)
        groups[i] = int(round(h * len(classes))) % len(classes) == y[i]
        img = _background(rng, size) * (1 - cover) + _colour(rng, h) * cover
        x[i] = np.round(img * 255).astype(np.uint8)
        m = cover[..., 0] > 0.5
        masks[i] = m
        cols, rows = np.where(m.any(0))[0], np.where(m.any(1))[0]
        boxes[i] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) if len(cols) else 0
    return ImageDataset(
        torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y), classes,
        "shapes", flip_ok=True,
        extras={"boxes": torch.from_numpy(boxes), "masks": torch.from_numpy(masks),
                "groups": torch.from_numpy(groups)}, group_names=list(GROUPS),
    )


def _hue(rng: np.random.Generator, label: int, n_classes: int, color_bias: float, mode: str
         ) -> float:
    """The shape's hue in [0, 1). Without bias every mode draws twice from ``rng``, so the own-
    and other-colour versions of a set differ from it in colour only."""
    tied = rng.random() < color_bias
    if tied:
        return label / n_classes
    drawn = rng.random()
    if mode == "own":
        return label / n_classes
    if mode == "other":
        return (label + 1) % n_classes / n_classes
    return drawn


def load_shapes_splits(image_size: int = 0, color_bias: float = 0.0, kinds: int = 4, n: int = 0,
                       test: int = 0) -> DatasetSplits:
    """``n`` training images (0: 5,000) and ``test`` test images (0: a fifth as many)."""
    if not 0 <= color_bias <= 1:
        raise CnnlabError(f"shapes: bias must lie in [0, 1], got {color_bias}; e.g. shapes:bias=0.95")
    if not len(CLASSES) <= kinds <= len(CLASSES + MORE_KINDS):
        raise CnnlabError(f"shapes: kinds must lie in [{len(CLASSES)}, {len(CLASSES + MORE_KINDS)}], "
                          f"got {kinds}; e.g. shapes:kinds=8")
    if n < 0:
        raise CnnlabError(f"shapes: n must be >= 0 (0: 5000), got {n}; e.g. shapes:n=10000")
    if test < 0:
        raise CnnlabError(f"shapes: test must be >= 0 (0: a fifth of the training images), got {test}; "
                          "e.g. shapes:test=2000")
    size = image_size or 32
    n_train = n or 5000
    n_test = test or max(1, n_train // 5)
    return DatasetSplits(
        make_shapes(n_train, size, seed=0, color_bias=color_bias, kinds=kinds),
        make_shapes(n_test, size, seed=1, color_bias=0.0, kinds=kinds),
        f"procedural shapes ({kinds} kinds), {size}x{size} RGB, seeds 0 (train) and 1 (test), "
        f"colour bias {color_bias} in train",
    )


SHAPES_ARGS = {"bias": float, "kinds": int, "n": int, "test": int}


def parse_shapes_arg(arg: str) -> dict:
    """``shapes:bias=0.95,kinds=8,n=10000,test=2000`` as keyword arguments of
    ``load_shapes_splits`` (``color_bias``, ``kinds``, ``n``, ``test``); plain ``shapes``: none."""
    out = {}
    for part in filter(None, arg.split(",")):
        key, _, value = part.partition("=")
        try:
            out["color_bias" if key == "bias" else key] = SHAPES_ARGS[key](value)
        except (KeyError, ValueError):
            raise CnnlabError(f"shapes:{arg} is not understood; write shapes, shapes:bias=0.95 (the "
                              f"share of training images whose colour is their class's), "
                              f"shapes:kinds=8 (4 to 8 kinds of shape), shapes:n=10000 (training "
                              f"images) or shapes:test=2000 (test images), joined by commas") from None
    return out
