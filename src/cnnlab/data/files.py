"""The user's own data: ``folder:PATH`` (one sub-folder per class) and ``npz:PATH``."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.data.base import DatasetSplits, ImageDataset, from_numpy
from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_MAX_PIXELS = 40_000_000
MAX_CLASSES = 100_000


def max_pixels() -> int:
    """The most pixels (width x height) an image file may have, for every reader of images
    (folder datasets, predict, explain --image, the web app): 40 million unless the
    environment variable CNNLAB_MAX_PIXELS says otherwise. Larger files are refused before
    they are decoded, so a decompression bomb costs nothing."""
    value = os.environ.get("CNNLAB_MAX_PIXELS", "")
    try:
        limit = int(value) if value else DEFAULT_MAX_PIXELS
    except ValueError:
        limit = 0
    if limit < 1:
        raise CnnlabError(f"CNNLAB_MAX_PIXELS={value!r} is not a positive whole number; unset it "
                          f"or give a pixel count such as 40000000")
    return limit


def read_image(path, size: int | None, mode: str, name: str = "",
               upsampled: list | None = None) -> np.ndarray:
    """One image file (a path, or a binary file object named ``name`` in messages) as uint8
    (H, W, C) in ``mode`` (L or RGB), resized to size x size; an image smaller than that on a
    side adds its (width, height) to ``upsampled``.

    An image whose sides are whole multiples of ``size`` shrinks by the mean of each block (a
    box filter), which undoes an enlargement by repeated pixels exactly: a digit saved at 16x
    reads as the 8x8 digit it was (bilinear's wider filter blurred it, and LeNet-5 fell from
    97.5% to 95.8% on such digits: benchmarks/RESULTS.md, 2026-12-07). Other sizes resize
    bilinearly (with PIL's antialiasing when shrinking)."""
    limit = max_pixels()
    shown = name or path
    try:
        with warnings.catch_warnings():  # the size is checked below, before anything is decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > limit:
                    raise _too_big(shown, f"{im.width}x{im.height}", limit)
                im = ImageOps.exif_transpose(im)  # a phone photo stands as it was taken
                if im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: PIL's convert clips
                    im = Image.fromarray((np.asarray(im).astype(np.uint32) // 257).clip(0, 255)
                                         .astype(np.uint8))  # at 255; scaled to 8 bits instead
                im = im.convert(mode)
                if upsampled is not None and size and min(im.size) < size:
                    upsampled.append(im.size)
                if size and im.size != (size, size):
                    blocks = im.width % size == 0 and im.height % size == 0
                    resample = Image.Resampling.BOX if blocks else Image.Resampling.BILINEAR
                    im = im.resize((size, size), resample)
                a = np.array(im, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only
    except Image.DecompressionBombError as e:  # over PIL's own ceiling: refused while opening
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)):,}" if found else f"over {2 * Image.MAX_IMAGE_PIXELS:,}"
        raise _too_big(shown, size, limit) from None
    except FileNotFoundError:
        raise CnnlabError(f"{shown}: no such file; check the path") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CnnlabError(f"{shown} is not a readable image ({e.__class__.__name__}); "
                          f"remove it or replace it with a PNG or JPEG") from None
    return a[:, :, None] if a.ndim == 2 else a


