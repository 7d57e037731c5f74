"""``scenes``: procedural images of several shapes, with exact boxes, masks and keypoints.

Each image (64x64 or 128x128) holds 1 to ``max_objects`` circles, squares, triangles and
stars of varied size, colour and rotation on the textured backgrounds of ``shapes``; later
objects cover earlier ones, and an object is re-placed until at least 40% of it stays visible.
Every object carries
- its box (x0, y0, x1, y1, pixels, of its visible part) and class,
- its instance mask (visible pixels),
- keypoints in a canonical order, (K, 3) as (x, y, visibility) with COCO's visibility codes
  (2 visible, 1 hidden behind another object, 0 absent): polygon vertices from the topmost
  one clockwise (as seen on screen); a circle's centre, then its north, east, south and west
  points; padded to ``MAX_KEYPOINTS`` with absent ones,
and each image a per-pixel class map (0 background, 1 + class). Splits are fixed by seed:
train 0, val 1, test 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cnnlab.data.shapes import CLASSES, _background, _colour, _mask, _polygon

MAX_KEYPOINTS = 10
MIN_VISIBLE = 0.4


@dataclass
class DetectionSet:
    """Images (N, C, H, W) uint8 and, per image, its objects (boxes, labels, masks, keypoints)."""

    x: torch.Tensor
    targets: list[dict]
    classes: list[str]
    name: str = ""
    class_map: torch.Tensor | None = None
    """(N, H, W) uint8: 0 background, 1 + class (segmentation), where known."""
    files: list[str] = field(default_factory=list)
    mapped: torch.Tensor | None = None
    """(N,) bool where some images have a mask for every object and others do not (no class
    map then): which do, so a segmenter's refusal can say how many do not."""

    def __len__(self) -> int:
        return len(self.x)


def _keypoints(kind: str, cx: float, cy: float, r: float, theta: float) -> np.ndarray:
    """(k, 2) keypoints in the canonical order: topmost vertex first, then clockwise on screen."""
    if kind == "circle":
        return np.array([[cx, cy], [cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]])
    pts = _polygon(kind, cx, cy, r, theta)
    # on screen (y down) increasing angle atan2(dy, dx) runs clockwise
    angle = np.arctan2(pts[:, 1] - cy, pts[:, 0] - cx)
    order = np.argsort(angle)
    pts = pts[order]
    top = int(np.argmin(pts[:, 1]))
    return np.roll(pts, -top, axis=0)


def _place(rng, kind: str, size: int):
    r = rng.uniform(0.10, 0.24) * size
    cx, cy = rng.uniform(r * 0.6, size - r * 0.6, 2)
    theta = rng.uniform(0, 2 * np.pi)
    return r, cx, cy, theta, _mask(kind, size, cx, cy, r, theta)


def make_scene(rng: np.random.Generator, size: int, max_objects: int):
    """One image (H, W, 3) uint8, its class map, and its objects' annotations."""
    img = _background(rng, size)
    owner = np.full((size, size), -1)  # which object each pixel shows
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(0, len(CLASSES)))
        for _attempt in range(20):
            r, cx, cy, theta, cover = _place(rng, CLASSES[label], size)
            hard = cover > 0.5
            if not hard.any():
                continue
            after = np.where(hard, len(objects), owner)
            if all((after == k).sum() >= MIN_VISIBLE * o["area"] for k, o in enumerate(objects)):
                break
        else:
            continue  # no placement kept the others visible: leave this object out
        img = img * (1 - cover[..., None]) + _colour(rng, rng.random()) * cover[..., None]
        owner = after
        objects.append({"label": label, "area": int(hard.sum()),
                        "kp": _keypoints(CLASSES[label], cx, cy, r, theta)})
    return (np.round(img * 255).astype(np.uint8), owner, objects)


def _annotate(owner: np.ndarray, objects: list[dict], size: int) -> tuple[dict, np.ndarray]:
    boxes, labels, masks, kps = [], [], [], []
    class_map = np.zeros((size, size), np.uint8)
    for k, o in enumerate(objects):
        m = owner == k
        if not m.any():
            continue
        cols, rows = np.where(m.any(0))[0], np.where(m.any(1))[0]
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
        labels.append(o["label"])
        masks.append(m)
        class_map[m] = o["label"] + 1
        kp = np.zeros((MAX_KEYPOINTS, 3), np.float32)
        for j, (x, y) in enumerate(o["kp"]):
            xi, yi = int(np.clip(x, 0, size - 1)), int(np.clip(y, 0, size - 1))
            inside = 0 <= x < size and 0 <= y < size
            near = m[max(0, yi - 1): yi + 2, max(0, xi - 1): xi + 2].any()
            kp[j] = (x, y, 0 if not inside else 2 if near else 1)
        kps.append(kp)
    target = {"boxes": torch.tensor(np.array(boxes, np.float32).reshape(-1, 4)),
              "labels": torch.tensor(labels, dtype=torch.long),
              "masks": torch.from_numpy(np.array(masks, bool).reshape(-1, size, size)),
              "keypoints": torch.from_numpy(np.array(kps, np.float32).reshape(-1, MAX_KEYPOINTS, 3))}
    return target, class_map


def make_scenes(n: int, size: int = 64, seed: int = 0, max_objects: int = 4) -> DetectionSet:
    """``n`` scenes of ``size`` x ``size`` pixels, seeded."""
    rng = np.random.default_rng(seed)
    xs, targets, maps = [], [], []
    for _ in range(n):
        img, owner, objects = make_scene(rng, size, max_objects)
        target, class_map = _annotate(owner, objects, size)
        xs.append(img)
        targets.append(target)
        maps.append(class_map)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    return DetectionSet(x, targets, list(CLASSES), f"scenes{size}", torch.from_numpy(np.stack(maps)))


def load_scenes(size: int = 64, n_train: int = 2000, n_val: int = 500, n_test: int = 500,
                max_objects: int = 4) -> dict[str, DetectionSet]:
    """The fixed splits: train (seed 0), val (seed 1), test (seed 2)."""
    return {split: make_scenes(n, size, seed, max_objects)
            for split, n, seed in (("train", n_train, 0), ("val", n_val, 1), ("test", n_test, 2))}
