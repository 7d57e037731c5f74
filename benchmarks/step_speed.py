"""Training-step speed on this machine: fp32 vs bf16 autocast, eager vs torch.compile, batch size.

    python benchmarks/step_speed.py configs/cifar10_fast.yaml --batches 256 512
    python benchmarks/step_speed.py configs/cifar10_fast93.yaml --precisions fp32 bf16 --no-compile

For each batch size and precision, times forward + backward + SGD step of the recipe's model
on random CIFAR-shaped data (channels_last), first eagerly, then with ``torch.compile(model)``
(Inductor, which on a CPU generates C++ and fuses elementwise ops such as BN + GELU). bf16 is
``torch.autocast(device, bfloat16)`` around the forward pass, the weights and the optimizer
staying fp32, as the trainer does. Prints ms/step, images/s and the one-off compile time,
and appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from common import append_result, machine

import cnnlab


def time_steps(model, batch: int, steps: int, bf16: bool = False) -> tuple[float, float]:
    """(seconds for the first two steps, mean seconds per later step)."""
    x = torch.rand(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                          momentum=0.9, nesterov=True)

    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    step()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return warm, (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("recipe")
    p.add_argument("--batches", type=int, nargs="+", default=[256])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--no-compile", action="store_true", help="eager only")
    a = p.parse_args()
    cfg = cnnlab.TrainConfig.load(a.recipe)
    parts = []
    for batch in a.batches:
        for precision in a.precisions:
            for compiled in (False,) if a.no_compile else (False, True):
                torch.manual_seed(0)
                model = cnnlab.create_model(cfg.model, **cfg.model_kwargs)
                model = model.to(memory_format=torch.channels_last).train()
                run = torch.compile(model) if compiled else model
                warm, dt = time_steps(run, batch, a.steps, bf16=precision == "bf16")
                name = f"{precision} {'compiled' if compiled else 'eager'}"
                line = (f"batch {batch}, {name}: {dt * 1000:.0f} ms/step, {batch / dt:,.0f} img/s"
                        + (f" (first two steps {warm:.0f} s)" if compiled else ""))
                print(line, flush=True)
                parts.append(line)
    append_result(f"training step speed, {cfg.model} {cfg.model_kwargs}", "; ".join(parts),
                  "python benchmarks/" + " ".join(sys.argv[0].split("/")[-1:] + sys.argv[1:]), machine())


if __name__ == "__main__":
    main()
