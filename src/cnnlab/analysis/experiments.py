"""The lecture's two experiments, measured: MLP versus CNN, and the permutation test.

Permutation test: draw one fixed permutation of pixel positions and apply it to every image,
train and test alike. An MLP's first layer has one weight per pixel and no notion of
neighbours, so permuting its inputs only permutes its weights: its accuracy cannot change
beyond seed noise. A CNN's windows see neighbouring pixels, which the permutation scatters,
so its accuracy drops. Augmentation is off in all four arms: a shift or flip of shuffled
pixels has no meaning, and leaving it on for one arm would not be a fair comparison.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from cnnlab.data import permute_pixels, pixel_permutation, prepare_data
from cnnlab.io import atomic_write_json
from cnnlab.run import Run, load_npz, save_npz, train
from cnnlab.train.trainer import Log, last_epoch_only

ROW_KEYS = ("model", "params", "first_layer_params", "macs", "accuracy", "train_time_s")


def mlp_vs_cnn(run: Run, models: tuple[str, ...] = ("mlp", "lenet5", "resnet20"),
               log: Log = print) -> dict:
    """Train each model with the run's data and recipe; compare size, cost and accuracy."""
    base = run.config
    rows = []
    for name in models:
        if name == base.model:
            sub = run
        else:
            folder = run.path / "baselines" / name
            sub = Run(folder) if (folder / "metrics.json").is_file() else train(
                replace(base, model=name, name=name, out_dir=str(run.path / "baselines")),
                log=last_epoch_only(log, name), progress=False, report=False)
        rows.append({k: sub.metrics[k] for k in ROW_KEYS} | {"run": str(sub.path)})
    result = {"dataset": base.dataset, "epochs": base.epochs, "models": rows}
    atomic_write_json(run.path / "analysis" / "mlp_vs_cnn.json", result)
    for r in rows:
        log(f"{r['model']:>9}: accuracy {100 * r['accuracy']:.2f}%  params {r['params']:,}  "
            f"first layer {r['first_layer_params']:,}  MACs {r['macs']:,}  {r['train_time_s']:.1f}s")
    return result


def permutation_test(run: Run, cnn: str = "lenet5", seeds: tuple[int, ...] = (0, 1, 2),
                     log: Log = print) -> dict:
    """Train an MLP and a CNN on original and pixel-permuted images over several seeds."""
    base = replace(run.config, crop_padding=0, cutout=0, flip=False)
    out = run.path / "permutation"
    arms: dict[str, list[float]] = {}
    for model in ("mlp", cnn):
        for permuted in (False, True):
            key = f"{model}/{'permuted' if permuted else 'original'}"
            arms[key] = []
            for seed in seeds:
                name = f"{model}-{'perm' if permuted else 'orig'}-s{seed}"
                folder = out / name
                sub = Run(folder) if (folder / "metrics.json").is_file() else train(
                    replace(base, model=model, seed=seed, permute_pixels=permuted, name=name,
                            out_dir=str(out)), log=last_epoch_only(log, name), progress=False, report=False)
                arms[key].append(sub.metrics["accuracy"])
    summary = {k: {"accuracies": v, "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))
                   if len(v) > 1 else 0.0} for k, v in arms.items()}
    result = {"dataset": run.config.dataset, "cnn": cnn, "seeds": list(seeds), "arms": summary,
              "verdict": _verdict(summary, cnn)}
    atomic_write_json(run.path / "analysis" / "permutation.json", result)
    data = prepare_data(run.config.dataset, run.config.data_dir, run.config.image_size,
                        run.config.val_split, run.config.seed, run.config.limit_train)
    examples = data.val.subset(range(min(6, len(data.val))))
    permuted = permute_pixels(examples, pixel_permutation(*examples.image_shape[1:]))
    save_npz(run.path / "analysis" / "permutation.npz", original=examples.x.numpy(),
              permuted=permuted.x.numpy())
    log(result["verdict"])
    return result


def _verdict(s: dict, cnn: str) -> str:
    def change(model: str) -> tuple[float, float]:
        a, b = s[f"{model}/original"], s[f"{model}/permuted"]
        noise = max(a["std"], b["std"], 1e-4)
        return b["mean"] - a["mean"], noise

    d_mlp, n_mlp = change("mlp")
    d_cnn, n_cnn = change(cnn)
    mlp_same = abs(d_mlp) <= 3 * n_mlp + 0.005
    cnn_drop = d_cnn < -(3 * n_cnn + 0.005)
    return (f"MLP: {100 * d_mlp:+.2f} points after permutation (seed std {100 * n_mlp:.2f}): "
            f"{'unchanged within seed noise' if mlp_same else 'changed beyond seed noise'}. "
            f"{cnn}: {100 * d_cnn:+.2f} points (seed std {100 * n_cnn:.2f}): "
            f"{'drops, as expected' if cnn_drop else 'no clear drop on this data'}.")


def _save_npz(path: Path, **arrays) -> None:
    from cnnlab.run import _save_npz as save

    save(path, **arrays)


def load_result(run_path: Path, name: str) -> tuple[dict | None, dict]:
    path = run_path / "analysis" / f"{name}.json"
    data = json.loads(path.read_text()) if path.is_file() else None
    return data, load_npz(run_path / "analysis" / f"{name}.npz")


__all__ = ["load_result", "mlp_vs_cnn", "permutation_test"]
