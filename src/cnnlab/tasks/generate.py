"""Image generation: a GAN (cnnlab.models.gan) trained by the one trainer.

The task surface fits a GAN with one addition: the model's own ``train_step`` (a discriminator
step, then a generator step, on one optimizer with two parameter groups). Everything else is
the classifier's: seeded epochs, checkpoints and resume, EMA of the weights (the samples come
from the average), bf16 autocast.

Each evaluation draws samples from a fixed noise and scores them with the *judge*, a cnnlab
classifier trained on the same data (``judge: RUN``): the domain FID against the first half of
the evaluation images (the run's score, lower is better; the final floor compares the second
half with it at the same n), KID and the share of classes produced. The fixed
noise's first 64 images are the epoch's snapshot (``snapshots/epoch-NNN.png``), so a run's
snapshots show one set of latent points becoming images.

At the end, ``generation_files`` measures the final generator in full (cnnlab.evaluate.generation)
and writes ``generation.json`` and ``samples.npz``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Task

SNAPSHOT = 64
"""Images in an epoch's snapshot grid (8 x 8)."""
EVAL_SAMPLES = 1000
"""Samples scored at each evaluation (at most as many as the evaluation images)."""
SCORED_MAX = 10_000
"""The most samples the final measures score (the GAN's whole label histogram)."""
MIN_SIDE = 4
"""The smallest image side generated (the generator's first map is 4x4)."""
MIN_EVAL = 20
"""Evaluation images a generator run needs: two halves of 10, each more than prdc's 5 nearest
neighbours and KID's subsets."""


