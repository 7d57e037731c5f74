"""``cnnlab run``: the lecture on one dataset, in one run folder.

It trains the locality-blind baseline (an MLP) and a CNN (LeNet-5) with the same data and
budget, evaluates both, and writes the CNN's run folder with the comparison in its report;
the MLP's own run folder sits inside it, in baselines/mlp.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.io import atomic_write_json
from cnnlab.run import Run, train
from cnnlab.train.trainer import Log


def recipe(dataset: str, epochs: int = 0, seed: int = 0, data_dir: str = "~/.cache/cnnlab",
           limit_train: int = 0) -> TrainConfig:
    """A sensible small-budget recipe for any dataset (the models then differ only in name)."""
    small = dataset in ("digits",)
    return TrainConfig(
        dataset=dataset, model="lenet5", data_dir=data_dir, seed=seed, limit_train=limit_train,
        epochs=epochs or (40 if small else 10), batch_size=64 if small else 128,
        optimizer="sgd", lr=0.05, weight_decay=5e-4, warmup_epochs=1, schedule="cosine",
        label_smoothing=0.0, crop_padding=1 if small else 2, flip=True,
    )


def run_lecture(dataset: str = "digits", epochs: int = 0, seed: int = 0, name: str = "",
                out_dir: str = "runs", data_dir: str = "~/.cache/cnnlab", limit_train: int = 0,
                log: Log = print, progress: bool = True) -> Run:
    """Train an MLP and LeNet-5 on ``dataset`` and write one run folder with its report."""
    base = recipe(dataset, epochs, seed, data_dir, limit_train)
    name = name or f"run-{dataset.split(':', 1)[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(out_dir) / name
    log("== MLP (baseline: one weight per pixel per hidden unit) ==")
    mlp = train(replace(base, model="mlp", name="mlp", out_dir=str(run_dir / "baselines")),
                log=log, progress=progress, report=True)
    log("== LeNet-5 (convolutions: shared 5x5 windows) ==")
    cnn = train(replace(base, model="lenet5", name=name, out_dir=out_dir), log=log,
                progress=progress, report=False)
    keys = ("model", "params", "first_layer_params", "macs", "accuracy", "train_time_s")
    rows = [{k: r.metrics[k] for k in keys} | {"run": str(r.path)} for r in (mlp, cnn)]
    atomic_write_json(run_dir / "compare.json", {"dataset": dataset, "models": rows})
    from cnnlab.report import render_report

    report = render_report(cnn)
    for r in rows:
        log(f"{r['model']:>8}: accuracy {100 * r['accuracy']:.2f}%  params {r['params']:,}  "
            f"first layer {r['first_layer_params']:,}  MACs {r['macs']:,}")
    log(f"report: {report}")
    return cnn
