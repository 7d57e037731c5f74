"""``videos``: procedural clips of moving shapes with exact tracking and action ground truth.

A clip is ``frames`` images of one textured background (drawn once, as in ``shapes``) on which
1 to ``max_objects`` circles, squares, triangles and stars move. Each object has a class, colour,
size, position, velocity and a constant acceleration (speed capped at ``MAX_SPEED`` px/frame); it
either bounces off the frame's borders or leaves the frame and comes back, bouncing off a wall
out of sight, as the bouncing digits of Moving MNIST do (Srivastava et al. 2015). Objects cross
paths and hide each other, later ones on top. Every object keeps its track id for the whole clip.

The **main object** (track id 1, drawn on top, always wholly inside the frame) performs one of
``ACTIONS``: it moves left, right, up or down at a constant speed, rotates in place clockwise or
anticlockwise as seen on screen (y down; never a circle, whose rotation cannot be seen), grows or
shrinks in place, or stays still. The action is the clip's label for action recognition.

Ground truth follows MOTChallenge (Milan et al. 2016, "MOT16: A Benchmark for Multi-Object
Tracking", arXiv:1603.00831): one row per visible object per frame, ``frame`` (1-based), ``id``
(1-based), ``x, y, w, h`` (the box of the object's *visible* pixels: top-left corner, width,
height, in 0-based pixel coordinates), then ``class``. An object hidden behind others or outside
the frame has no row in that frame. ``to_mot`` writes the rows as a ``gt.txt`` file
(``frame,id,x,y,w,h,conf,class,visibility``, conf 1, visibility 1.0); here ``class`` is the index
into ``CLASSES`` (0 circle ... 3 star), not MOT17's class codes (1 pedestrian, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.data.shapes import CLASSES, _background, _colour, _mask, _polygon
from cnnlab.errors import CnnlabError

ACTIONS = ("left", "right", "up", "down", "rotate_cw", "rotate_ccw", "grow", "shrink", "still")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
MAX_SPEED = 3.0
"""Distractors' top speed, pixels per frame."""


@dataclass
class VideoSet:
    """Clips (N, T, C, H, W) uint8 with their MOTChallenge tracks and action labels."""

    x: torch.Tensor
    tracks: list[np.ndarray]
    """Per clip, (M, 7) int64 rows ``frame (1-based), id, x, y, w, h, class``."""
    actions: torch.Tensor
    """(N,) long: the main object's action, an index into ``action_names``."""
    action_names: list[str]
    classes: list[str]
    name: str = ""

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Mover:
    """One object: its track id, class, colour (RGB in [0, 1]) and per-frame state, each (T,):
    centre, radius and rotation (radians; increasing is clockwise on screen)."""

    track_id: int
    label: int
    colour: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    r: np.ndarray
    theta: np.ndarray


def bounce_path(pos: np.ndarray, vel: np.ndarray, acc: np.ndarray, frames: int, lo: float, hi: float,
                max_speed: float = MAX_SPEED) -> np.ndarray:
    """(frames, 2) centres of a point that starts at ``pos`` and moves with ``vel`` (speed capped at
    ``max_speed``) and constant ``acc``, bouncing off walls at ``lo`` and ``hi`` on both axes."""
    out = np.empty((frames, 2))
    p, v = np.array(pos, float), np.array(vel, float)
    for t in range(frames):
        out[t] = p
        v = v + acc
        speed = float(np.hypot(v[0], v[1]))
        if speed > max_speed:
            v *= max_speed / speed
        p = p + v
        low, high = p < lo, p > hi
        p = np.where(low, 2 * lo - p, np.where(high, 2 * hi - p, p))
        v = np.where(low, np.abs(v), np.where(high, -np.abs(v), v))
        p = np.clip(p, lo, hi)
    return out


def _main_mover(rng: np.random.Generator, size: int, frames: int, action: str) -> Mover:
    """The main object (track id 1) performing ``action``, wholly inside the frame throughout."""
    rotating = action.startswith("rotate")
    label = int(rng.integers(1 if rotating else 0, len(CLASSES)))  # CLASSES[0] is the circle
    t = np.arange(frames, dtype=float)
    r = np.full(frames, rng.uniform(0.10, 0.16) * size)
    theta = np.full(frames, rng.uniform(0, 2 * np.pi))
    if rotating:
        r[:] = rng.uniform(0.14, 0.22) * size
        omega = np.deg2rad(rng.uniform(3, 8))  # per frame: far below the shapes' symmetry angles
        theta = theta + (omega if action == "rotate_cw" else -omega) * t
    elif action in ("grow", "shrink"):
        small = rng.uniform(0.08, 0.12) * size
        r = np.linspace(small, small * rng.uniform(1.6, 2.2), frames)
        r = r if action == "grow" else r[::-1].copy()
    lo, hi = r.max() + 1, size - r.max() - 1
    cx, cy = np.full(frames, rng.uniform(lo, hi)), np.full(frames, rng.uniform(lo, hi))
    if action in DIRECTIONS:
        speed = min(2.0, rng.uniform(0.6, 1.0) * (hi - lo) / max(frames - 1, 1))
        path = rng.uniform(lo, hi - speed * (frames - 1)) + speed * t  # increasing, inside [lo, hi]
        dx, dy = DIRECTIONS[action]
        if dx:
            cx = path if dx > 0 else lo + hi - path
        else:
            cy = path if dy > 0 else lo + hi - path
    return Mover(1, label, _colour(rng, rng.random()), cx, cy, r, theta)


