"""Carry the benchmark CIFAR-10 copy to a machine that only takes 64 MiB per transfer.

    python benchmarks/device_data.py pack ../shared/data/cifar10/train.npz .devdata   # here
    python benchmarks/device_data.py unpack .devdata /tmp/cifar10.npz [--partial]     # there

The 50,000 images become ten lossless WebP mosaics (5,000 images each, about 45% of the raw
bytes); unpack rebuilds the same arrays (checked against the SHA-256 of x stored in the pack),
so results there are on exactly the pixels used here. Two transfers of five files each fit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROWS, COLS = 50, 100  # images per mosaic: 5,000


def pack(src: str, dst: str) -> None:
    d = np.load(src)
    x, y = d["x"], d["y"]
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    per = ROWS * COLS
    for i in range(0, len(x), per):
        m = x[i:i + per].reshape(ROWS, COLS, 32, 32, 3).transpose(0, 2, 1, 3, 4)
        m = m.reshape(ROWS * 32, COLS * 32, 3)
        Image.fromarray(m).save(out / f"x{i // per:02d}.webp", lossless=True, quality=100, method=6)
        print(f"packed {i + per} images", flush=True)
    np.save(out / "y.npy", y)
    meta = {"n": len(x), "classes": [str(c) for c in d["classes"]],
            "sha256_x": hashlib.sha256(x.tobytes()).hexdigest()}
    (out / "meta.json").write_text(json.dumps(meta))


def unpack(src: str, dst: str) -> None:
    folder = Path(src)
    meta = json.loads((folder / "meta.json").read_text())
    parts = []
    for f in sorted(folder.glob("x*.webp")):
        m = np.asarray(Image.open(f).convert("RGB"))
        parts.append(m.reshape(ROWS, 32, COLS, 32, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 32, 32, 3))
    x = np.concatenate(parts)
    partial = "--partial" in sys.argv  # a smoke test on the parts that have arrived
    if not partial and (len(x) != meta["n"] or hashlib.sha256(x.tobytes()).hexdigest() != meta["sha256_x"]):
        sys.exit(f"unpacked {len(x)} images that do not match the pack ({meta['n']}): copy all parts")
    y = np.load(folder / "y.npy")[: len(x)]
    np.savez(dst, x=x, y=y, classes=np.array(meta["classes"]))
    print(f"unpacked {len(x)} images into {dst}")


if __name__ == "__main__":
    {"pack": pack, "unpack": unpack}[sys.argv[1]](*sys.argv[2:4])
