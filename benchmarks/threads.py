"""One torch thread or two? Training-step speed of the course's models with each, on this machine.

    python benchmarks/threads.py             # quiet machine: the speed-up of a second thread
    python benchmarks/threads.py --busy      # beside one busy process (a second Python loop)

On a 2-core machine a second torch thread helps a quiet machine a little and hurts a busy
one a lot: torch's threads wait for each other at every operation, so one thread delayed by
another process delays both. This script measures both sides for each model at the batch size
cnnlab trains it with; the CLI's default thread count follows from it (README).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch
import torch.nn.functional as F
from common import append_result, machine

from cnnlab.models import create_model

MODELS = [("lenet5", {}, 1, 8, 64), ("mlp", {}, 1, 8, 64), ("resnet20", {}, 3, 32, 128),
          ("fastnet", {"widths": [32, 64, 128]}, 3, 32, 256)]


def step_time(name: str, kwargs: dict, channels: int, size: int, batch: int, threads: int) -> float:
    """Mean seconds per forward + backward + SGD step, after two warm-up steps."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, image_size=size, **kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(batch, channels, size, size), torch.randint(0, 10, (batch,))
    times = []
    for k in range(12):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if k >= 2:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--busy", action="store_true", help="run beside one busy process")
    a = p.parse_args()
    stop = mp.Event()
    busy = mp.Process(target=spin, args=(stop,)) if a.busy else None
    if busy:
        busy.start()
    rows = []
    try:
        for name, kwargs, c, s, b in MODELS:
            one, two = (step_time(name, kwargs, c, s, b, t) for t in (1, 2))
            rows.append(f"{name} ({c}x{s}x{s}, batch {b}): 1 thread {1000 * one:.1f} ms, 2 threads "
                        f"{1000 * two:.1f} ms per step: 2 threads {one / two:.2f}x the speed")
            print(rows[-1], flush=True)
    finally:
        stop.set()
        if busy:
            busy.join()
    append_result(f"Threads ({'beside one busy process' if a.busy else 'quiet'})", "; ".join(rows),
                  "python benchmarks/threads.py" + (" --busy" if a.busy else ""), machine())


if __name__ == "__main__":
    main()
