"""Shared helpers for benchmark scripts: the machine's description and RESULTS.md rows."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from cnnlab.env import cpu_model

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    else:
        dev = f"{cpu_model()}, {os.cpu_count()} cores, CPU only"
    return f"{dev}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def append_result(what: str, result: str, command: str, machine_desc: str) -> None:
    """Append one row to the table at the end of RESULTS.md."""
    row = f"| {time.strftime('%Y-%m-%d')} | {what} | {result} | `{command}` | {machine_desc} |\n"
    with open(RESULTS, "a") as f:
        f.write(row)
