"""Users' own detection data, in the formats they already have: YOLO, COCO and Pascal VOC.

    yolo:PATH   PATH/images/*.png|jpg and PATH/labels/<same stem>.txt, one "class cx cy w h"
                line per box (normalized to [0, 1]); class names in PATH/classes.txt (one per
                line) or PATH/data.yaml (``names``); where data.yaml names ``train`` and ``val``
                folders under PATH/images, they are the training and test splits
    coco:PATH   a COCO instances JSON file; images are looked up beside it (or in images/)
    voc:PATH    PATH/Annotations/*.xml and PATH/JPEGImages/

COCO's crowd regions (``iscrowd``) and VOC's difficult objects (``<difficult>1``) are left out,
neither training targets nor ground truth, as both benchmarks' own evaluations ignore them.

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


def load_detection(spec: str, size: int = 64, skip_bad: bool = False, subset: str = ""
                   ) -> tuple[DetectionSet, list[tuple[str, str]]]:
    """``yolo:PATH``, ``coco:PATH`` or ``voc:PATH`` -> (the images and boxes, skipped files).
    ``subset``: YOLO only, the images under that folder of PATH (``yolo_splits``)."""
    kind, _, path = spec.partition(":")
    readers = {"yolo": _yolo, "coco": _coco, "voc": _voc}
    if kind not in readers or not path:
        raise CnnlabError(f"detection data {spec!r}: write yolo:PATH, coco:PATH or voc:PATH")
    root = Path(path).expanduser()
    if not root.exists():
        raise CnnlabError(f"{root} not found; give the folder (yolo, voc) or JSON file (coco)")
    classes, items = _yolo(root, subset) if kind == "yolo" else readers[kind](root)
    xs, targets, files, skipped, maps = [], [], [], [], []
    for image_path, read_boxes in items:
        try:
            if isinstance(read_boxes, BadAnnotation):  # its annotation could not be read at all
                raise read_boxes
            image = read_image(image_path, None, "RGB") if image_path.is_file() else _missing(image_path)
            h, w = image.shape[:2]
            boxes, labels, *extra = read_boxes(w, h, len(classes))
        except CnnlabError as e:
            if not skip_bad:
                raise
            skipped.append((str(image_path), str(e)))
            continue
        xs.append(read_image(image_path, size, "RGB"))
        scale = np.array([size / w, size / h, size / w, size / h], np.float32)
        target = {"boxes": torch.tensor(np.asarray(boxes, np.float32).reshape(-1, 4) * scale),
                  "labels": torch.tensor(labels, dtype=torch.long), "orig_size": (w, h)}
        maps.append(_with_shapes(target, extra[0] if extra else {}, labels, (w, h), size))
        targets.append(target)
        files.append(str(image_path))
    if not xs:
        raise CnnlabError(f"{root}: no usable image" + (f" ({len(skipped)} skipped)" if skipped else ""))
    if not any(len(t["labels"]) for t in targets):
        raise CnnlabError(f"{root}: none of its {len(xs)} images has an annotated object; there is "
                          f"nothing to learn or score ({_where_labels[kind]})")
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    mapped = torch.tensor([m is not None for m in maps])
    class_map = torch.from_numpy(np.stack(maps)) if mapped.all() else None
    return DetectionSet(x, targets, classes, spec, class_map, files,
                        mapped if mapped.any() and not mapped.all() else None), skipped


def _with_shapes(target: dict, extra: dict, labels: list[int], wh: tuple[int, int], size: int):
    """Add COCO keypoints (scaled to ``size``) to ``target``; return the image's class map at
    ``size`` (0 background, 1 + class; where objects overlap the smaller one wins), or None if
    an object has no mask."""
    w, h = wh
    if extra.get("keypoints") is not None:
        kp = np.asarray(extra["keypoints"], np.float32).reshape(len(labels), -1, 3)
        kp[..., 0] *= size / w
        kp[..., 1] *= size / h
        target["keypoints"] = torch.from_numpy(kp)
    masks = extra.get("masks")
    if masks is None or any(m is None for m in masks):
        return None
    from PIL import Image

    class_map = np.zeros((h, w), np.uint8)
    for k in sorted(range(len(masks)), key=lambda i: -int(masks[i].sum())):  # large first, small on top
        class_map[masks[k] > 0] = labels[k] + 1
    resized = [np.asarray(Image.fromarray(m * 255).resize((size, size), Image.Resampling.NEAREST)) > 0
               for m in masks]
    target["masks"] = torch.from_numpy(np.array(resized, bool).reshape(-1, size, size))
    return np.asarray(Image.fromarray(class_map).resize((size, size), Image.Resampling.NEAREST))


_where_labels = {"yolo": "YOLO reads PATH/labels/<image name>.txt, one 'class cx cy w h' line per box",
                 "coco": "COCO reads the annotations list of the JSON file",
                 "voc": "VOC reads the <object> entries of PATH/Annotations/*.xml"}


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
                            f"{w}x{h} image; fix the box, or pass --skip-bad to leave the image out")


def yolo_splits(path: str) -> tuple[str, str] | None:
    """The training and validation image folders a YOLO data.yaml names (``train: images/train``,
    ``val: images/val``, relative to PATH, as Ultralytics writes them), or None where it names
    no two such folders: then every image under PATH/images is one set."""
    data = Path(path).expanduser() / "data.yaml"
    if not data.is_file():
        return None
    import yaml

    spec = yaml.safe_load(data.read_text()) or {}
    train, val = spec.get("train"), spec.get("val")
    images = (Path(path).expanduser() / "images").resolve()
    if not (isinstance(train, str) and isinstance(val, str)):
        return None
    folders = [(Path(path).expanduser() / f).resolve() for f in (train, val)]
    if not all(f.is_dir() and f.is_relative_to(images) and f != images for f in folders):
        return None
    return tuple(str(f.relative_to(images)) for f in folders)


def _yolo(root: Path, subset: str = ""):
    names = root / "classes.txt"
    if names.is_file():
        classes = [c.strip() for c in names.read_text().splitlines() if c.strip()]
    elif (root / "data.yaml").is_file():
        import yaml

        raw = (yaml.safe_load((root / "data.yaml").read_text()) or {}).get("names", [])
        classes = [raw[k] for k in sorted(raw)] if isinstance(raw, dict) else list(raw)
    else:
        raise CnnlabError(f"{root}: no classes.txt or data.yaml with names; list the class names")
    folder = root / "images" / subset
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise CnnlabError(f"{folder} holds no images")
    if not (root / "labels").is_dir():
        raise CnnlabError(f"{root}/labels not found: YOLO keeps one .txt per image there, named as the "
                          f"image (images/a.jpg -> labels/a.txt), one 'class cx cy w h' line per box")

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
                    c, cx, cy, bw, bh = map(float, parts)  # some tools write the class as 0.0
                    if c != int(c):
                        raise ValueError
                    c = int(c)
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
    except IsADirectoryError:
        raise CnnlabError(f"coco:{path} is a folder; give its instances JSON file, e.g. "
                          f"coco:{path}/annotations/instances_train2017.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CnnlabError(f"{path} is not a COCO instances file ({type(e).__name__}: {e}); it needs "
                          f"images, annotations and categories") from None
    index = {c["id"]: k for k, c in enumerate(cats)}
    by_image: dict = {}
    for a in anns:
        by_image.setdefault(a.get("image_id"), []).append(a)
    folder = _coco_images(path, images)
    k = max([len(c.get("keypoints", [])) for c in cats] +
            [len(a.get("keypoints", [])) // 3 for a in anns if isinstance(a, dict)] + [0])

    def item(img: dict):
        if not isinstance(img, dict) or not isinstance(img.get("file_name"), str):
            where = f"{path} image id {img.get('id') if isinstance(img, dict) else img!r}"
            return Path(where), BadAnnotation(f"{where}: no file_name; name the image file")
        objects = by_image.get(img["id"], [])
        return folder / img["file_name"], lambda w, h, n: _coco_objects(objects, index, k, path, w, h, n)

    return [c["name"] for c in cats], [item(img) for img in images]


def _coco_objects(anns: list[dict], index: dict, k: int, path: Path, w: int, h: int, n: int):
    """One image's annotations as (boxes, labels, {masks, keypoints}); ``index`` maps a
    category id to its class, ``k`` is the number of keypoints (0: none)."""
    boxes, labels, masks, kps = [], [], [], []
    for a in anns:
        if a.get("iscrowd"):  # a crowd region, not one object: COCO's evaluation ignores
            continue          # it, so it is neither a target nor a ground truth here
        where = f"{path} annotation id {a.get('id')}"
        if a.get("category_id") not in index:
            raise BadAnnotation(f"{where}: category id {a.get('category_id')} is not in categories")
        try:
            x, y, bw, bh = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            raise BadAnnotation(f"{where}: no readable bbox [x, y, width, height]") from None
        box = [x, y, x + bw, y + bh]
        check_box(where, box, w, h, index[a["category_id"]], n)
        boxes.append(box)
        labels.append(index[a["category_id"]])
        masks.append(_coco_mask(a.get("segmentation"), w, h, where))
        kps.append(_coco_keypoints(a.get("keypoints"), k, where))
    return boxes, labels, {"masks": masks, "keypoints": kps if k else None}


def _coco_images(path: Path, images: list) -> Path:
    """The folder of a COCO file's images: beside it, in images/ beside it, or, in COCO's own
    layout (annotations/instances_train2017.json), train2017/ or images/ beside annotations/."""
    split = path.stem.removeprefix("instances_")
    candidates = [path.parent / "images", path.parent, path.parent.parent / split,
                  path.parent.parent / "images" / split, path.parent.parent / "images"]
    first = next((img["file_name"] for img in images
                  if isinstance(img, dict) and isinstance(img.get("file_name"), str)), None)
    for folder in candidates:
        if first is not None and (folder / first).is_file():
            return folder
    return candidates[0] if candidates[0].is_dir() else path.parent


def _coco_mask(segmentation, w: int, h: int, where: str) -> np.ndarray | None:
    """An annotation's polygons or RLE as a (h, w) uint8 mask (faster-coco-eval's mask tools),
    or None where it has none."""
    if not segmentation:
        return None
    from faster_coco_eval.core import mask as mask_utils

    try:
        return mask_utils.decode(mask_utils.segmToRle(segmentation, w, h)).reshape(h, w).astype(np.uint8)
    except Exception as e:  # the C extension raises several kinds on malformed input
        raise BadAnnotation(f"{where}: the segmentation is neither polygons nor RLE ({e})") from None


def _coco_keypoints(values, k: int, where: str) -> np.ndarray:
    """An annotation's keypoints as (k, 3) (x, y, visibility); none: k absent ones."""
    if not values:
        return np.zeros((k, 3), np.float32)
    try:
        kp = np.asarray(values, np.float32).reshape(k, 3)
    except ValueError:
        raise BadAnnotation(f"{where}: keypoints must be {k} x (x, y, visibility), got {len(values)} "
                            f"numbers") from None
    return kp


def _voc(root: Path):
    import xml.etree.ElementTree as ET

    files = sorted((root / "Annotations").glob("*.xml"))
    if not files:
        raise CnnlabError(f"{root}/Annotations holds no .xml files")
    parsed, names, broken = [], set(), []
    for f in files:
        try:
            tree = ET.parse(f).getroot()
        except ET.ParseError as e:  # stops the load, or with --skip-bad leaves this image out
            broken.append((f, BadAnnotation(f"{f} is not valid XML ({e}); fix or remove it")))
            continue
        objs = [o for o in tree.findall("object") if (o.findtext("difficult") or "0").strip() != "1"]
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
                name = (o.findtext("name") or "").strip()
                if not name:
                    raise BadAnnotation(f"{where}: the object has no <name>; name its class")
                label = classes.index(name)
                check_box(where, box, w, h, label, n)
                boxes.append(box)
                labels.append(label)
            return boxes, labels

        return read

    return classes, [(root / "JPEGImages" / name, reader(f, objs)) for f, name, objs in parsed] + broken