def _too_big(path, size: str, limit: int) -> CnnlabError:
    return CnnlabError(f"{path} has {size} pixels, more than the {limit:,} allowed; shrink it, or "
                       f"raise the limit with CNNLAB_MAX_PIXELS")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _class_folders(root: Path) -> list[str]:
    """The names of ``root``'s class sub-folders (hidden ones left out), sorted."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _read_class_folders(root: Path, classes: list[str] | None, size: int, mode: str,
                        upsampled: list | None = None):
    found = classes is None  # the classes are this folder's own (not a test split's, named by train)
    if found:
        classes = _class_folders(root)
    if not classes:
        raise CnnlabError(f"{root} has no class sub-folders; put each class's images in "
                          f"{root}/<class name>/")
    xs, ys, paths, empty = [], [], [], []
    for label, c in enumerate(classes):
        files = _image_files(root / c) if (root / c).is_dir() else []
        xs += [read_image(f, size, mode, upsampled=upsampled) for f in files]
        ys += [label] * len(files)
        paths += files
        empty += [c] if not files else []
    if not xs:
        raise CnnlabError(f"{root} holds no images (PNG/JPEG/...) in its class sub-folders")
    if found and empty:  # a class with no image cannot be learnt, and would count as one
        raise CnnlabError(f"{root}: the class folder{'s' if len(empty) > 1 else ''} "
                          f"{', '.join(empty)} hold{'' if len(empty) > 1 else 's'} no images; add "
                          f"some, or remove the folder")
    return np.stack(xs), np.array(ys), classes, paths


def _read_groups(root: Path) -> dict[str, str] | None:
    """groups.csv beside the class folders: ``file,group`` rows, files relative to ``root``."""
    import csv

    path = root / "groups.csv"
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CnnlabError(f"{path} is not a readable CSV ({e}); write a header file,group and one "
                          f"row per image") from None
    if not rows or not {"file", "group"} <= set(rows[0]):
        raise CnnlabError(f"{path} needs a header file,group and one row per image")
    return {Path(r["file"]).as_posix(): r["group"] for r in rows}


def _attach_groups(ds: ImageDataset, paths: list[Path], root: Path, groups: dict[str, str],
                   names: list[str]) -> ImageDataset:
    keys = [p.relative_to(root).as_posix() for p in paths]
    missing = [k for k in keys if k not in groups]
    if missing:
        raise CnnlabError(f"{root / 'groups.csv'} has no row for {missing[0]} (and {len(missing) - 1} "
                          f"more); give every image a group")
    g = torch.tensor([names.index(groups[k]) for k in keys])
    return ImageDataset(ds.x, ds.y, ds.classes, ds.name, ds.flip_ok, {"groups": g}, names)


GREY_MODES = ("L", "1", "I;16", "I", "LA")


def _guess_mode(root: Path) -> tuple[str, int]:
    """("L", 0) when every image is greyscale, else ("RGB", how many greyscale images will be
    converted to RGB): one colour image makes the dataset colour, and the conversion is said
    in the data card, never done silently. Only headers are read."""
    files = _image_files(root)
    if not files:
        raise CnnlabError(f"{root} holds no images (PNG/JPEG/...); put each class's images in "
                          f"{root}/<class name>/")
    grey = 0
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    grey += im.mode in GREY_MODES
        except Image.DecompressionBombError:
            read_image(path, None, "L")  # raises the one-line "too many pixels" error
            raise
        except (UnidentifiedImageError, OSError):
            raise CnnlabError(f"{path} is not a readable image; remove or replace it") from None
    return ("L", 0) if grey == len(files) else ("RGB", grey)


def load_folder_splits(path: str, image_size: int = 0) -> DatasetSplits:
    """Class sub-folders of images, like torchvision's ImageFolder, read into memory.

    If ``path`` holds ``train/`` and ``test/`` (or ``val/``) folders, those are the splits;
    otherwise the whole folder is the training split. Images are resized to ``image_size``
    (default 32) and converted to RGB, or kept greyscale when every image is (the data card
    says how many greyscale images a colour dataset converted).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CnnlabError(f"folder {root} not found; give folder:PATH with one sub-folder per class")
    size = image_size or 32
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    train_dir = root / "train" if (root / "train").is_dir() and test_dir else root
    mode, converted = _guess_mode(train_dir)
    small: list[tuple[int, int]] = []  # training images enlarged to size x size
    x, y, classes, paths = _read_class_folders(train_dir, None, size, mode, small)
    name = f"folder:{root}"
    train = from_numpy(x, y, classes, name)
    test = test_paths = None
    if test_dir is not None:
        if extra := sorted(set(_class_folders(test_dir)) - set(classes)):
            raise CnnlabError(f"{test_dir} has classes that {train_dir} lacks ({', '.join(extra)}): "
                              f"give them training images too, or move them out of {test_dir.name}/")
        xt, yt, _, test_paths = _read_class_folders(test_dir, classes, size, mode)
        test = from_numpy(xt, yt, classes, name)
    groups = _read_groups(root)
    if groups is not None:
        names = sorted(set(groups.values()))
        train = _attach_groups(train, paths, root, groups, names)
        test = test if test is None else _attach_groups(test, test_paths, root, groups, names)
        empty = [n for i, n in enumerate(names) if not (train.groups == i).any()]
        if empty:
            raise CnnlabError(f"{root / 'groups.csv'}: group {empty[0]!r} has no training images; "
                              f"give it some or leave it out")
    converted_words = f", {converted} greyscale images converted to RGB" if converted else ""
    if small:  # the model sees blur it cannot learn from: say so, with the smallest
        w, h = min(small, key=lambda s: s[0] * s[1])
        converted_words += (f"; {len(small)} of {len(x)} training images smaller than {size}x{size}, "
                            f"enlarged (the smallest {w}x{h}): give --image-size {max(8, min(w, h))} "
                            "or larger photos")
    return DatasetSplits(train, test, f"image folder {root} (resized to {size}x{size}, {mode}"
                         f"{converted_words})"
                         + (", groups from groups.csv" if groups is not None else ""))


