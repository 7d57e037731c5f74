"""Data-parallel training past one process with PyTorch DDP (launched by ``torchrun``).

Every rank draws the same global batch and the same augmentation (one seeded generator), then
trains on its own slice of it; DDP averages the gradients. So N processes take the same
steps as one process on the global batch, up to floating-point reduction order (BatchNorm
statistics are computed per rank, as in standard DDP). Rank 0 alone writes the run folder.
Backends: gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


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