def _distractor(rng: np.random.Generator, size: int, frames: int, track_id: int) -> Mover:
    """A shape moving with a random velocity and acceleration; 30% leave the frame and return."""
    label = int(rng.integers(0, len(CLASSES)))
    r = rng.uniform(0.08, 0.2) * size
    angle = rng.uniform(0, 2 * np.pi)
    vel = rng.uniform(0.5, 2.5) * np.array([np.cos(angle), np.sin(angle)])
    acc = rng.normal(0, 0.03, 2)
    pos = rng.uniform(r, size - r, 2)
    leaves = rng.random() < 0.3
    # walls: at the borders (the shape touches them) or out of sight beyond them
    margin = r + rng.uniform(0.05, 0.3) * size if leaves else -r
    path = bounce_path(pos, vel, acc, frames, -margin, size + margin)
    theta = np.full(frames, rng.uniform(0, 2 * np.pi))
    return Mover(track_id, label, _colour(rng, rng.random()), path[:, 0], path[:, 1],
                 np.full(frames, r), theta)


def _stamp(m: Mover, t: int, size: int) -> tuple[tuple[slice, slice], np.ndarray, int] | None:
    """The frame window an object covers at frame ``t``, its coverage there and its full area
    (pixels more than half covered, inside the frame or not); None when wholly outside."""
    r = float(m.r[t])
    n = int(np.ceil(2 * r)) + 3
    x0, y0 = int(np.floor(m.cx[t] - r)) - 1, int(np.floor(m.cy[t] - r)) - 1
    if x0 >= size or y0 >= size or x0 + n <= 0 or y0 + n <= 0:
        return None
    # a window with an integer origin keeps _mask's sample grid on the frame's pixel grid
    cover = _mask(CLASSES[m.label], n, m.cx[t] - x0, m.cy[t] - y0, r, float(m.theta[t]))
    area = int((cover > 0.5).sum())
    a, b = max(0, -y0), max(0, -x0)
    cover = cover[a: a + size - max(y0, 0), b: b + size - max(x0, 0)]
    window = (slice(max(y0, 0), max(y0, 0) + cover.shape[0]), slice(max(x0, 0), max(x0, 0) + cover.shape[1]))
    return window, cover, area


def render_clip(background: np.ndarray, movers: list[Mover]) -> dict:
    """Draw ``movers`` in list order (later on top) over ``background`` (H, W, 3) in [0, 1].

    Returns:
        ``frames`` (T, H, W, 3) uint8, ``id_map`` (T, H, W) int16 (the track id each pixel shows,
        0 for background), ``tracks`` (M, 7) int64 MOTChallenge rows sorted by frame and id, and
        ``visibility`` (M,): the share of each object's pixels that is seen in that frame.
    """
    size, frames = background.shape[0], len(movers[0].cx)
    video = np.repeat(background[None].astype(np.float32), frames, axis=0)
    id_map = np.zeros((frames, size, size), np.int16)
    areas = np.zeros((len(movers), frames))
    for t in range(frames):
        for k, m in enumerate(movers):
            stamp = _stamp(m, t, size)
            if stamp is None:
                continue
            window, cover, areas[k, t] = stamp
            c = cover[..., None].astype(np.float32)
            video[t][window] = video[t][window] * (1 - c) + m.colour.astype(np.float32) * c
            id_map[t][window][cover > 0.5] = m.track_id
    rows, vis = _rows(id_map, movers, areas)
    return {"frames": np.round(video * 255).astype(np.uint8), "id_map": id_map, "tracks": rows,
            "visibility": vis}