def load_npz_splits(path: str) -> DatasetSplits:
    """Arrays ``x`` (uint8, N x H x W x C or N x H x W) and ``y``; optional ``classes``,
    ``x_test`` and ``y_test``. Loaded with ``allow_pickle=False``: no code runs."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CnnlabError(f"npz file {p} not found; give npz:PATH to a file with arrays x and y")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - whatever breaks inside a user's file, it is unreadable
        raise CnnlabError(f"{p} is not a readable .npz file ({e.__class__.__name__}); "
                          f"save it with numpy.savez(path, x=images, y=labels)") from None
    if "x" not in arrays or "y" not in arrays:
        raise CnnlabError(f"{p} must hold arrays named x and y, found {sorted(arrays)}")
    name = f"npz:{p}"
    y = _labels(arrays["y"], p, "y")
    if ("x_test" in arrays) != ("y_test" in arrays):
        given, missing = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise CnnlabError(f"{p} holds {given} but no {missing}; save both (a test split) or "
                          f"neither (a validation split is held out of x)")
    y_test = _labels(arrays["y_test"], p, "y_test") if "y_test" in arrays else None
    if len(arrays["x"]) == 0:
        raise CnnlabError(f"{p} holds no images (x is empty); save at least 2 labelled images")
    n = int(max(y.max(initial=0), -1 if y_test is None else y_test.max(initial=0))) + 1
    _check_labels_learnt(y, y_test, "classes" in arrays, p)
    classes = _class_names(arrays, n, p)
    train = from_numpy(arrays["x"], y, classes, name)
    test: ImageDataset | None = None
    if "x_test" in arrays and y_test is not None:
        test = from_numpy(arrays["x_test"], y_test, classes, name)
    if "groups" in arrays:
        train, test = _with_groups(arrays, train, test, p)
    return DatasetSplits(train, test, f"npz file {p}")


def _with_groups(arrays: dict, train: ImageDataset, test: ImageDataset | None, path: Path):
    """Attach the optional ``groups`` (and ``groups_test``, ``group_names``) arrays."""
    names = [str(c) for c in np.asarray(arrays.get("group_names", [])).ravel()]
    out = []
    for ds, key in ((train, "groups"), (test, "groups_test")):
        if ds is None:
            out.append(None)
            continue
        if key not in arrays:
            raise CnnlabError(f"{path} has groups but no {key} for its {len(ds)} "
                              f"{'test' if key.endswith('test') else 'training'} images; give both")
        g = np.asarray(arrays[key])
        if g.shape != (len(ds),) or g.dtype.kind not in "iu":
            raise CnnlabError(f"{path}: {key} must hold one whole number per image ({len(ds)}), "
                              f"got shape {g.shape} of {g.dtype}")
        out.append(ImageDataset(ds.x, ds.y, ds.classes, ds.name, ds.flip_ok,
                                {"groups": torch.from_numpy(g.astype(np.int64))}, list(names)))
    n_groups = max(len(d.group_names) for d in out if d is not None)
    for d in out:
        if d is not None and len(d.group_names) < n_groups:
            d.group_names = [f"group {i}" for i in range(n_groups)]
    empty = [n for i, n in enumerate(out[0].group_names) if not (out[0].groups == i).any()]
    if empty:
        raise CnnlabError(f"{path}: group {empty[0]!r} has no training images; drop it from "
                          f"group_names or give it images")
    return out[0], out[1]


def _labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Labels as int64 0..K-1: whole numbers only (2.5 is not a class), no negatives, and no
    more than MAX_CLASSES classes (a label of 10^9 would ask for 10^9 class names)."""
    y = np.asarray(y).ravel()
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.isfinite(y).all()):
        raise CnnlabError(f"{path}: {key} must hold whole-number class labels, got {y.dtype}")
    if y.dtype.kind == "f" and (y != np.round(y)).any():
        bad = y[y != np.round(y)][0]
        raise CnnlabError(f"{path}: {key} holds the label {bad}, which is not a whole number; "
                          f"labels must be class indices 0, 1, 2, ...")
    if len(y) and (y.min() < 0 or y.max() >= MAX_CLASSES):
        raise CnnlabError(f"{path}: {key} holds labels {y.min():g}..{y.max():g}; labels must be "
                          f"class indices 0..K-1 with K at most {MAX_CLASSES:,}")
    return y.astype(np.int64)


def _check_labels_learnt(y: np.ndarray, y_test: np.ndarray | None, named: bool, path: Path) -> None:
    """Every test label must be one the training images carry (a model cannot learn the others:
    it scored 0% without a word); without a ``classes`` array, the labels must count from 0
    without gaps (labels 5-7 made 8 classes, 5 of them empty)."""
    seen = set(np.unique(y).tolist())
    if not seen:  # no labels: the length check names it
        return
    if y_test is not None and (unseen := sorted(set(np.unique(y_test).tolist()) - seen)):
        raise CnnlabError(f"{path}: y_test holds the label{'s' if len(unseen) > 1 else ''} "
                          f"{', '.join(map(str, unseen[:10]))} that no training image has; number the "
                          f"classes of y and y_test the same way")
    missing = sorted(set(range(max(seen) + 1)) - seen)
    if missing and not named:
        raise CnnlabError(f"{path}: no training image has the label{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(map(str, missing[:10]))}; number the classes from 0 without "
                          f"gaps, or add a classes array that names every class")


def _class_names(arrays: dict, n: int, path: Path) -> list[str]:
    if "classes" not in arrays:
        return [str(i) for i in range(n)]
    names = [str(c) for c in np.asarray(arrays["classes"]).ravel()]
    if len(names) < n:
        raise CnnlabError(f"{path}: classes names {len(names)} classes but the labels go up to "
                          f"{n - 1}; give one name per class")
    return names
