"""Log lines: every long job takes a ``log`` callable, ``print`` by default.

A leaf module: anything may import it.
"""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


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
