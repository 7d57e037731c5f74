"""A run folder and the Python API over it: ``train(config) -> Run``, ``load_run(path)``.

runs/<name>/
    config.yaml        everything needed to repeat the run
    results.csv        one row per epoch
    metrics.json       final numbers on the evaluation split (machine-readable)
    predictions.npz    evaluation probabilities and labels
    examples.npz       sample and misclassified images for the report
    plots/*.png
    weights/{last,best}.safetensors, weights/meta.json
    report.html
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from cnnlab.config import TrainConfig
from cnnlab.data import RunData, load_dataset, prepare_data
from cnnlab.env import code_version, environment
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import classification_report, predict_probs
from cnnlab.io import atomic_write, atomic_write_json
from cnnlab.models import ImageClassifier, create_model, model_stats
from cnnlab.train import checkpoint as ckpt
from cnnlab.train import distributed as dist_
from cnnlab.train.trainer import Log, fit, resolve_device

# Config fields that may change on --resume without changing the result.
RESUME_IGNORES = ("name", "out_dir", "device", "data_dir")


class Run:
    """A finished (or interrupted) run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise CnnlabError(f"{self.path} is not a run folder (no config.yaml); "
                              f"pass a folder written by cnnlab train")
        self.config = TrainConfig.load(self.path / "config.yaml")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def metrics(self) -> dict:
        return _read_json(self.path / "metrics.json", "metrics")

    @property
    def meta(self) -> dict:
        return _read_json(self.path / "weights" / "meta.json", "weights metadata")

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    def load_model(self, which: str = "last", device: str = "cpu") -> ImageClassifier:
        """The trained model, rebuilt from weights/meta.json and the safetensors weights."""
        meta = self.meta
        model = create_model(meta["model"], **meta["model_kwargs"])
        tensors, _ = ckpt.load_tensors(self.path / "weights" / f"{which}.safetensors")
        if which == "last":  # the resumable checkpoint: pick the (EMA) model's tensors
            state = ckpt.strip_prefix("ema.module." if meta.get("ema") else "model.", tensors)
        else:
            state = tensors
        model.load_state_dict(state)
        model = model.to(device).eval()
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def predict(self, images: torch.Tensor | np.ndarray, which: str = "last",
                tta: int | None = None) -> np.ndarray:
        """Class probabilities for uint8 images (N, C, H, W) or (N, H, W, C)."""
        x = self._permuted(_as_uint8_nchw(images, self.meta["input_shape"]))
        model = self.load_model(which)
        tta = self.config.tta if tta is None else tta
        return predict_probs(model, x, tta=tta, channels_last=self.config.channels_last)[0]

    def evaluate(self, dataset: str | None = None, split: str = "test", which: str = "last",
                 data_dir: str | None = None) -> dict:
        """Metrics of the saved model on a dataset's split (default: the run's own data)."""
        name = dataset or self.config.dataset
        splits = load_dataset(name, data_dir or self.config.data_dir, self.config.image_size)
        ds = splits.test if split == "test" else splits.train
        if ds is None:
            raise CnnlabError(f"{name} has no {split} split; use --split train")
        expected = tuple(self.meta["input_shape"])
        if ds.image_shape != expected:
            raise CnnlabError(f"{name} images are {ds.image_shape} (C, H, W) but the model "
                              f"reads {expected}; evaluate on data of the shape it was trained on")
        model = self.load_model(which)
        probs, loss = predict_probs(model, self._permuted(ds.x), tta=self.config.tta, y=ds.y)
        return classification_report(probs, ds.y.numpy(), ds.classes, loss)


    def _permuted(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the run's fixed pixel permutation, if it was trained on permuted images."""
        if not self.config.permute_pixels:
            return x
        from cnnlab.data import ImageDataset, permute_pixels, pixel_permutation

        ds = ImageDataset(x, torch.zeros(len(x), dtype=torch.long), ["?"])
        return permute_pixels(ds, pixel_permutation(*x.shape[2:])).x


def load_run(path: str | Path) -> Run:
    return Run(path)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CnnlabError(f"{path} not found: the run has no {what} yet; finish or resume it "
                          f"(cnnlab train --resume {path.parent})")
    return json.loads(path.read_text())


def _as_uint8_nchw(images, shape) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[None]
    if x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if tuple(x.shape[1:]) != tuple(shape):
        raise CnnlabError(f"images of shape {tuple(x.shape[1:])} (C, H, W) given, the model reads "
                          f"{tuple(shape)}; resize them (cnnlab predict does this for files)")
    if x.dtype != torch.uint8:
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.contiguous()


def default_name(cfg: TrainConfig) -> str:
    dataset = cfg.dataset.split(":", 1)[0]
    return f"{dataset}-{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: TrainConfig, resume: bool = False, log: Log = print, progress: bool = True,
          report: bool = True) -> Run | None:
    """Train a model as ``cfg`` says and write a complete run folder; return the Run.

    Under distributed training (torchrun) every rank trains; rank 0 writes the folder and
    returns the Run, the other ranks return None."""
    if not cfg.name:
        cfg.name = default_name(cfg)
    run_dir = Path(cfg.out_dir) / cfg.name
    main = dist_.is_main()
    if main:  # in distributed training, rank 0 alone writes the run folder
        _check_run_dir(run_dir, cfg, resume)
        cfg.save(run_dir / "config.yaml")
    dist_.barrier()
    data = prepare_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.val_split, cfg.seed,
                        cfg.limit_train, cfg.permute_pixels)
    log(f"{cfg.dataset}: {len(data.train)} training and {len(data.val)} {data.val_name} images "
        f"of shape {data.train.image_shape}, {data.train.num_classes} classes")
    model, state = fit(cfg, data, run_dir, resume=resume, log=log if main else _silent,
                       progress=progress and main)
    if not main:
        return None
    finish_run(run_dir, cfg, data, model, state)
    run = Run(run_dir)
    if report:
        from cnnlab.report import render_report

        log(f"report: {render_report(run)}")
    return run


