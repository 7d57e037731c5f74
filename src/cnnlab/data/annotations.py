"""Users' own detection data, in the formats they already have: YOLO, COCO and Pascal VOC.

    yolo:PATH   PATH/images/*.png|jpg and PATH/labels/<same stem>.txt, one "class cx cy w h"
                line per box (normalized to [0, 1]); class names in PATH/classes.txt (one per
                line) or PATH/data.yaml (``names``)
    coco:PATH   a COCO instances JSON file; images are looked up beside it (or in images/)
    voc:PATH    PATH/Annotations/*.xml and PATH/JPEGImages/

Every image is resized to ``size`` x ``size`` and its boxes scaled with it; each target keeps
the original ``(width, height)`` so predictions can be mapped back to the photo's pixels.
A malformed annotation (a box outside the image, a negative size, an unknown class, a missing
image, a broken XML or JSON) stops with one line naming the file and the line or object;
with ``skip_bad`` the image is left out and (file, reason) is listed instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.files import IMAGE_SUFFIXES, read_image
from cnnlab.data.scenes import DetectionSet
from cnnlab.errors import CnnlabError

TOLERANCE = 1e-3
"""How far (as a fraction of the image) a box may stick out before it counts as outside."""


class BadAnnotation(CnnlabError):
    pass


def load_detection(spec: str, size: int = 64, skip_bad: bool = False
                   ) -> tuple[DetectionSet, list[tuple[str, str]]]:
    """``yolo:PATH``, ``coco:PATH`` or ``voc:PATH`` -> (the images and boxes, skipped files)."""
    kind, _, path = spec.partition(":")
    readers = {"yolo": _yolo, "coco": _coco, "voc": _voc}
    if kind not in readers or not path:
        raise CnnlabError(f"detection data {spec!r}: write yolo:PATH, coco:PATH or voc:PATH")
    root = Path(path).expanduser()
    if not root.exists():
        raise CnnlabError(f"{root} not found; give the folder (yolo, voc) or JSON file (coco)")
    classes, items = readers[kind](root)
    xs, targets, files, skipped = [], [], [], []
    for image_path, read_boxes in items:
        try:
            image = read_image(image_path, None, "RGB") if image_path.is_file() else _missing(image_path)
            h, w = image.shape[:2]
            boxes, labels = read_boxes(w, h, len(classes))
        except CnnlabError as e:
            if not skip_bad:
                raise
            skipped.append((str(image_path), str(e)))
            continue
        xs.append(read_image(image_path, size, "RGB"))
        scale = np.array([size / w, size / h, size / w, size / h], np.float32)
        targets.append({"boxes": torch.tensor(np.asarray(boxes, np.float32).reshape(-1, 4) * scale),
                        "labels": torch.tensor(labels, dtype=torch.long), "orig_size": (w, h)})
        files.append(str(image_path))
    if not xs:
        raise CnnlabError(f"{root}: no usable image" + (f" ({len(skipped)} skipped)" if skipped else ""))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    return DetectionSet(x, targets, classes, spec, None, files), skipped


def _missing(path: Path):
    raise BadAnnotation(f"{path}: the image file is missing; add it or remove its annotation")


def check_box(where: str, box, w: int, h: int, label: int, n_classes: int) -> None:
    x0, y0, x1, y1 = box
    if not 0 <= label < n_classes:
        raise BadAnnotation(f"{where}: class id {label} is unknown (there are {n_classes} classes)")
    if x1 <= x0 or y1 <= y0:
        raise BadAnnotation(f"{where}: the box has a zero or negative size ({x1 - x0:g} x {y1 - y0:g})")
    tol_w, tol_h = TOLERANCE * w, TOLERANCE * h
    if x0 < -tol_w or y0 < -tol_h or x1 > w + tol_w or y1 > h + tol_h:
        raise BadAnnotation(f"{where}: the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the "
                            f"{w}x{h} image")


def _yolo(root: Path):
    names = root / "classes.txt"
    if names.is_file():
        classes = [c.strip() for c in names.read_text().splitlines() if c.strip()]
    elif (root / "data.yaml").is_file():
        import yaml

        raw = (yaml.safe_load((root / "data.yaml").read_text()) or {}).get("names", [])
        classes = [raw[k] for k in sorted(raw)] if isinstance(raw, dict) else list(raw)
    else:
        raise CnnlabError(f"{root}: no classes.txt or data.yaml with names; list the class names")
    images = sorted(p for p in (root / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise CnnlabError(f"{root}/images holds no images")

    def reader(image: Path):
        label_file = root / "labels" / image.relative_to(root / "images").with_suffix(".txt")

        def read(w: int, h: int, n: int):
            boxes, labels = [], []
            lines = label_file.read_text().splitlines() if label_file.is_file() else []
            for k, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                where = f"{label_file} line {k}"
                parts = line.split()
                try:
                    c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:5])
                    if len(parts) != 5:
                        raise ValueError
                except (ValueError, IndexError):
                    raise BadAnnotation(f"{where}: expected 'class cx cy w h', "
                                        f"got {line.strip()!r}") from None
                box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
                check_box(where, box, w, h, c, n)
                boxes.append(box)
                labels.append(c)
            return boxes, labels

        return read

    return classes, [(p, reader(p)) for p in images]


def _coco(path: Path):
    try:
        data = json.loads(path.read_text())
        cats = sorted(data["categories"], key=lambda c: c["id"])
        images = data["images"]
        anns = data.get("annotations", [])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CnnlabError(f"{path} is not a COCO instances file ({type(e).__name__}: {e}); it needs "
                          f"images, annotations and categories") from None
    index = {c["id"]: k for k, c in enumerate(cats)}
    by_image: dict = {}
    for a in anns:
        by_image.setdefault(a.get("image_id"), []).append(a)
    folder = path.parent / "images" if (path.parent / "images").is_dir() else path.parent

    def reader(img: dict):
        def read(w: int, h: int, n: int):
            boxes, labels = [], []
            for a in by_image.get(img["id"], []):
                where = f"{path} annotation id {a.get('id')}"
                if a.get("category_id") not in index:
                    raise BadAnnotation(f"{where}: category id {a.get('category_id')} is not in categories")
                x, y, bw, bh = (float(v) for v in a["bbox"])
                box = [x, y, x + bw, y + bh]
                check_box(where, box, w, h, index[a["category_id"]], n)
                boxes.append(box)
                labels.append(index[a["category_id"]])
            return boxes, labels

        return read

    return [c["name"] for c in cats], [(folder / img["file_name"], reader(img)) for img in images]


def _voc(root: Path):
    import xml.etree.ElementTree as ET

    files = sorted((root / "Annotations").glob("*.xml"))
    if not files:
        raise CnnlabError(f"{root}/Annotations holds no .xml files")
    parsed, names = [], set()
    for f in files:
        try:
            tree = ET.parse(f).getroot()
        except ET.ParseError as e:
            raise CnnlabError(f"{f} is not valid XML ({e}); fix or remove it") from None
        objs = tree.findall("object")
        names |= {(o.findtext("name") or "").strip() for o in objs}
        parsed.append((f, tree.findtext("filename") or f.with_suffix(".jpg").name, objs))
    classes = sorted(n for n in names if n)

    def reader(f: Path, objs):
        def read(w: int, h: int, n: int):
            boxes, labels = [], []
            for k, o in enumerate(objs, 1):
                where = f"{f} object {k}"
                try:
                    b = o.find("bndbox")
                    box = [float(b.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
                except (AttributeError, TypeError, ValueError):
                    raise BadAnnotation(f"{where}: no readable bndbox (xmin, ymin, xmax, ymax)") from None
                box[0] -= 1  # VOC counts pixels from 1, inclusive
                box[1] -= 1
                label = classes.index((o.findtext("name") or "").strip()) if o.findtext("name") else -1
                check_box(where, box, w, h, label, n)
                boxes.append(box)
                labels.append(label)
            return boxes, labels

        return read

    return classes, [(root / "JPEGImages" / name, reader(f, objs)) for f, name, objs in parsed]