class GenerateTask(Task):
    name = "generate"
    score_name = "domain FID"

    def prepare(self, data):
        side = min(data.train.image_shape[-2:])
        if side < MIN_SIDE:
            raise CnnlabError(f"{data.source}: images of {side}x{side} pixels are too small to generate; "
                              f"give at least {MIN_SIDE}x{MIN_SIDE} (--image-size)")
        if len(data.eval) < MIN_EVAL:  # found at the start, not by prdc after the training
            raise CnnlabError(f"{data.source}: {len(data.eval)} evaluation images; generation needs at "
                              f"least {MIN_EVAL} (samples are scored against one half, the floor is the "
                              "other half against the first): give more images or a larger --val-split")
        return data

    def build(self, cfg: TrainConfig, data) -> nn.Module:
        from cnnlab.config import is_diffusion
        from cnnlab.tasks.base import build_task_model

        if not cfg.judge:
            raise CnnlabError("task generate needs a judge (a classifier run on the same data): "
                              "use `cnnlab generate train`, which trains one, or give --judge RUN")
        cfg.check_generator_kwargs()
        c, h, _ = data.train.image_shape
        kwargs = dict(in_channels=c, image_size=h, num_classes=data.train.num_classes,
                      conditional=cfg.head.endswith("conditional"),
                      width=cfg.model_kwargs.get("width", 32), mean=[0.5] * c, std=[0.5] * c)
        if is_diffusion(cfg.head):
            kwargs |= dict(sampling_steps=cfg.sampling_steps)
        else:
            kwargs |= dict(latent_dim=cfg.latent_dim, spectral_norm=cfg.spectral_norm,
                           loss=cfg.gan_loss, r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every,
                           aux_weight=cfg.aux_weight, d_depth=cfg.model_kwargs.get("d_depth", 1))
        torch.manual_seed(cfg.seed)
        model = build_task_model("generate", cfg.head, "", kwargs, data.train.num_classes)
        model.build_kwargs = kwargs
        model.judge_path = cfg.judge
        return model

    def targets(self, ds, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        return ds.y[idx.cpu()].to(device)

    def evaluate(self, model: nn.Module, ds, device: torch.device, bf16: bool = False) -> dict:
        from cnnlab.evaluate.generation import fid_kid, halves, judge_outputs, label_histogram

        judge = load_judge(model.judge_path, str(device))
        first, _ = halves(len(ds), EVAL_SAMPLES)  # against the first half, as the final measures
        n = len(first)
        samples = model.sample(max(n, SNAPSHOT), seed=0)
        f_fake, c_fake = judge_outputs(judge, samples[:n], device)
        f_real, c_real = judge_outputs(judge, ds.x[first], device)
        scores = fid_kid(f_real, f_fake, kid_subsets=20)
        labels = label_histogram(c_fake, c_real, ds.num_classes)
        return {"score": scores["fid"], "kid": scores["kid"], "classes_covered": labels["classes_covered"],
                "row": {"lower_is_better": True, "val_kid": scores["kid"],
                        "val_coverage": labels["classes_covered"]},
                "snapshot": grid(samples[:SNAPSHOT]), "predictions": samples[:n]}


@lru_cache(maxsize=4)
def load_judge(path: str, device: str = "cpu") -> nn.Module:
    """The judge classifier of a run folder (cached: every evaluation reads it)."""
    import json

    from cnnlab.models import create_model
    from cnnlab.training import checkpoint as ckpt

    meta_path = Path(path) / "weights" / "meta.json"
    if not meta_path.is_file():
        raise CnnlabError(f"judge {path}: not a finished cnnlab run (no weights/meta.json); train a "
                          "classifier on the same data first (cnnlab train) or let `cnnlab generate "
                          "train` do it")
    meta = json.loads(meta_path.read_text())
    if meta.get("task", "classify") != "classify" or meta["config"].get("dp_epsilon"):
        raise CnnlabError(f"judge {path}: a {meta.get('task', 'private')} run; the judge must be a "
                          "classifier trained without DP-SGD")
    model = create_model(meta["model"], **meta["model_kwargs"])
    try:
        model.load_state_dict(ckpt.model_tensors(path, "last", bool(meta.get("ema"))))
    except RuntimeError:
        raise CnnlabError(f"judge {path}: its weights do not fit its meta.json; retrain it") from None
    return model.to(device).eval()


def judge_record(path: str) -> tuple[str, float | None]:
    """The judge's architecture and its accuracy on its evaluation images."""
    import json

    metrics = json.loads((Path(path) / "metrics.json").read_text())
    return metrics.get("model", ""), metrics.get("accuracy")


def grid(x: torch.Tensor, columns: int = 8, pad: int = 1) -> np.ndarray:
    """uint8 images (N, C, H, W) as one (rows*H, columns*W, C) picture with a white gap."""
    n, c, h, w = x.shape
    rows = max(1, -(-n // columns))
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(x.numpy()):
        r, col = divmod(i, columns)
        out[pad + r * (h + pad): pad + r * (h + pad) + h,
            pad + col * (w + pad): pad + col * (w + pad) + w] = img.transpose(1, 2, 0)
    return out


def generation_files(run_dir: Path, data, model: nn.Module) -> dict:
    """The final generator measured in full (``generation.json``) and its pictures
    (``samples.npz``: the first 1,000 samples, latent interpolations, the samples nearest to
    a training image beside it, and for the conditional GAN a row per class)."""
    from cnnlab.evaluate.generation import judge_outputs, label_agreement, label_histogram, score
    from cnnlab.io import atomic_write_json, save_npz

    device = next(model.parameters()).device
    judge = load_judge(model.judge_path, str(device))
    n = min(SCORED_MAX, max(len(data.eval), EVAL_SAMPLES))  # scored (score compares at most
    # half of the evaluation images): the same n for every family of generator
    samples = model.sample(max(model.final_samples, n), seed=1)  # the label histogram's
    result = score(judge, samples[:n], data.train.x, data.eval.x, data.train.num_classes, device)
    _, c_many = judge_outputs(judge, samples, device)
    _, c_real = judge_outputs(judge, data.eval.x, device)
    result["labels"] = label_histogram(c_many, c_real, data.train.num_classes) | {"n": len(samples)}
    result["judge"] = str(model.judge_path)
    result["judge_model"], result["judge_accuracy"] = judge_record(model.judge_path)
    pictures = {"x": samples[:1000].numpy(), "interpolation": interpolation(model).numpy(),
                "real": data.eval.x[:64].numpy()}
    pixels = result["copies"]["pixels"]
    distance, nearest = np.array(pixels.pop("distance")), np.array(pixels.pop("nearest"))
    feats = result["copies"]["features"]
    feats.pop("distance"), feats.pop("nearest")
    closest = np.argsort(distance)[:8]
    pictures |= {"closest": samples[:n][closest].numpy(),
                 "closest_train": data.train.x[nearest[closest]].numpy(),
                 "closest_distance": distance[closest]}
    if model.conditional:
        k = data.train.num_classes
        labels = torch.arange(k).repeat_interleave(8)
        pictures["by_class"] = model.sample(len(labels), seed=2, labels=labels).numpy()
        # the judge's classes of the scored samples, already computed
        result["label_agreement"], result["label_agreement_n"] = label_agreement(c_many[:n], k), n
    atomic_write_json(run_dir / "generation.json", result)
    save_npz(run_dir / "samples.npz", **pictures)
    gen, floor = result["generated"], result["floor"]
    counts = model.parameter_counts()
    return {"score": gen["fid"], "score_name": "domain FID", "fid_floor": floor["fid"],
            "kid": gen["kid"], "sample_precision": gen["precision"], "sample_recall": gen["recall"],
            "classes_covered": result["labels"]["classes_covered"],
            "collapsed": result["labels"]["collapsed"],
            "copy_share": result["copies"]["features"]["copy_share"],
            "label_agreement": result.get("label_agreement"),
            "parameters": counts} | _gan_counts(counts)


def _gan_counts(counts: dict[str, int]) -> dict:
    """A GAN's generator and discriminator sizes, as the generation analysis reads them."""
    if "generator" not in counts:
        return {}
    return {"g_params": counts["generator"], "d_params": counts["discriminator"]}


@torch.no_grad()
def interpolation(model: nn.Module, rows: int = 6, steps: int = 10, seed: int = 3) -> torch.Tensor:
    """Images on the way between pairs of noise vectors (``model.between``: a straight line, or
    for a diffusion model a great circle): (rows * steps, C, H, W) uint8.
    A smooth change from end to end means the generator learned a continuous space, not a
    lookup table of images."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    a, b = model.noise(rows, g), model.noise(rows, g)
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    z = model.between(a[:, None], b[:, None], t).reshape(rows * steps, -1).to(device)
    y = ((torch.arange(rows) % model.num_classes).repeat_interleave(steps).to(device)
         if model.conditional else None)
    x = (model.generate(z, y) * 255).round().to(torch.uint8).cpu()
    model.train(was)
    return x
