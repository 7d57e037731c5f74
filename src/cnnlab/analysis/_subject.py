"""The model an analysis looks at: the run's own, or one trained with the run's recipe on other
data, for analyses whose claim the run's data cannot show (8x8 digits are too small for
locality or for readable attribution maps)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.config import FROM_SCRATCH, TrainConfig, scratch_optimizer

if TYPE_CHECKING:
    from cnnlab.run import Run


def other_config(run: Run, dataset: str = "", image_size: int = 0, limit_train: int = 0,
                 epochs: int = 0, recipe: dict | None = None) -> TrainConfig:
    """The run's config with ``recipe`` applied and, if given, another dataset (its own test
    split, or its 10% hold-out), another training-set size and another number of epochs."""
    # the main CNN's start and class balancing are its own; the analysis sets its own groups
    cfg = run.config.to_dict() | FROM_SCRATCH | {"balance": ""} | (recipe or {})
    if dataset and dataset != cfg["dataset"]:
        cfg |= {"dataset": dataset, "image_size": image_size, "val_split": 0.0, "limit_train": 0}
    cfg["limit_train"] = limit_train or cfg["limit_train"]
    cfg["epochs"] = epochs or cfg["epochs"]
    cfg["checkpoints"] = 0  # a sub-run keeps only what its analysis reads
    return scratch_optimizer(TrainConfig.from_dict(cfg), run.config.model, recipe or {})


def base_network(run: Run, dataset: str, image_size: int = 0, model: str = "",
                 model_kwargs: dict | None = None, epochs: int = 0, recipe: dict | None = None,
                 log=print) -> Run:
    """A network trained with the run's recipe on ``dataset`` (a sub-run, reused by every
    analysis that asks for the same one: the CNN tree grows from it, calibration scores it)."""
    base = {"model": model or run.config.model, "model_kwargs": model_kwargs or {}}
    return run.subrun(other_config(run, dataset, image_size, 0, epochs, (recipe or {}) | base),
                      "base", log)
