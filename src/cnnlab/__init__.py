"""cnnlab: image recognition with convolutional networks, end to end.

Python API (the CLI is a thin layer over it)::

    import cnnlab
    run = cnnlab.train(cnnlab.TrainConfig(dataset="digits", model="lenet5", epochs=10))
    run.metrics["accuracy"]
    run = cnnlab.load_run("runs/digits-lenet5")
    probs = run.predict(images)           # uint8 (N, C, H, W) or float in [0, 1]
    report = run.evaluate("digits")
    cnnlab.run_analysis(run, "robustness", eps=4 / 255)

Names are imported on first use (PEP 562), so ``import cnnlab`` and ``cnnlab --help`` stay
fast: torch loads when the first model, dataset or run is touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_API = {
    "CnnlabError": "cnnlab.errors", "TrainConfig": "cnnlab.config",
    "list_datasets": "cnnlab.data", "load_dataset": "cnnlab.data",
    "create_model": "cnnlab.models", "list_models": "cnnlab.models", "model_stats": "cnnlab.models",
    "Run": "cnnlab.run", "load_run": "cnnlab.run", "train": "cnnlab.pipeline",
    "main_job": "cnnlab.pipeline", "run_analysis": "cnnlab.analysis",
    "render_report": "cnnlab.report",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
