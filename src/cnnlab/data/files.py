"""The user's own data: ``folder:PATH`` (one sub-folder per class) and ``npz:PATH``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.data.base import DatasetSplits, ImageDataset, from_numpy
from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 4096 * 4096


def read_image(path: Path, size: int | None, mode: str) -> np.ndarray:
    """One image file as uint8 (H, W, C) in ``mode`` (L or RGB), resized to size x size."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise CnnlabError(f"{path} has {im.width}x{im.height} pixels, more than the "
                                  f"{MAX_PIXELS:,} allowed; shrink it first")
            im = im.convert(mode)
            if size and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CnnlabError(f"{path} is not a readable image ({e.__class__.__name__}); "
                          f"remove it or replace it with a PNG or JPEG") from None
    return a[:, :, None] if a.ndim == 2 else a


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_class_folders(root: Path, classes: list[str] | None, size: int, mode: str):
    if classes is None:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise CnnlabError(f"{root} has no class sub-folders; put each class's images in "
                          f"{root}/<class name>/")
    xs, ys = [], []
    for label, c in enumerate(classes):
        files = _image_files(root / c) if (root / c).is_dir() else []
        xs += [read_image(f, size, mode) for f in files]
        ys += [label] * len(files)
    if not xs:
        raise CnnlabError(f"{root} holds no images (PNG/JPEG/...) in its class sub-folders")
    return np.stack(xs), np.array(ys), classes


def _guess_mode(root: Path) -> str:
    first = _image_files(root)[:1]
    if not first:
        raise CnnlabError(f"{root} holds no images (PNG/JPEG/...); put each class's images in "
                          f"{root}/<class name>/")
    try:
        with Image.open(first[0]) as im:
            return "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
    except (UnidentifiedImageError, OSError):
        raise CnnlabError(f"{first[0]} is not a readable image; remove or replace it") from None


def load_folder_splits(path: str, image_size: int = 0) -> DatasetSplits:
    """Class sub-folders of images, like torchvision's ImageFolder, read into memory.

    If ``path`` holds ``train/`` and ``test/`` (or ``val/``) folders, those are the splits;
    otherwise the whole folder is the training split. Images are resized to ``image_size``
    (default 32) and converted to RGB, or to grayscale when the first image is grayscale.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CnnlabError(f"folder {root} not found; give folder:PATH with one sub-folder per class")
    size = image_size or 32
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    train_dir = root / "train" if (root / "train").is_dir() and test_dir else root
    mode = _guess_mode(train_dir)
    x, y, classes = _read_class_folders(train_dir, None, size, mode)
    name = f"folder:{root}"
    train = from_numpy(x, y, classes, name)
    test = None
    if test_dir is not None:
        xt, yt, _ = _read_class_folders(test_dir, classes, size, mode)
        test = from_numpy(xt, yt, classes, name)
    return DatasetSplits(train, test, f"image folder {root} (resized to {size}x{size}, {mode})")


def load_npz_splits(path: str) -> DatasetSplits:
    """Arrays ``x`` (uint8, N x H x W x C or N x H x W) and ``y``; optional ``classes``,
    ``x_test`` and ``y_test``. Loaded with ``allow_pickle=False``: no code runs."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CnnlabError(f"npz file {p} not found; give npz:PATH to a file with arrays x and y")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise CnnlabError(f"{p} is not a readable .npz file ({e.__class__.__name__}); "
                          f"save it with numpy.savez(path, x=images, y=labels)") from None
    if "x" not in arrays or "y" not in arrays:
        raise CnnlabError(f"{p} must hold arrays named x and y, found {sorted(arrays)}")
    y = arrays["y"].astype(np.int64).ravel()
    n = int(max(y.max(initial=0), arrays.get("y_test", np.zeros(1, np.int64)).max(initial=0))) + 1
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else [str(i) for i in range(n)]
    name = f"npz:{p}"
    train = from_numpy(arrays["x"], y, classes, name)
    test: ImageDataset | None = None
    if "x_test" in arrays and "y_test" in arrays:
        test = from_numpy(arrays["x_test"], arrays["y_test"].astype(np.int64).ravel(), classes, name)
    return DatasetSplits(train, test, f"npz file {p}")
