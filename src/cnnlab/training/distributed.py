"""Data-parallel training past one process with PyTorch DDP (launched by ``torchrun``).

Every rank draws the same global batch and the same augmentation (one seeded generator), then
trains on its own slice of it; DDP averages the gradients. So N processes take the same
steps as one process on the global batch, up to floating-point reduction order (BatchNorm
statistics are computed per rank, as in standard DDP, unless ``sync_bn`` on CUDA). Rank 0
alone writes the run folder. Backends: gloo on CPU, NCCL on CUDA.

A step that only rank 0 takes (checking and creating the run folder) runs through ``on_main``:
its error reaches every rank, so no rank waits forever at a barrier that rank 0 never reaches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from cnnlab.errors import CnnlabError

T = TypeVar("T")


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside distributed training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env() -> None:
    """Join the process group that torchrun describes in the environment, if any."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def shard(idx: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices."""
    rank, size = world()
    if size == 1:
        return idx
    per = len(idx) // size
    return idx[rank * per: (rank + 1) * per]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all ranks (``t`` itself in a single process)."""
    if world()[1] > 1:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def on_main(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only; if it raises, every rank raises the same error.

    Rank 0's outcome (ok, or the error's message) is broadcast to all ranks, so a failure
    there ends the whole job with its message instead of leaving the others at a barrier."""
    rank, size = world()
    result, error = None, None
    if rank == 0:
        try:
            result = fn()
        except CnnlabError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - any failure must reach the other ranks
            error = f"rank 0 failed: {e.__class__.__name__}: {e}"
            if size == 1:
                raise
    if size > 1:
        error = _broadcast_text(error)
    if error is not None:
        raise CnnlabError(error)
    return result


def _broadcast_text(text: str | None, most: int = 4096) -> str | None:
    """Rank 0's text (or None) on every rank, sent as bytes in a tensor (no pickle)."""
    buf = torch.zeros(most + 1, dtype=torch.uint8)
    if text is not None:
        raw = text.encode()[:most]
        buf[0] = 1
        buf[1: 1 + len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    if dist.get_backend() == "nccl":  # NCCL moves CUDA tensors only
        buf = buf.cuda()
    dist.broadcast(buf, src=0)
    buf = buf.cpu()
    if not buf[0]:
        return None
    return bytes(buf[1:].tolist()).rstrip(b"\0").decode(errors="replace")
