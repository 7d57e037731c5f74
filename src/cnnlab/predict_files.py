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


def predict_paths(run_path: str, path: str, which: str = "last", top: int = 3,
                  strict: bool = False) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predictions for every readable image, and (file, reason) for every skipped one.

    Each image is converted to the model's channels and resized to its input size. A file
    that is not a readable image is skipped (or, with ``strict``, stops everything); if no
    file can be read, that is an error."""
    if str(run_path).endswith(".onnx"):  # an exported model: ONNX Runtime, nothing else needed
        from cnnlab.export import OnnxModel

        run = OnnxModel(run_path)
    else:
        run = load_run(run_path).require_classifier("predict").require_images("predict")
    if top < 1:
        raise CnnlabError(f"--top must be at least 1, got {top}")
    c, h, _ = run.meta["input_shape"]
    images, kept, skipped = [], [], []
    files = list_images(path)
    for f in files:
        try:
            images.append(read_image(f, h, "L" if c == 1 else "RGB"))
            kept.append(f)
        except CnnlabError as e:
            if strict or len(files) == 1:
                raise
            skipped.append((str(f), str(e)))
    if not images:
        raise CnnlabError(f"none of the {len(skipped)} file(s) in {path} is a readable image; the "
                          f"first: {skipped[0][1]}")
    probs = run.predict(np.stack(images), which=which)  # (N, H, W, C) in, (N, K) out
    classes = run.classes
    rows = []
    for f, p in zip(kept, probs, strict=True):
        order = np.argsort(-p)[:top]
        rows.append({"path": str(f), "predicted": classes[order[0]], "confidence": float(p[order[0]]),
                     "top": [{"class": classes[k], "probability": float(p[k])} for k in order]})
    return rows, skipped


def check_output(out: str | Path, suffixes: tuple[str, ...] = (".csv", ".json"),
                 wrong: str = "write predictions to a .csv or a .json file",
                 example: str = "predictions.csv") -> None:
    """Refuse, before the work it would record, an output file cnnlab cannot write as asked."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise CnnlabError(f"--out {out}: {wrong}")
    if not out.parent.is_dir():
        raise CnnlabError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise CnnlabError(f"--out {out} is a folder; give a file name such as {out / example}")


def write_predictions(rows: list[dict], out: str | Path) -> None:
    check_output(out)
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
