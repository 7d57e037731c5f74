"""A training step against the machine's limit: its FLOP/s beside the matrix-product rate
measured on this machine (a roofline figure, not a nominal peak).

    python benchmarks/roofline.py                          # fastnet half and full width, ResNet-20
    python benchmarks/roofline.py --precisions bf16 --models fastnet:64,256,256
    python benchmarks/roofline.py --device cuda            # on a GPU

The reference rate is the fastest large square ``torch.mm`` in the step's precision (2048 and
4096 sides, best of several). For each model, hooks record the shapes of every convolution and
linear layer in one forward pass; a convolution is a matrix product (im2col), (B*Ho*Wo) x
(Cin/groups*kh*kw) x Cout, and its forward, input gradient and weight gradient are three
products of those sides, whose FLOPs are the step's (the first layer's input gradient and a
frozen layer's weight gradient, never computed, are counted too: under 1% here). The same
products are also timed as plain ``torch.mm`` at exactly those sides: oneDNN's convolutions can
beat that rate on thin shapes, so it is shown, not used as the limit. The step itself (forward
under autocast as the trainer does, backward, SGD with Nesterov momentum; channels_last) is
timed beside them, and ``torch.profiler`` splits it into convolutions, normalisation,
activations, pooling, memory copies and the optimizer, so a step far below the reference rate
says where the rest of the time goes. Appends one row per model to RESULTS.md.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from common import append_result, machine
from torch import nn

import cnnlab

MODELS = {"fastnet:32,128,128": ("fastnet", {"widths": [32, 128, 128]}, 256),
          "fastnet:64,256,256": ("fastnet", {"widths": [64, 256, 256]}, 256),
          "resnet20": ("resnet20", {}, 128)}
"""name -> (model, kwargs, batch): the recipes' batches (configs/cifar10_fast*.yaml, resnet20)."""

MATMULS = {"mm", "addmm", "bmm", "mmbackward0", "addmmbackward0"}
COPIES = {"to", "_to_copy", "copy_", "contiguous", "clone", "cat", "fill_", "zero_", "empty_like"}
UPDATES = {"add", "add_", "mul", "mul_", "lerp_", "div_", "sqrt"}


def bucket(op: str) -> str:
    """Where a profiler op's time goes: its name (``aten::native_batch_norm``,
    ``autograd::engine::evaluate_function: ConvolutionBackward0``) read token by token."""
    tokens = [t for t in re.split(r"[:\s.#]+", op.lower()) if t]
    if any("convolution" in t or t in MATMULS for t in tokens):
        return "convolution"
    if any("batch_norm" in t or "batchnorm" in t for t in tokens):
        return "normalisation"
    if any("gelu" in t or "relu" in t or t in {"clamp_min", "threshold_backward"} for t in tokens):
        return "activation"
    if any("pool" in t or t in {"amax", "max", "amaxbackward0"} for t in tokens):
        return "pooling"
    if any(t in COPIES or t.startswith("tobackward") for t in tokens):
        return "copies and casts"
    if any("sgd" in t or t.startswith("_foreach") or t in UPDATES for t in tokens):
        return "optimizer and other element-wise"
    return "other"


def matmul_sides(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int, int]]:
    """(M, K, N) of every convolution's and linear layer's forward product, in one forward pass."""
    sides = []

    def conv_hook(m: nn.Conv2d, inp, out):
        b, _, ho, wo = out.shape
        sides.append((b * ho * wo, m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1],
                      m.out_channels))

    def linear_hook(m: nn.Linear, inp, out):
        sides.append((inp[0].numel() // m.in_features, m.in_features, m.out_features))

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return sides


def mm_seconds(m: int, k: int, n: int, dtype: torch.dtype, device: str, reps: int = 5,
               best: bool = False) -> float:
    """Median (or ``best``: least) seconds of one (m x k) @ (k x n) product on this machine."""
    a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
    times = []
    for i in range(reps + 2):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 2:  # two warm-up products
            times.append(time.perf_counter() - t)
    return min(times) if best else statistics.median(times)


def plain_mm_seconds(sides: list[tuple[int, int, int]], dtype: torch.dtype,
                     device: str) -> tuple[float, float]:
    """(seconds of the step's forward, input-gradient and weight-gradient products as plain
    ``torch.mm`` at their own sides, their FLOPs)."""
    seconds = flops = 0.0
    for m, k, n in sides:
        for shape in ((m, k, n), (m, n, k), (k, m, n)):  # y = x w; dx = dy w^T; dw = x^T dy
            seconds += mm_seconds(*shape, dtype, device)
            flops += 2 * m * k * n
    return seconds, flops


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int) -> float:
    """Median seconds of a training step, after two warm-up steps."""
    opt = _sgd(model)
    device = x.device.type
    times = []
    for i in range(steps + 2):
        _sync(device)
        t = time.perf_counter()
        _step(model, opt, x, y, bf16)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def where_time_goes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> dict[str, float]:
    """Share of the profiled self time of three steps, per bucket."""
    from torch.profiler import ProfilerActivity, profile

    opt = _sgd(model)
    cuda = x.device.type == "cuda"
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        for _ in range(3):
            _step(model, opt, x, y, bf16)
        _sync(x.device.type)
    share: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        t = ev.self_device_time_total if cuda else ev.self_cpu_time_total
        share[bucket(ev.key)] += t
    total = sum(share.values()) or 1.0
    return {k: v / total for k, v in sorted(share.items(), key=lambda kv: -kv[1])}


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                           nesterov=True)


def _step(model, opt, x, y, bf16: bool) -> None:
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_rate(dtype: torch.dtype, device: str) -> float:
    """FLOP/s of the best large square product measured here (2048 and 4096 sides)."""
    return max(2 * n ** 3 / mm_seconds(n, n, n, dtype, device, reps=6, best=True) for n in (2048, 4096))


def measure(name: str, precision: str, device: str, steps: int) -> str:
    model_name, kwargs, batch = MODELS[name]
    torch.manual_seed(0)
    model = cnnlab.create_model(model_name, **kwargs).to(device, memory_format=torch.channels_last).train()
    x = torch.rand(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    bf16 = precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    limit, flops = plain_mm_seconds(matmul_sides(model, x), dtype, device)
    peak = peak_rate(dtype, device)
    step = step_seconds(model, x, y, bf16, steps)
    shares = where_time_goes(model, x, y, bf16)
    words = ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items() if v >= 0.01)
    conv_rate = flops / (shares.get("convolution", 1.0) * step)
    g = 1e9
    return (f"{name} {precision}, batch {batch}: step {1e3 * step:.0f} ms ({batch / step:,.0f} img/s), "
            f"{flops / step / g:.0f} GFLOP/s = {100 * flops / step / peak:.0f}% of the {peak / g:.0f} "
            f"GFLOP/s of a large {precision} matrix product here; its convolutions alone "
            f"{conv_rate / g:.0f} GFLOP/s ({100 * conv_rate / peak:.0f}%); the same products as "
            f"plain matrix products at their own sides {flops / limit / g:.0f} GFLOP/s; the step's "
            f"time: {words}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name in a.models:
        parts = []
        for precision in a.precisions:
            line = measure(name, precision, a.device, a.steps)
            print(line, flush=True)
            parts.append(line)
        append_result(f"training step against the measured matrix-product rate, {name}",
                      "; ".join(parts), " ".join(["python benchmarks/roofline.py", *sys.argv[1:]]), machine())


if __name__ == "__main__":
    main()
