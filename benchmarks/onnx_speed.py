"""PyTorch eager against ONNX Runtime (fp32 and int8) on the CPU: images per second and accuracy.

    python benchmarks/onnx_speed.py [--run runs/NAME]

Without --run, trains a ResNet-20 on 2,000 32x32 shapes for 4 epochs first (fp32 weights).
Exports it (`cnnlab export --quantize int8`), then classifies the 1,000 evaluation images in
batches of 250 with each engine, 3 times, and keeps the fastest. Appends rows to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import torch
from common import append_result, machine

import cnnlab
from cnnlab.export import OnnxModel, _deployable, export_onnx


def images_per_s(fn, x: np.ndarray, batch: int = 250, repeats: int = 3) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = np.concatenate([fn(x[i: i + batch]) for i in range(0, len(x), batch)])
        best = min(best, time.perf_counter() - t0)
    return len(x) / best, out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", default="")
    a = p.parse_args()
    if a.run:
        run = cnnlab.load_run(a.run)
    else:
        run = cnnlab.train(cnnlab.TrainConfig(dataset="shapes", image_size=32, limit_train=2000,
                                              model="resnet20", epochs=4, out_dir=tempfile.mkdtemp(),
                                              name="r"), log=lambda s: None, report=False)
    res = export_onnx(run, quantize="int8")
    val = run.data().eval
    x, y = (val.x.float() / 255).numpy(), val.y.numpy()
    net = _deployable(run)

    def eager(b):
        with torch.inference_mode():
            return net(torch.from_numpy(b)).numpy()

    engines = {"PyTorch eager fp32": eager, "ONNX Runtime fp32": OnnxModel(res["path"]).probabilities,
               "ONNX Runtime int8": OnnxModel(res["int8"]["path"]).probabilities}
    for name, fn in engines.items():
        speed, probs = images_per_s(fn, x)
        line = (f"{name}: {speed:,.0f} images/s, accuracy {100 * (probs.argmax(1) == y).mean():.2f}% "
                f"on {len(y):,} images ({run.meta['model']}, {run.config.dataset}, file "
                f"{res['bytes'] / 1e6:.2f} MB fp32 / {res['int8']['bytes'] / 1e6:.2f} MB int8)")
        print(line)
        append_result("export: inference engines on CPU", line, " ".join(["python", *sys.argv]),
                      machine())


if __name__ == "__main__":
    main()
