"""Facts about the machine and the code, saved with every run."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's name, with its family and model numbers where a virtual machine names it only
    "AMD EPYC" (family 25 is Zen 3 and 4, family 26 Zen 5: twice the bf16 rate per core)."""
    try:
        name = cpu_name(Path("/proc/cpuinfo").read_text())
    except OSError:
        name = ""
    return name or platform.processor() or platform.machine()


def cpu_name(cpuinfo: str) -> str:
    """``cpu_model`` from the text of /proc/cpuinfo ("" without a model name)."""
    info = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())  # the first processor's
    name = info.get("model name", "")
    if name and not any(c.isdigit() for c in name) and "cpu family" in info and "model" in info:
        return f"{name} (family {info['cpu family']} model {info['model']})"
    return name


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def source_checkout(root: Path | None = None) -> Path | None:
    """The cnnlab git checkout this package runs from (an editable install), else None.

    Only a folder that is cnnlab's own source tree counts: ``src/cnnlab`` inside a folder with
    a ``.git`` and a ``pyproject.toml`` naming cnnlab. An installed copy inside someone
    else's repository is not a checkout, and their repository is never asked."""
    root = root or Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not ((root / ".git").exists() and pyproject.is_file()):
        return None
    return root if 'name = "cnnlab"' in pyproject.read_text() else None


@cache
def code_version() -> str:
    """cnnlab's version from the package metadata, plus the git commit (and '-dirty') when it
    runs from its own checkout. git runs with --no-optional-locks: it never takes the index
    lock or rewrites the index."""
    try:
        version = metadata.version("cnnlab")
    except metadata.PackageNotFoundError:
        import cnnlab

        version = cnnlab.__version__
    root = source_checkout()
    if root is None:
        return version
    try:
        out = subprocess.run(["git", "--no-optional-locks", "describe", "--always", "--dirty",
                              "--abbrev=10"], cwd=root, capture_output=True, text=True, timeout=5)
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
        "cpu_bf16": "amx_bf16" if "amx_bf16" in cpu_flags() else
                    "avx512_bf16" if "avx512_bf16" in cpu_flags() else None,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": gpu,
    }


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run a block with ``n`` torch CPU threads (0: leave the count as it is); yields the count
    in effect and restores the previous one afterwards."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
