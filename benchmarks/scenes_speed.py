"""Generation speed of the procedural `scenes` (images per second, one process).

    python benchmarks/scenes_speed.py

Appends one row per image size to RESULTS.md.
"""

from __future__ import annotations

import sys
import time

from common import append_result, machine

from cnnlab.data.scenes import make_scenes


def main() -> None:
    for size, n in ((64, 1000), (128, 300)):
        t0 = time.perf_counter()
        scenes = make_scenes(n, size, seed=0)
        seconds = time.perf_counter() - t0
        objects = sum(len(t["boxes"]) for t in scenes.targets)
        line = (f"{size}x{size}: {n / seconds:,.0f} images/s ({n} images, {objects / n:.2f} objects "
                f"per image, boxes, masks, class map and keypoints)")
        print(line)
        append_result("scenes generation", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
