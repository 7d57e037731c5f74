"""Analyses as plug-ins: one module each in this package, registered in ``ANALYSES``.

A plug-in module declares one ``Analysis`` (see registry.py): a typed function
``compute(run, *, log, **options) -> dict``, its report section, its place in the report, its
CLI verb (built from the function's signature and docstring) and two budgets, ``quick`` for
``cnnlab run`` and ``full`` for ``cnnlab run --full``. Adding an analysis = adding a module
here (and its test); nothing else changes.

``load_all()`` imports every plug-in. Plug-ins import torch, numpy-heavy libraries and
matplotlib inside their functions, so that the CLI can read every verb's options and
``cnnlab --help`` stays fast; their algorithms live in the library packages (robustness,
explain, cnntree) and their I/O in the run folder (run.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from cnnlab.analysis.registry import ANALYSES, Analysis, compute_and_store, load_results
from cnnlab.log import Log

if TYPE_CHECKING:
    from cnnlab.run import Run


def load_all() -> list[Analysis]:
    """Import every plug-in module of this package; return the analyses in report order."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{__name__}.{info.name}")
    return sorted((ANALYSES.get(n) for n in ANALYSES.names()), key=lambda a: a.order)


def main_job_analyses(config) -> list[Analysis]:
    """The analyses ``cnnlab run`` runs on a run with this config, in report order."""
    return [a for a in load_all() if a.in_main_job and (a.applies is None or a.applies(config))]


def run_analysis(run: Run, name: str, log: Log = print, threads: int = 0, **options) -> dict:
    """Run the analysis ``name`` on a run with the given options (the rest at their
    defaults) and ``threads`` torch threads (0: as they are); store its result in the run
    folder and return it."""
    load_all()
    return compute_and_store(run, ANALYSES.get(name), log=log, threads=threads, **options)


__all__ = ["ANALYSES", "Analysis", "load_all", "load_results", "main_job_analyses", "run_analysis"]
