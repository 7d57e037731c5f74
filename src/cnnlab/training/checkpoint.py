"""Checkpoints as safetensors + JSON: no pickle is ever loaded.

``weights/last.safetensors`` holds everything needed to resume, in one file written atomically:
model tensors under ``model.``, the EMA model under ``ema.``, optimizer tensors under
``optim.``, and the rest (epoch, history, optimizer hyper-parameters) as JSON in the file's
metadata. ``weights/best.safetensors`` holds model tensors only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_write


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().clone()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    tensors = {k: _plain(v) for k, v in tensors.items()}
    metadata = {"cnnlab": json.dumps(meta or {})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"weights file {path} not found; train a run first (cnnlab train)")
    try:
        tensors = load_file(path)
        with safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("cnnlab", "{}"))
    except (SafetensorError, OSError, ValueError) as e:
        raise CnnlabError(f"{path} is not a readable safetensors file ({e}); "
                          f"retrain or restore it") from None
    return tensors, meta


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors and a JSON-ready rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           rest: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for key, v in rest["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
    # Each state tensor the shape of its parameter takes the parameter's memory layout, as the
    # optimizer made it (zeros_like): the file holds them contiguous, a channels_last model's
    # filters are not, and a fused step walks both in memory order, pairing wrong elements.
    # (MuonSGD keeps its state in two inner optimizers, neither fused: it has no ``state``.)
    for param, slots in getattr(opt, "state", {}).items():
        for name, v in slots.items():
            if torch.is_tensor(v) and v.shape == param.shape and v.stride() != param.stride():
                slots[name] = torch.empty_like(param, dtype=v.dtype).copy_(v)


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def strip_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def model_tensors(run_dir: str | Path, which: str = "last", ema: bool = False) -> dict[str, torch.Tensor]:
    """The model's tensors in a run folder's ``weights/WHICH.safetensors``; from the resumable
    checkpoint (``last``), the model's (the EMA's when the run kept one), not the optimizer's."""
    tensors, _ = load_tensors(Path(run_dir) / "weights" / f"{which}.safetensors")
    if which == "last":
        return strip_prefix("ema.module." if ema else "model.", tensors)
    return tensors
