"""Pictures of a generator: sample grids, its training (losses and FID against the floor), the
class histogram, the samples nearest to a training image, and the snapshots as a GIF."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from cnnlab.viz.plots import plt, show


def picture(images: np.ndarray, columns: int = 8, title: str = "", scale: float = 0.55):
    """uint8 images (N, C, H, W) as one grid without gaps between rows of labels."""
    import torch

    from cnnlab.tasks.generate import grid

    g = grid(torch.from_numpy(np.ascontiguousarray(images)), columns)
    rows = g.shape[0] / g.shape[1] * columns
    fig, ax = plt.subplots(figsize=(columns * scale + 0.4, rows * scale + (0.5 if title else 0.1)))
    ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def class_rows(images: np.ndarray, classes: list[str], per_class: int = 8):
    """The conditional GAN's samples, one row per class asked for, the class written left."""
    k = len(classes)
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.55 + 1.2, k * 0.6))
    axes = np.atleast_2d(axes)
    for c in range(k):
        for j in range(per_class):
            show(axes[c, j], images[c * per_class + j])
        axes[c, 0].set_ylabel(classes[c][:10], rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.15)
    return fig


def training(history: list[dict], floor: float | None):
    """D and G losses per epoch, and the domain FID at each evaluation against the floor."""
    rows = [r for r in history if r.get("g_loss") not in (None, "")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    e = [r["epoch"] for r in rows]
    axes[0].plot(e, [r["d_loss"] for r in rows], label="discriminator", marker=".")
    axes[0].plot(e, [r["g_loss"] for r in rows], label="generator", marker=".")
    axes[0].set(title="Losses (a game: neither should win)", xlabel="epoch", ylabel="loss")
    axes[0].legend()
    fid = [(r["epoch"], r["val_score"]) for r in history if r.get("val_score") not in (None, "")]
    if fid:
        axes[1].plot([a for a, _ in fid], [b for _, b in fid], marker="o", label="generated")
    if floor is not None:
        axes[1].axhline(floor, color="grey", ls="--", label="real-data floor (final, same n)")
    axes[1].set(title="Domain FID on the evaluation images (lower is better)", xlabel="epoch",
                ylabel="domain FID")
    axes[1].set_yscale("log")
    axes[1].legend()
    fig.tight_layout()
    return fig


def label_bars(fake: list[float], real: list[float], classes: list[str]):
    """The judge's class shares of the samples beside those of real images."""
    k = len(classes)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * k + 2), 3.2))
    ax.bar(x - 0.2, real, 0.4, label="real (evaluation images)", color="#999")
    ax.bar(x + 0.2, fake, 0.4, label="generated", color="#1f77b4")
    ax.set_xticks(x, [c[:10] for c in classes], rotation=45 if k > 10 else 0,
                  ha="right" if k > 10 else "center")
    ax.set(ylabel="share of images", title="Which classes the generator makes (the judge's labels)")
    ax.legend()
    fig.tight_layout()
    return fig


def closest_pairs(samples: np.ndarray, train: np.ndarray, distance: np.ndarray):
    """Top row: the samples nearest to a training image (pixels); bottom row: that image."""
    n = len(samples)
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n + 0.8, 2.8))
    axes = np.atleast_2d(axes).reshape(2, n)
    for j in range(n):
        show(axes[0, j], samples[j])
        show(axes[1, j], train[j])
        axes[0, j].set_title(f"{distance[j]:.2f}", fontsize=8)
    axes[0, 0].set_ylabel("sample", rotation=0, ha="right", va="center")
    axes[1, 0].set_ylabel("nearest\ntraining", rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.08, hspace=0.15, left=0.12)
    return fig


def snapshots_gif(folder: Path, out: Path, max_side: int = 320) -> str | None:
    """``snapshots/epoch-NNN.png`` as one GIF (``out``), upscaled by whole pixels to about
    ``max_side``; returns a data: URI (None without snapshots)."""
    from PIL import Image, ImageDraw

    from cnnlab.io import atomic_write

    files = sorted(folder.glob("epoch-*.png"))
    if not files:
        return None
    frames = []
    for f in files:
        im = Image.open(f).convert("RGB")
        k = max(1, max_side // max(im.size))
        im = im.resize((im.width * k, im.height * k), Image.NEAREST)
        canvas = Image.new("RGB", (im.width, im.height + 16), "white")
        canvas.paste(im, (0, 16))
        ImageDraw.Draw(canvas).text((2, 2), f"epoch {int(f.stem.split('-')[1])}", fill="black")
        frames.append(canvas)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=400, loop=0)
    data = buf.getvalue()
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return "data:image/gif;base64," + base64.b64encode(data).decode()
