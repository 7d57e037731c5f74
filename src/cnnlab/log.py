"""Log lines: every long job takes a ``log`` callable, ``print`` by default.

A leaf module: anything may import it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Log = Callable[[str], None]

_bars = {"shown": True}


def bars_shown() -> bool:
    """Whether progress bars may draw: on a terminal, and not in the second lane of ``cnnlab
    run`` (two bars on one terminal line garble each other)."""
    return _bars["shown"] and sys.stderr.isatty()


def hide_bars() -> None:
    """No progress bars in this process from now on."""
    _bars["shown"] = False


def prefixed(prefix: str) -> Log:
    """A log that prints each line after ``prefix`` (flushed at once: another process may be
    printing to the same terminal)."""

    def inner(line: str) -> None:
        print(f"{prefix}{line}", flush=True)

    return inner


def silent(line: str) -> None:
    """A log that drops every line."""


def last_epoch_only(log: Log, prefix: str) -> Log:
    """A log for sub-runs: only the final epoch's line, prefixed with the sub-run's name."""

    def inner(line: str) -> None:
        if line.startswith("epoch"):
            done, total = line.split()[1].split("/")
            if done == total:
                log(f"  [{prefix}] {line}")

    return inner
