"""``cnnlab run``: the whole lecture on one dataset, in one run folder and one report.

1. Train the main CNN (LeNet-5) with a small-budget recipe: the run folder itself.
2. MLP versus CNN: an MLP and a ResNet-20 with the same data and budget (baselines/).
3. The permutation test: MLP and LeNet-5 on original and pixel-permuted images, 3 seeds.
4. What convolutions see: filters, feature maps and receptive fields.
5. Confusion sets and the CNN tree grown from the main CNN.
6. Adversarial robustness: FGSM, PGD and APGD at 8/255, a robustness curve, corruptions.
"""

from __future__ import annotations

import time
from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.run import Run, train
from cnnlab.train.trainer import Log


def recipe(dataset: str, epochs: int = 0, seed: int = 0, data_dir: str = "~/.cache/cnnlab",
           limit_train: int = 0, model: str = "lenet5") -> TrainConfig:
    """A sensible small-budget recipe for any dataset (the models then differ only in name)."""
    small = dataset in ("digits",)
    return TrainConfig(
        dataset=dataset, model=model, data_dir=data_dir, seed=seed, limit_train=limit_train,
        epochs=epochs or (30 if small else 10), batch_size=64 if small else 128,
        optimizer="sgd", lr=0.05, weight_decay=5e-4, warmup_epochs=1, schedule="cosine",
        label_smoothing=0.0, crop_padding=1 if small else 2, flip=True,
    )


def main_run(dataset: str, epochs: int, seed: int, name: str, out_dir: str, data_dir: str,
             limit_train: int, log: Log, progress: bool, prefix: str = "run") -> Run:
    """Train the main CNN into a new run folder (or reuse a finished one of that name)."""
    name = name or f"{prefix}-{dataset.split(':', 1)[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = Path(out_dir) / name
    if (folder / "metrics.json").is_file():
        return Run(folder)
    cfg = recipe(dataset, epochs, seed, data_dir, limit_train)
    cfg.name, cfg.out_dir = name, out_dir
    return train(cfg, log=log, progress=progress, report=False)


def run_lecture(dataset: str = "digits", epochs: int = 0, seed: int = 0, name: str = "",
                out_dir: str = "runs", data_dir: str = "~/.cache/cnnlab", limit_train: int = 0,
                seeds: int = 3, log: Log = print, progress: bool = True) -> Run:
    """Train, evaluate and analyse on ``dataset``; write one run folder with its report."""
    from cnnlab.analysis.experiments import mlp_vs_cnn, permutation_test
    from cnnlab.analysis.tree import build_tree
    from cnnlab.explain.filters import explain_filters
    from cnnlab.report import render_report
    from cnnlab.robustness.analysis import robustness_analysis

    t0 = time.perf_counter()
    log("== 1. LeNet-5, the main CNN ==")
    run = main_run(dataset, epochs, seed, name, out_dir, data_dir, limit_train, log, progress)
    log("== 2. MLP versus CNN ==")
    mlp_vs_cnn(run, log=log)
    log("== 3. The permutation test ==")
    permutation_test(run, seeds=tuple(range(seeds)), log=log)
    log("== 4. What convolutions see ==")
    explain_filters(run, log=log)
    log("== 5. Confusion sets and the CNN tree ==")
    build_tree(run, log=log)
    log("== 6. Adversarial robustness ==")
    robustness_analysis(run, n=500, log=log)
    report = render_report(run)
    log(f"done in {time.perf_counter() - t0:.0f} s; report: {report}")
    return run
