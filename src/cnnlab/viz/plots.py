"""Matplotlib figures for the report, each saved as plots/<name>.png and inlined as base64."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnlab.io import atomic_write  # noqa: E402

plt.rcParams.update({"figure.dpi": 100, "font.size": 10, "axes.spines.top": False,
                     "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3})


def save(fig, plots_dir: Path, name: str) -> str:
    """Write the figure to plots_dir/name.png and return a data: URI for the HTML."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    atomic_write(plots_dir / f"{name}.png", lambda tmp: Path(tmp).write_bytes(data))
    return "data:image/png;base64," + base64.b64encode(data).decode()


def to_hwc(img: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W) or (H, W, 3) for imshow; a clip (frames stacked as 3T
    channels) shows its middle frame."""
    c = img.shape[0]
    if c > 3 and c % 3 == 0:
        middle = (c // 3) // 2
        img = img[3 * middle: 3 * middle + 3]
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def show(ax, img: np.ndarray) -> None:
    ax.imshow(to_hwc(img), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def training_curves(history: list[dict], held: str = "validation"):
    """Loss and accuracy (or the task's score) per epoch, on the training batches and on the
    images ``held`` out: "validation", or "test" where the run validated on its test split."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    val = [(r["epoch"], r) for r in history if r["val_acc"] not in (None, "")]
    axes[0].plot(epochs, [r["train_loss"] for r in history], label="train", marker=".")
    if val:
        axes[0].plot([e for e, _ in val], [r["val_loss"] for _, r in val], label=held, marker=".")
    scores = [(r["epoch"], r["val_score"]) for r in history if r.get("val_score") not in (None, "")]
    axes[0].set(title="Loss", xlabel="epoch", ylabel="task loss" if scores else "cross-entropy")
    if scores:  # a dense task: its validation score (mAP, mIoU, PCK) instead of accuracy
        axes[1].plot([e for e, _ in scores], [v for _, v in scores], label=held, marker=".")
        axes[1].set(title=f"{held.capitalize()} score (mAP, mIoU or PCK)", xlabel="epoch")
    else:
        axes[1].plot(epochs, [100 * r["train_acc"] for r in history], label="train (augmented)",
                     marker=".")
        axes[1].plot([e for e, _ in val], [100 * r["val_acc"] for _, r in val], label=held,
                     marker=".")
        axes[1].set(title="Accuracy", xlabel="epoch", ylabel="%")
    robust = [(r["epoch"], r["val_robust_acc"]) for r in history if r.get("val_robust_acc") is not None]
    if robust:
        axes[1].plot([e for e, _ in robust], [100 * a for _, a in robust], label=f"{held}, PGD-10",
                     marker=".", color="tab:red")
    axes[2].plot(epochs, [r["lr"] for r in history], color="tab:gray", marker=".")
    axes[2].set(title="Learning rate at epoch end", xlabel="epoch")
    for ax in axes[:2]:
        ax.legend()
    fig.tight_layout()
    return fig


def confusion(cm: np.ndarray, classes: list[str]):
    k = len(classes)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(max(5, 0.45 * k + 2), 14)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    if k <= 20:
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=11 if k <= 10 else 8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class",
           title="Confusion matrix (counts; colour = fraction of the true class)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, labels: np.ndarray, classes: list[str], per_row: int = 8):
    """Sample images, one row per class (labels sorted), titled by class."""
    rows = sorted(set(labels.tolist()))
    n_rows = min(len(rows), 20)
    fig, axes = plt.subplots(n_rows, per_row, figsize=(per_row * 0.8, n_rows * 0.85), squeeze=False)
    for r, c in enumerate(rows[:n_rows]):
        imgs = images[labels == c][:per_row]
        for j in range(per_row):
            ax = axes[r, j]
            if j < len(imgs):
                show(ax, imgs[j])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(classes[c], rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def titled_grid(images: np.ndarray, titles: list[str], per_row: int = 8):
    """Images in rows of ``per_row``, each with its title above it."""
    per_row = max(1, min(per_row, len(images)))
    rows = (len(images) + per_row - 1) // per_row
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * 1.5, rows * 1.75), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles, strict=False):
        show(ax, image)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def misclassified(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: list[str],
                  per_row: int = 6):
    n = len(images)
    per_row = min(per_row, n)
    rows = (n + per_row - 1) // per_row
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * 2.0, rows * 2.75), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        show(ax, images[i])
        ax.axis("on")
        top = np.argsort(-probs[i])[:3]
        lines = [f"{_short(classes[t])}: {100 * probs[i][t]:.0f}%" for t in top]
        ax.set_title(f"true: {_short(classes[labels[i]])}", fontsize=12, color="tab:green",
                     fontweight="bold")
        ax.set_xlabel("\n".join(lines), fontsize=11, color="tab:red")
    fig.tight_layout()
    return fig


def reliability(rel: dict):
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    edges = np.array(rel["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    acc = [a if a is not None else 0 for a in rel["accuracy"]]
    ax.bar(centers, acc, width=edges[1] - edges[0], edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="tab:red", label="perfect calibration")
    ax.set(xlabel="confidence (max probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="Reliability diagram")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def bars(names: list[str], values: list[float], title: str, xlabel: str, log: bool = False):
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(names) + 1.2))
    ax.barh(names, values, color="tab:blue")
    ax.set(title=title, xlabel=xlabel)
    if log:
        ax.set_xscale("log")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.4g}", va="center", fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def _short(name: str, n: int = 12) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"
