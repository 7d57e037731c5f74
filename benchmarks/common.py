"""Shared helpers for benchmark scripts: the machine's description and RESULTS.md rows.

Timings are only worth recording on a quiet machine, so every row carries the 1-minute load
average when the script started and when it wrote the row.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from cnnlab.env import cpu_model

RESULTS = Path(__file__).with_name("RESULTS.md")
LOAD_AT_START = os.getloadavg()[0]


def machine() -> str:
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    else:
        dev = f"{cpu_model()}, {os.cpu_count()} cores, CPU only"
    return (f"{dev}; torch {torch.__version__}, {torch.get_num_threads()} threads; load "
            f"{LOAD_AT_START:.2f} before, {os.getloadavg()[0]:.2f} after")


def append_result(what: str, result: str, command: str, machine_desc: str) -> None:
    """Append one row to the table at the end of RESULTS.md. A "|" inside a cell (a shell pipe,
    a separator in a result) is escaped, so it cannot end the cell."""
    cells = [time.strftime("%Y-%m-%d"), what, result, f"`{command}`", machine_desc]
    row = "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n"
    with open(RESULTS, "a") as f:
        f.write(row)
