"""Seconds to explain one CIFAR-sized image with every attribution method (ResNet-20).

    python benchmarks/explain_speed.py [--run RUN]      # a trained run, or random weights

Times each method (Captum) on one 3x32x32 image for the predicted class, after one warm-up,
median of 5, and their sum; appends a row to RESULTS.md. The time does not depend on whether
the weights are trained.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import append_result, machine

import cnnlab
from cnnlab.explain.attributions import METHODS, attribute


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    model = cnnlab.load_run(a.run).load_model() if a.run else cnnlab.create_model("resnet20").eval()
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        target = model(x).argmax(1)
    times = {}
    for method in METHODS:
        attribute(model, x, target, method)  # warm-up
        runs = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            attribute(model, x, target, method)
            runs.append(time.perf_counter() - t0)
        times[method] = statistics.median(runs)
    line = ("resnet20, one 3x32x32 image: " + ", ".join(f"{m} {t:.3f} s" for m, t in times.items())
            + f"; all five {sum(times.values()):.2f} s")
    print(line)
    append_result("explaining one image", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