def _rows(id_map: np.ndarray, movers: list[Mover], areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MOTChallenge rows of the visible objects, boxes read off the drawn pixels."""
    frames, size = id_map.shape[:2]
    rows, vis = [], []
    for k, m in enumerate(movers):
        seen = id_map == m.track_id
        cols, lines = seen.any(1), seen.any(2)  # (T, W), (T, H)
        t = np.flatnonzero(cols.any(1))
        x0, y0 = cols[t].argmax(1), lines[t].argmax(1)
        x1, y1 = size - cols[t, ::-1].argmax(1), size - lines[t, ::-1].argmax(1)
        rows.append(np.stack([t + 1, np.full_like(t, m.track_id), x0, y0, x1 - x0, y1 - y0,
                              np.full_like(t, m.label)], 1))
        vis.append(seen[t].sum((1, 2)) / np.maximum(areas[k, t], 1))
    rows_, vis_ = np.concatenate(rows).astype(np.int64), np.concatenate(vis)
    order = np.lexsort((rows_[:, 1], rows_[:, 0]))
    return rows_[order], vis_[order]


def _keypoints(m: Mover) -> np.ndarray:
    """(T, K, 2) vertices of an object in a fixed order (a circle: 4 points on its rim), so a
    vertex keeps its identity from frame to frame."""
    kind = "square" if CLASSES[m.label] == "circle" else CLASSES[m.label]
    return np.stack([_polygon(kind, m.cx[t], m.cy[t], m.r[t], m.theta[t]) for t in range(len(m.cx))])


def make_clip(rng: np.random.Generator, size: int = 64, frames: int = 48, max_objects: int = 3,
              action: str | None = None) -> dict:
    """One clip of 1 to ``max_objects`` moving shapes whose main object (id 1) performs ``action``
    (one of ``ACTIONS``; None draws one at random).

    Returns:
        the entries of ``render_clip`` (``frames``, ``id_map``, ``tracks``, ``visibility``), plus
        ``action`` (index into ``ACTIONS``), ``keypoints`` (T, K, 2) of the main object's vertices
        in a fixed order, and ``movers`` (the objects' states, in track-id order).
    """
    if action is None:
        action = ACTIONS[int(rng.integers(0, len(ACTIONS)))]
    if action not in ACTIONS:
        raise CnnlabError(f"videos: unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    if size < 16 or frames < 2 or max_objects < 1:
        raise CnnlabError(f"videos: need size >= 16, frames >= 2 and max_objects >= 1, "
                          f"got {size}, {frames}, {max_objects}")
    background = _background(rng, size)
    main = _main_mover(rng, size, frames, action)
    others = [_distractor(rng, size, frames, k + 2) for k in range(int(rng.integers(0, max_objects)))]
    clip = render_clip(background, others + [main])  # the main object on top
    clip.update(action=ACTIONS.index(action), keypoints=_keypoints(main), movers=[main] + others)
    return clip


def make_videos(n: int, size: int = 64, frames: int = 48, seed: int = 0, max_objects: int = 3) -> VideoSet:
    """``n`` clips, seeded; the actions are balanced (each appears n // 9 or n // 9 + 1 times) and
    shuffled."""
    rng = np.random.default_rng(seed)
    actions = rng.permutation(np.arange(n) % len(ACTIONS))
    clips = [make_clip(rng, size, frames, max_objects, ACTIONS[a]) for a in actions]
    x = torch.from_numpy(np.stack([c["frames"] for c in clips])).permute(0, 1, 4, 2, 3).contiguous()
    return VideoSet(x, [c["tracks"] for c in clips], torch.from_numpy(actions).long(), list(ACTIONS),
                    list(CLASSES), f"videos{size}")


def boxes_at(tracks: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame's (1-based, as in the rows) boxes (M, 4) float32 x0, y0, x1, y1, track ids (M,)
    and class labels (M,) from a clip's MOTChallenge rows."""
    rows = np.asarray(tracks)[np.asarray(tracks)[:, 0] == frame] if len(tracks) else np.zeros((0, 7))
    xywh = rows[:, 2:6].astype(np.float32)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return boxes, rows[:, 1].astype(np.int64), rows[:, 6].astype(np.int64)


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def to_mot(rows: np.ndarray) -> str:
    """MOTChallenge ``gt.txt`` text of (M, 7) rows ``frame, id, x, y, w, h, class``: one line
    ``frame,id,x,y,w,h,conf,class,visibility`` per row, conf 1 and visibility 1.0."""
    return "".join(f"{','.join(_number(v) for v in r[:6])},1,{_number(r[6])},1.0\n" for r in np.asarray(rows))


def read_mot(text: str) -> np.ndarray:
    """(M, 7) float64 rows ``frame, id, x, y, w, h, class`` of a MOTChallenge ``gt.txt`` text (a
    line without a class column, as in tracker results, gets class -1)."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        v = [float(s) for s in line.replace(" ", "").split(",")]
        if len(v) < 6:
            raise CnnlabError(f"MOT line {line!r} has {len(v)} fields; need frame,id,x,y,w,h,...")
        rows.append(v[:6] + [v[7] if len(v) >= 9 else -1.0])
    return np.array(rows, np.float64).reshape(-1, 7)
