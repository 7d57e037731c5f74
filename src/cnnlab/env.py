"""Facts about the machine and the code, saved with every run."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

import cnnlab


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_version() -> str:
    """cnnlab's version, plus the git commit (and '-dirty') when run from a checkout."""
    version = cnnlab.__version__
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=10"], cwd=root,
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            version += f"+{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def environment(device: torch.device | str = "cpu") -> dict:
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cnnlab": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": gpu,
    }