def _silent(line: str) -> None:
    pass


def _check_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool) -> None:
    saved = run_dir / "config.yaml"
    if resume:
        if not saved.is_file():
            raise CnnlabError(f"nothing to resume: {run_dir} has no config.yaml")
        if not (run_dir / "weights" / "last.safetensors").is_file():
            raise CnnlabError(f"nothing to resume: {run_dir} has no checkpoint yet; start it again")
        changed = TrainConfig.load(saved).differences(cfg, ignore=RESUME_IGNORES)
        if changed:
            raise CnnlabError(f"--resume refuses a changed config ({'; '.join(changed)}); "
                              f"drop those flags or start a new run with --name")
    elif saved.exists():
        raise CnnlabError(f"run folder {run_dir} already exists; pick another --name or "
                          f"continue it with --resume {run_dir}")


def finish_run(run_dir: Path, cfg: TrainConfig, data: RunData, model: ImageClassifier,
               state) -> dict:
    """Evaluate the final model and write metrics.json, predictions, examples and meta.json."""
    device = next(model.parameters()).device
    if state.final_eval is not None:  # fit already evaluated the final model
        probs, loss = state.final_eval
    else:
        probs, loss = predict_probs(model, data.val.x, tta=cfg.tta, device=device,
                                    channels_last=cfg.channels_last, y=data.val.y)
    y = data.val.y.numpy()
    metrics = classification_report(probs, y, data.val.classes, loss)
    stats = model_stats(model, data.train.image_shape)
    metrics.update(
        split=data.val_name, model=cfg.model, dataset=cfg.dataset, epochs=state.epoch,
        params=stats.params, first_layer_params=stats.first_layer_params, macs=stats.macs,
        train_time_s=state.elapsed, train_images_per_s=state.images_seen / max(state.elapsed, 1e-9),
        best_epoch=state.best_epoch, best_val_acc=state.best_acc,
        n_train=len(data.train), environment=environment(device),
    )
    atomic_write_json(run_dir / "metrics.json", metrics)
    save_npz(run_dir / "predictions.npz", probs=probs.astype(np.float32), y=y)
    save_npz(run_dir / "examples.npz", **_examples(data, probs))
    meta = {
        "model": cfg.model, "model_kwargs": model.build_kwargs, "classes": data.train.classes,
        "input_shape": list(data.train.image_shape),
        "normalization": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
        "ema": bool(cfg.ema), "config": cfg.to_dict(), "code_version": code_version(),
        "metrics": {k: metrics[k] for k in ("accuracy", "top5_accuracy", "macro_f1", "ece", "split")},
        "dataset_source": data.source,
    }
    atomic_write_json(run_dir / "weights" / "meta.json", meta)
    return metrics


def save_npz(path: Path, **arrays) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def _examples(data: RunData, probs: np.ndarray, per_class: int = 8, wrong: int = 24) -> dict:
    """Sample training images per class and the most confidently misclassified val images."""
    k = data.train.num_classes
    per_class = per_class if k <= 20 else 1
    y = data.train.y.numpy()
    sample_idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(min(k, 100))])
    pred = probs.argmax(1)
    yv = data.val.y.numpy()
    wrong_idx = np.flatnonzero(pred != yv)
    wrong_idx = wrong_idx[np.argsort(-probs[wrong_idx].max(1))][:wrong]
    return {"samples": data.train.x[sample_idx].numpy(), "sample_labels": y[sample_idx],
            "wrong": data.val.x[wrong_idx].numpy(), "wrong_labels": yv[wrong_idx],
            "wrong_probs": probs[wrong_idx].astype(np.float32), "wrong_index": wrong_idx}


def load_npz(path: Path) -> dict:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


__all__ = ["Run", "load_run", "train", "finish_run", "resolve_device"]
