"""``cnnlab generate train|sample|eval|detect``: GANs and diffusion models on any dataset cnnlab reads,
as run folders.

``train_generator`` trains the judge first when none is given (a classifier, ``cfg.model``, on
the same data and split: its features score the samples), then the generator (``task: generate``)
with the trainer; the run folder is a classifier's plus ``snapshots/`` (the fixed noise's
images after each evaluation), ``generation.json`` and ``samples.npz``. ``sample_run`` draws
images from a run, ``evaluate_generator`` measures one again, optionally in the published
protocol (Inception features from a weights file the user has). ``detect_generated`` trains a
CNN that tells the run's images from real ones (``detector.json``: what the web app's "Which is
real?" plays with).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError, Interrupted
from cnnlab.log import Log

JUDGE_EPOCHS = 10
"""Epochs of the judge classifier that ``train_generator`` trains when none is given."""


def judge_config(cfg: TrainConfig) -> TrainConfig:
    """The judge's recipe: ``cfg.model`` on the GAN's data and split (so the held-out images
    are the same), trained with the small-budget classifier recipe on every training image,
    even where the GAN trains on fewer (``limit_train``): its features describe the data, and
    GANs on subsets of it are then measured in one feature space."""
    from cnnlab.pipeline import recipe

    base = recipe(cfg.dataset, JUDGE_EPOCHS, cfg.seed, cfg.data_dir, 0, cfg.model, cfg.threads)
    return dataclasses.replace(base, image_size=cfg.image_size, val_split=cfg.val_split,
                               val_seed=cfg.val_seed, device=cfg.device, precision=cfg.precision,
                               name=f"{cfg.name}-judge", out_dir=cfg.out_dir, flip=False)


def train_generator(cfg: TrainConfig, resume: bool = False, log: Log = print, progress: bool = True,
                    report: bool = True):
    """Train the judge (unless ``cfg.judge`` names one) and the generator; return its Run."""
    from cnnlab.pipeline import train
    from cnnlab.run import default_name, train_run

    if cfg.task != "generate":
        cfg = dataclasses.replace(cfg, task="generate")
    cfg = dataclasses.replace(cfg, name=cfg.name or default_name(cfg))
    if not resume:  # widths and data the generator cannot train on stop here, before the judge trains
        from cnnlab.data import data_for
        from cnnlab.tasks.runs import prepare_task_data

        cfg.check_generator_kwargs()
        train_images = prepare_task_data("generate", data_for(cfg)).train
    if not cfg.judge and not resume:
        judge_dir = Path(cfg.out_dir) / f"{cfg.name}-judge"
        if not (judge_dir / "weights" / "meta.json").is_file():
            # a judge stopped by Ctrl-C is resumed: the same command continues where it was
            again = (judge_dir / "weights" / "last.safetensors").is_file()
            log(f"the judge: {cfg.model} on {cfg.dataset} ({JUDGE_EPOCHS} epochs), whose features "
                "score the samples (domain FID)" + (": resuming its interrupted training" if again else ""))
            try:
                train_run(judge_config(cfg), resume=again, log=log, progress=progress)
            except Interrupted as e:
                raise Interrupted(e.run_dir, "the same cnnlab generate train command (it resumes "
                                  "the judge, then trains the generator)") from None
        cfg = dataclasses.replace(cfg, judge=str(judge_dir))
    elif cfg.judge and not resume:
        _check_judge_fits(cfg, train_images)
    return train(cfg, resume=resume, log=log, progress=progress, report=report)


def _check_judge_fits(cfg: TrainConfig, data) -> None:
    """A judge given with --judge reads the generator's images (``data``, its training split):
    same shape, same classes (one trained on other data gave a domain FID of 5,374 on the
    digits, without a word); a classifier, read now rather than at the first evaluation, after
    minutes of training."""
    from cnnlab.run import load_run
    from cnnlab.tasks.generate import load_judge

    load_judge(cfg.judge)  # a generator, detector or DP-SGD run stops here (cached for later)
    judge = load_run(cfg.judge)
    if tuple(judge.meta["input_shape"]) != data.image_shape or list(judge.classes) != list(data.classes):
        raise CnnlabError(f"judge {cfg.judge} reads {tuple(judge.meta['input_shape'])} images of "
                          f"{len(judge.classes)} classes, {cfg.dataset} has {data.image_shape} images "
                          f"of {len(data.classes)}; give a judge trained on the same data (or no "
                          f"--judge: generate train trains one)")


def load_generator(path: str | Path):
    """(Run, its generator: a GAN or a diffusion model) of a run folder that ``cnnlab generate
    train`` wrote."""
    from cnnlab.run import load_run

    run = load_run(path)
    if run.config.task != "generate":
        raise CnnlabError(f"{path} is a {run.config.task} run; give a run that cnnlab generate train wrote")
    return run, run.load_model("last")


def sample_run(path: str | Path, n: int = 64, out: str | Path = "samples.png", seed: int = 0,
               label: str = "") -> Path:
    """``n`` images of a generator run as one PNG grid (or, for ``.npz``, uint8 arrays ``x``, and
    for a conditional generator the class each was asked for, ``y``, and ``classes``); ``label``
    asks a conditional generator for one class (by default they cycle through the classes)."""
    import numpy as np
    import torch

    from cnnlab.tasks.generate import grid
    from cnnlab.training.trainer import save_image

    run, gan = load_generator(path)
    if n < 1 or n > 100_000:
        raise CnnlabError(f"-n {n}: give between 1 and 100000 images")
    labels = None
    if label:
        if not gan.conditional:
            raise CnnlabError(f"--label {label}: {path} is an unconditional generator (train one "
                              "with --head conditional or ddpm-conditional)")
        if label not in run.classes:
            raise CnnlabError(f"--label {label}: not a class of {path} ({', '.join(run.classes)})")
        labels = torch.full((n,), run.classes.index(label))
    elif gan.conditional:
        labels = torch.arange(n) % gan.num_classes  # as sample's default, but kept for the npz
    x = gan.sample(n, seed=seed, labels=labels)
    out = Path(out)
    if out.suffix.lower() == ".npz":
        from cnnlab.io import save_npz

        kept = {} if labels is None else {"y": labels.numpy(), "classes": np.array(run.classes)}
        save_npz(out, x=x.numpy(), **kept)
    elif out.suffix.lower() == ".png":
        save_image(out, grid(x, columns=min(16, max(1, int(np.ceil(np.sqrt(n)))))))
    else:
        raise CnnlabError(f"--out {out}: give a .png (a grid) or .npz (the arrays) path")
    return out


def evaluate_generator(path: str | Path, n: int = 0, fid_weights: str = "") -> dict:
    """The run's generator measured again (cnnlab.evaluate.generation.score) on ``n`` samples
    (0: as many as the evaluation images); with ``fid_weights``, also the published protocol's
    FID and KID on Inception features (and their floor); for a conditional generator, how often
    the judge reads the class each sample was asked for (``label_agreement``)."""
    from cnnlab.evaluate.generation import (
        fid_kid,
        halves,
        inception_features,
        inception_net,
        judge_outputs,
        label_agreement,
        score,
    )
    from cnnlab.tasks.generate import load_judge

    if n and n < 10:
        raise CnnlabError(f"-n {n}: give at least 10 samples (or 0: as many as the evaluation images)")
    run, gan = load_generator(path)
    # a missing, misnamed or damaged weights file stops here, before any sampling; the network
    # is built once for the three sets
    net = inception_net(fid_weights) if fid_weights else None
    data = run.data()
    n = n or len(data.eval)
    samples = gan.sample(n, seed=1)
    judge = load_judge(run.config.judge)
    result = score(judge, samples, data.train.x, data.eval.x, data.train.num_classes)
    if gan.conditional:
        agree = label_agreement(judge_outputs(judge, samples)[1], gan.num_classes)
        result["label_agreement"], result["label_agreement_n"] = agree, n
    if fid_weights:  # the same halves as the domain measures (Inception saw none of them)
        first, second = halves(len(data.eval), n)
        k = len(first)
        real, other, fake = (inception_features(x, net) for x in
                             (data.eval.x[first], data.eval.x[second], samples[:k]))
        result["inception"] = {"features": "Inception-v3 pool3 (the published FID protocol)", "n": k,
                               "generated": fid_kid(real, fake), "floor": fid_kid(real, other)}
    return result


def detect_generated(path: str | Path, unseen: str = "", n: int = 2000, epochs: int = 8,
                     log: Log = print) -> dict:
    """Can a CNN tell this generator's images from real ones? LeNet-5 learns ``n`` training
    images (real) against ``n`` samples (generated), and is scored on the held-out real images
    against as many fresh samples, and, with ``unseen``, against another generator's samples
    (a run it never saw, on the same data): the practical deepfake question. The detector is a
    sub-run of the generator's run; the result goes to its ``detector.json``."""
    from cnnlab.analysis.generation import real_or_generated
    from cnnlab.io import atomic_write_json

    if not 10 <= n <= 1_000_000 or not 1 <= epochs <= 10_000:
        raise CnnlabError(f"-n {n} --epochs {epochs}: give 10 to 1000000 images and 1 to 10000 epochs")
    run, _ = load_generator(path)
    other = None
    if unseen:
        other, _ = load_generator(unseen)
        if other.path.resolve() == run.path.resolve():
            raise CnnlabError(f"--unseen {unseen} is the generator itself; give another generator "
                              "run (another seed, epoch count or head) on the same data")
        if other.meta.get("input_shape") != run.meta.get("input_shape"):
            raise CnnlabError(f"--unseen {unseen} makes {other.meta.get('input_shape')} images, "
                              f"{path} makes {run.meta.get('input_shape')}; give a generator of "
                              "the same data")
    result = real_or_generated(run, run, other, n, epochs, log)
    result["unseen_run"] = str(other.path) if other is not None else None
    atomic_write_json(run.path / "detector.json", result)
    return result
