"""``cnnlab predict``: image files or a folder of them -> predictions as CSV or JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cnnlab.data.files import IMAGE_SUFFIXES, read_image
from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_write, atomic_write_text
from cnnlab.run import load_run


def list_images(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise CnnlabError(f"{p} holds no image files (PNG, JPEG, ...)")
        return files
    raise CnnlabError(f"{p} not found; give an image file or a folder of images")


def predict_paths(run_path: str, path: str, which: str = "last", top: int = 3) -> list[dict]:
    """Each image is converted to the model's channels and resized to its input size."""
    run = load_run(run_path)
    c, h, _ = run.meta["input_shape"]
    files = list_images(path)
    images = np.stack([read_image(f, h, "L" if c == 1 else "RGB") for f in files])  # (N, H, W, C)
    probs = run.predict(images, which=which)
    classes = run.classes
    rows = []
    for f, p in zip(files, probs, strict=True):
        order = np.argsort(-p)[:top]
        rows.append({"path": str(f), "predicted": classes[order[0]], "confidence": float(p[order[0]]),
                     "top": [{"class": classes[k], "probability": float(p[k])} for k in order]})
    return rows


def write_predictions(rows: list[dict], out: str | Path) -> None:
    out = Path(out)
    if out.suffix == ".json":
        atomic_write_text(out, json.dumps(rows, indent=2) + "\n")
        return

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "predicted", "confidence", "top"])
            for r in rows:
                top = "; ".join(f"{t['class']}:{t['probability']:.4f}" for t in r["top"])
                w.writerow([r["path"], r["predicted"], f"{r['confidence']:.4f}", top])

    atomic_write(out, write)
