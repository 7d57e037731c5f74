"""Where a training step spends its time on the CPU: torch.profiler over a few steps.

    python benchmarks/profile_step.py configs/cifar10_fast.yaml --batch 256

Prints the top operators by self CPU time, for channels_last on and off, and the achieved
GFLOP/s of the whole step (FLOPs counted by torch.utils.flop_counter).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import cnnlab


def step_fn(model, opt, x, y):
    def step():
        loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("recipe")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    cfg = cnnlab.TrainConfig.load(a.recipe)
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = cnnlab.create_model(cfg.model, **cfg.model_kwargs)
        x, y = torch.rand(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.1,
                              momentum=0.9, nesterov=True)
        step = step_fn(model, opt, x, y)
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        step()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        dt = (time.perf_counter() - t0) / a.steps
        print(f"\n== {cfg.model} {cfg.model_kwargs}, batch {a.batch}, channels_last={channels_last}: "
              f"{dt * 1000:.0f} ms/step, {a.batch / dt:.0f} img/s, "
              f"{counter.get_total_flops() / dt / 1e9:.0f} GFLOP/s ==")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(2):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
