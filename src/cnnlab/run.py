"""A run folder and the Python API over it: ``train_run(config) -> Run``, ``load_run(path)``.

runs/<name>/
    config.yaml        everything needed to repeat the run (the thread count included)
    status.json        running, finished, failed (and why) or interrupted
    results.csv        one row per epoch
    metrics.json       final numbers on the evaluation split (machine-readable)
    provenance.json    hashes of the data as trained and of the files read, source, licence
    predictions.npz    evaluation probabilities and labels
    label_noise.npz    the training images whose labels label_noise flipped (if any)
    examples.npz       sample and misclassified images for the report
    weights/{last,best}.safetensors, weights/meta.json
    weights/calibration.json   the fitted temperature (cnnlab calibrate), applied by predict
    weights/epoch-NNN.safetensors   weights kept at evenly spaced epochs (--checkpoints N)
    analysis/<name>[-<settings hash>].json (+ .npz, .csv)   one file per analysis and setting
    subruns/<label>-<config hash>/                          runs the analyses trained
    plots/*.png, report.html                                written by the report

This module is the run-folder I/O layer: it trains and reads runs, and knows nothing of
analyses or reports (those sit above it).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cnnlab.config import TrainConfig
from cnnlab.data import RunData, data_for, load_dataset, provenance
from cnnlab.energy import carbon, carbon_intensity, meter
from cnnlab.env import code_version, environment, torch_threads
from cnnlab.errors import CnnlabError, Interrupted
from cnnlab.evaluate import classification_report, predict_probs
from cnnlab.evaluate.calibration import apply_temperature
from cnnlab.evaluate.predict import tta_level, use_bf16
from cnnlab.io import atomic_write, atomic_write_json, load_npz, save_npz
from cnnlab.log import Log, last_epoch_only
from cnnlab.models import ImageClassifier, check_model_name, create_model, model_stats, to_channels_last
from cnnlab.tasks import build_task_model, get_task
from cnnlab.tasks.runs import finish_task, prepare_task_data, task_meta
from cnnlab.training import checkpoint as ckpt
from cnnlab.training import distributed as dist_
from cnnlab.training.state import time_to_accuracy
from cnnlab.training.trainer import fit, resolve_device, start_model

RUN_FORMAT = 2
"""Version of the run-folder layout. 1: before analyses were named by their settings and the
validation split had its own seed (such runs open: their split seed was the training seed)."""
RESUME_IGNORES = ("name", "out_dir", "device", "data_dir")
"""Config fields that may change on --resume without changing the result."""


TASK_VERBS = {"detect": "cnnlab detect eval|predict RUN, or cnnlab track RUN VIDEO",
              "segment": "cnnlab detect eval|predict RUN", "pose": "cnnlab detect eval|predict RUN",
              "generate": "cnnlab generate sample|eval|detect RUN"}
"""What a run of each task other than classify is read with (``Run.require_classifier``)."""


class Run:
    """A finished (or interrupted) run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise CnnlabError(f"{self.path} is not a run folder (no config.yaml); "
                              f"pass a folder that a training wrote (cnnlab train, run, detect train "
                              f"or generate train)")
        self.config = TrainConfig.load(self.path / "config.yaml")
        self._data: RunData | None = None
        if self.format > RUN_FORMAT:
            raise CnnlabError(f"{self.path} was written by cnnlab {self.meta.get('code_version')} "
                              f"(run format {self.format}); this cnnlab reads formats up to "
                              f"{RUN_FORMAT}: upgrade cnnlab to open it")
        if self.format == 1:  # format 1 held validation images out with the training seed
            self.config.val_seed = self.config.seed

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def require_classifier(self, verb: str) -> Run:
        """This run, if a classifier wrote it; else one line naming the verbs of its task."""
        task = self.config.task
        if task != "classify":
            raise CnnlabError(f"{self.path} is a {task} run; cnnlab {verb} reads classifier runs "
                              f"(task classify): use {TASK_VERBS.get(task, 'the verbs of its task')}")
        return self

    def require_images(self, verb: str) -> Run:
        """This run, if its model reads images, not clips of stacked frames (``videos`` data).
        Read from the config alone: the main job's second lane asks before the main CNN has
        written its weights."""
        if self.config.dataset.partition(":")[0] == "videos":
            raise CnnlabError(f"{self.path} reads video clips (frames stacked as channels), not "
                              f"the images cnnlab {verb} works on: use cnnlab action RUN VIDEO "
                              f"for this run")
        return self

    @property
    def format(self) -> int:
        meta = self.path / "weights" / "meta.json"
        if not meta.is_file():
            return RUN_FORMAT
        value = self.meta.get("run_format", 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CnnlabError(f"{meta} has run_format {value!r}, not a format number; restore "
                              f"it or train the run again")
        return value

    @property
    def metrics(self) -> dict:
        return read_json(self.path / "metrics.json", "metrics")

    @property
    def meta(self) -> dict:
        path = self.path / "weights" / "meta.json"
        meta = read_json(path, "weights metadata")
        for key, kind in (("model", str), ("model_kwargs", dict), ("classes", list),
                          ("input_shape", list)):
            if not isinstance(meta.get(key), kind):
                raise CnnlabError(f"{path} lacks a valid {key!r}; restore it or train the run again")
        if not meta["classes"] or not all(isinstance(c, str) for c in meta["classes"]):
            raise CnnlabError(f"{path} has no valid class names; restore it or train the run again")
        return meta

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    def data(self) -> RunData:
        """The run's training and evaluation images, split exactly as it was trained."""
        if self._data is None:
            self._data = prepare_task_data(self.config.task, data_for(self.config))
        return self._data

    def load_model(self, which: str = "last", device: str = "cpu") -> ImageClassifier:
        """The trained model, rebuilt from weights/meta.json and the safetensors weights (a
        fresh copy each call: callers may change it)."""
        meta = self.meta
        try:
            if meta.get("task", "classify") == "classify":
                model = create_model(meta["model"], **meta["model_kwargs"])
            else:
                model = build_task_model(meta["task"], meta["head"], meta["model"], meta["model_kwargs"],
                                         len(meta["classes"]), meta.get("num_keypoints", 0))
        except CnnlabError as e:
            raise CnnlabError(f"{self.path}/weights/meta.json: {e}") from None
        if self.config.dp_epsilon:  # trained with DP-SGD: GroupNorm where BatchNorm was
            from cnnlab.training.privacy import make_private_compatible

            model = make_private_compatible(model)
        state = ckpt.model_tensors(self.path, which, bool(meta.get("ema")))
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise CnnlabError(f"{self.path}/weights/{which}.safetensors does not fit the model "
                              f"that weights/meta.json describes ({meta['model']}); restore "
                              f"meta.json or retrain the run") from None
        head = getattr(model, "num_classes", None)
        if meta.get("task", "classify") == "classify" and head != len(meta["classes"]):
            raise CnnlabError(f"{self.path}/weights/meta.json names {len(meta['classes'])} classes "
                              f"but the model predicts {head}; restore meta.json or retrain the run")
        model = model.to(device).eval()
        if self.config.channels_last:
            model = to_channels_last(model)
        return model

    def checkpoints(self) -> list[Path]:
        """The weights kept at evenly spaced epochs (``--checkpoints N``), oldest first."""
        return sorted((self.path / "weights").glob("epoch-*.safetensors"))

    def index_file(self, idx) -> str:
        """A text file of training indices (for ``drop_train``) in analysis/, named by its
        content: a config that names it is as specific as its hash."""
        import hashlib

        text = "\n".join(str(int(i)) for i in idx) + "\n"
        path = self.path / "analysis" / f"drop-{hashlib.sha256(text.encode()).hexdigest()[:12]}.txt"
        if not path.is_file():
            atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        return str(path)

    def tracin(self):
        """Captum's TracInCPFast over the run's kept checkpoints and its training images."""
        from cnnlab.explain.influence import tracin

        paths = self.checkpoints()
        if not paths:
            raise CnnlabError(f"{self.path} kept no checkpoints, which TracIn needs; train it "
                              f"again with --checkpoints 4 (weights at 4 evenly spaced epochs)")
        model, train = self.load_model(), self.data().train
        return tracin(model, model.get_classifier(), [str(p) for p in paths], _load_checkpoint,
                      train.x, train.y)

    def flip_ok(self) -> bool:
        """Whether the run's data allows mirrored images (flip TTA)."""
        flip = self.meta.get("flip_ok")
        return self.data().flip_ok if flip is None else bool(flip)

    def predict(self, images: torch.Tensor | np.ndarray, which: str = "last",
                tta: int | None = None, calibrated: bool = True) -> np.ndarray:
        """Class probabilities for uint8 images (N, C, H, W) or (N, H, W, C), temperature-
        scaled when the run has been calibrated (``calibrated=False``: the raw softmax)."""
        x = self._permuted(_as_uint8_nchw(images, self.meta["input_shape"]))
        model = self._model_for_predict(which)
        tta = tta_level(self.config) if tta is None else tta
        probs = predict_probs(model, x, tta=tta, channels_last=self.config.channels_last,
                              flip=self.flip_ok(), bf16=use_bf16(self.config, "cpu"))[0]
        temperature = self.temperature() if calibrated else None
        return probs if temperature is None else apply_temperature(probs, temperature)

    def cached_model(self, which: str = "last"):
        """The model for predictions, loaded once while its weights file is unchanged (callers
        must not change it)."""
        return self._model_for_predict(which)

    def _model_for_predict(self, which: str) -> ImageClassifier:
        """The model predict uses, kept while its weights file is unchanged (a server or a
        loop does not rebuild it); only predict sees it, so nothing changes it."""
        path = self.path / "weights" / f"{which}.safetensors"
        key = (which, path.stat().st_mtime_ns if path.is_file() else 0)
        cached = getattr(self, "_predict_model", None)
        if cached is None or cached[0] != key:
            self._predict_model = (key, self.load_model(which))
        return self._predict_model[1]

    def temperature(self) -> float | None:
        """The temperature ``cnnlab calibrate`` fitted (weights/calibration.json), if any."""
        path = self.path / "weights" / "calibration.json"
        if not path.is_file():
            return None
        t = read_json(path, "calibration").get("temperature")
        if not isinstance(t, int | float) or not 0 < t < 1e3:
            raise CnnlabError(f"{path}: temperature must be a positive number, not {t!r}; run "
                              f"cnnlab calibrate {self.path} again or delete the file")
        return float(t)

    def evaluate(self, dataset: str | None = None, split: str = "test", which: str = "last",
                 data_dir: str | None = None) -> dict:
        """Metrics of the saved model on a dataset's split (default: the run's own data)."""
        self.require_classifier("evaluate")
        name = dataset or self.config.dataset
        splits = load_dataset(name, data_dir or self.config.data_dir, self.config.image_size)
        ds = splits.test if split == "test" else splits.train
        own = ds is None and split == "test" and not dataset  # a folder without test/, an npz
        if own:  # without a test split: the images the run held out, split as it was trained
            ds = self.data().eval  # (already permuted where the run permutes pixels)
        if ds is None:
            raise CnnlabError(f"{name} has no {split} split; use --split train (its training "
                              f"images: not a held-out figure)")
        expected = tuple(self.meta["input_shape"])
        if ds.image_shape != expected:
            raise CnnlabError(f"{name} images are {ds.image_shape} (C, H, W) but the model "
                              f"reads {expected}; evaluate on data of the shape it was trained on")
        if list(ds.classes) != list(self.classes):
            raise CnnlabError(f"{name} has the classes {', '.join(ds.classes)} but the model knows "
                              f"{', '.join(self.classes)}; evaluate on data with the classes it "
                              f"was trained on, in that order")
        model = self.load_model(which)
        probs, loss = predict_probs(model, ds.x if own else self._permuted(ds.x), tta=tta_level(self.config),
                                    y=ds.y, flip=ds.flip_ok, bf16=use_bf16(self.config, "cpu"))
        report = classification_report(probs, ds.y.numpy(), ds.classes, loss)
        return report | {"warnings": self._not_held_out(ds, split, which, name, data_dir)}

    def _not_held_out(self, ds, split: str, which: str, name: str, data_dir: str | None) -> list[str]:
        """Why an evaluation is not a held-out figure: on other data, its images among the
        run's training images (another fold of the digits, a folder that overlaps; the run's
        own split is the provenance audit's); or its best epoch chosen on these very images
        (a run without a validation split)."""
        if split != "test":
            return [f"--split {split}: these are {name}'s training images, which the run learnt from "
                    f"(or held out from them): not a held-out figure"]
        out = []
        if name != self.config.dataset:
            out += self._overlap(ds, data_dir)
        if which == "best" and not self.config.val_split and name == self.config.dataset:
            out.append("--which best: this run held out no validation split, so its best epoch was "
                       "chosen on these test images and the accuracy is optimistic (use --which "
                       "last, or train with --val-split)")
        return out

    def train_outputs(self, batch_size: int = 500) -> dict[str, np.ndarray]:
        """Logits, per-image cross-entropy losses and embeddings of the final model on every
        training image (no augmentation, no TTA), with labels; saved as
        analysis/train_outputs.npz and reused while the weights are unchanged."""
        path = self.path / "analysis" / "train_outputs.npz"
        weights = self.path / "weights" / "last.safetensors"
        if path.is_file() and path.stat().st_mtime >= weights.stat().st_mtime:
            return load_npz(path)
        model, train = self.load_model(), self.data().train
        logits, embeddings = [], []
        with torch.inference_mode():
            for i in range(0, len(train), batch_size):
                feats = model.forward_features(train.x[i: i + batch_size].float() / 255)
                embeddings.append(model.forward_head(feats, pre_logits=True))
                logits.append(model.forward_head(feats))
        logits_t = torch.cat(logits)
        losses = torch.nn.functional.cross_entropy(logits_t, train.y, reduction="none")
        out = {"logits": logits_t.numpy(), "losses": losses.numpy(),
               "embeddings": torch.cat(embeddings).numpy(), "y": train.y.numpy()}
        save_npz(path, **out)
        return out

    def subrun(self, cfg: TrainConfig, label: str, log: Log = print) -> Run:
        """Train ``cfg`` under subruns/, or reuse the finished sub-run of exactly that config.

        The folder is named by a hash of every setting, so a changed setting (epochs, seed,
        data) means a new sub-run, never a stale one; an interrupted one resumes. A classifier
        is validated once, after its last epoch: analyses read its final model and metrics
        (sub-runs keep no best-epoch copy), so a validation pass per epoch bought nothing they
        read (in ``cnnlab run``, about a tenth of the analyses' time); its metrics'
        train_time_s counts less validation than a run's own, train_steps_s none."""
        cfg = replace(cfg, threads=torch.get_num_threads())  # the analysis's count, not the run's
        if cfg.task == "classify":
            cfg = replace(cfg, eval_every=cfg.epochs)
        cfg = replace(cfg, out_dir=str(self.path / "subruns"), name=f"{label}-{cfg.digest()}")
        folder = Path(cfg.out_dir) / cfg.name
        if (folder / "metrics.json").is_file():
            return Run(folder)
        resume = (folder / "weights" / "last.safetensors").is_file()
        sub = train_run(cfg, resume=resume, log=last_epoch_only(log, label), progress=True)
        compact(sub.path)
        return sub

    def _overlap(self, ds, data_dir: str | None) -> list[str]:
        """How many of ``ds``'s images the run trained on, in words (none: no words)."""
        from cnnlab.data.provenance import exact_copies

        try:  # the training images as trained (a permuted run's permuted)
            train = data_for(replace(self.config, data_dir=data_dir or self.config.data_dir)).train
        except CnnlabError as e:
            return [f"could not check whether the run trained on these images ({e})"]
        seen = len(exact_copies(train.x.numpy(), self._permuted(ds.x).numpy()))
        return [f"{seen} of these {len(ds)} images are among the run's training images: this "
                "accuracy is not a held-out figure"] if seen else []

    def _permuted(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the run's fixed pixel permutation, if it was trained on permuted images."""
        if not self.config.permute_pixels:
            return x
        from cnnlab.data import ImageDataset, permute_pixels, pixel_permutation

        ds = ImageDataset(x, torch.zeros(len(x), dtype=torch.long), ["?"])
        return permute_pixels(ds, pixel_permutation(*x.shape[2:])).x


def compact(run_dir: Path) -> None:
    """A finished sub-run keeps only what analyses read: its last weights without the
    optimizer state (it will never resume) and no best-epoch copy; about a third of the disk."""
    weights = run_dir / "weights"
    tensors, meta = ckpt.load_tensors(weights / "last.safetensors")
    kept = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    if len(kept) < len(tensors):
        ckpt.save_tensors(weights / "last.safetensors", kept, meta)
    (weights / "best.safetensors").unlink(missing_ok=True)


def _load_checkpoint(model: torch.nn.Module, path: str) -> float:
    """Load a kept checkpoint (safetensors, never pickle) into ``model``; its TracIn weight
    (the learning rate summed over the interval it stands for; older runs: the lr mid-epoch)."""
    tensors, meta = ckpt.load_tensors(path)
    model.load_state_dict(tensors)
    return float(meta["lr"])


def load_run(path: str | Path) -> Run:
    return Run(path)


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        run = path.parent.parent if path.parent.name == "weights" else path.parent
        raise CnnlabError(f"{path} not found: the run has no {what}; finish it with "
                          f"cnnlab train --resume {run}, or train it again")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CnnlabError(f"{path} is not valid JSON ({e.__class__.__name__}); restore it or "
                          f"train the run again") from None
    if not isinstance(value, dict):
        raise CnnlabError(f"{path} must hold a JSON object; restore it or train the run again")
    return value


def _as_uint8_nchw(images, shape) -> torch.Tensor:
    # numpy input is copied (the caller may hand in a read-only array); tensors are used as they are
    x = images if torch.is_tensor(images) else torch.from_numpy(np.array(images))
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


def train_run(cfg: TrainConfig, resume: bool = False, log: Log = print,
              progress: bool = True) -> Run | None:
    """Train a model as ``cfg`` says and write a complete run folder (no report); return it.

    Under distributed training (torchrun) every rank trains; rank 0 writes the folder and
    returns the Run, the other ranks return None. Torch uses ``cfg.threads`` CPU threads
    while it trains (0: the count in effect), and the count used is saved with the run."""
    cfg = replace(cfg, name=cfg.name or default_name(cfg))
    with torch_threads(cfg.threads) as threads:
        cfg.threads = threads  # saved: CPU results repeat exactly for one thread count
        return _train_run(cfg, resume, log, progress)


def _train_run(cfg: TrainConfig, resume: bool, log: Log, progress: bool) -> Run | None:
    run_dir = Path(cfg.out_dir) / cfg.name
    main = dist_.is_main()
    resolve_device(cfg.device)  # an unknown device, or CUDA without a GPU, stops before any folder
    dist_.on_main(lambda: check_run_dir(run_dir, cfg, resume))
    data = prepare_task_data(cfg.task, data_for(cfg))  # bad data stops before any folder is made
    what = "object crops" if cfg.task == "pose" else "images"  # pose trains on one crop per object
    log(f"{cfg.dataset}: {len(data.train)} training and {len(data.eval)} {data.eval_split} {what} "
        f"of shape {data.train.image_shape}, {data.train.num_classes} classes")
    check_model_name(cfg.model)  # an unknown model stops here, before the folder is made
    if cfg.country:
        carbon_intensity(cfg.country)  # an unknown country stops here, before any training
    found = None
    if cfg.lr_find and not resume:  # lr auto: the range test first; the config keeps its choice
        from cnnlab.training.lr_find import choose_lr

        cfg, found = choose_lr(cfg, data, log)
    # a model that cannot be built (bad --model-kwargs, --init-from, --pretrained) stops here,
    # before the folder is made; a resumed run builds its own from its checkpoint
    model = None if resume else start_model(cfg, data, log if main else _silent)
    dist_.on_main(lambda: start_run_dir(run_dir, cfg))
    if found is not None:
        from cnnlab.io import atomic_write_json

        atomic_write_json(run_dir / "lr_find.json", found)
    before = meter().snapshot()
    try:
        with meter().phase("training"):
            model, state = fit(cfg, data, run_dir, resume=resume, log=log if main else _silent,
                               progress=progress and main, model=model)
    except CnnlabError as e:
        if main:  # the folder says why the run stopped (its last weights are not a result)
            write_status(run_dir, "failed", str(e))
        raise
    except KeyboardInterrupt:
        if main:
            write_status(run_dir, "interrupted", "stopped by the user (Ctrl-C)")
        raise Interrupted(run_dir) from None
    if not main:
        return None
    try:
        with meter().phase("evaluation"):
            finish_run(run_dir, cfg, data, model, state, before)
    except KeyboardInterrupt:  # the training is checkpointed: --resume evaluates it again
        write_status(run_dir, "interrupted", "stopped by the user (Ctrl-C) while it was evaluated")
        raise Interrupted(run_dir) from None
    return Run(run_dir)


def _silent(line: str) -> None:
    pass


def check_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool) -> None:
    """Refuse to overwrite a run that has a checkpoint, and to resume one that has none."""
    saved = run_dir / "config.yaml"
    has_checkpoint = (run_dir / "weights" / "last.safetensors").is_file()
    if resume:
        if not saved.is_file():
            raise CnnlabError(f"nothing to resume: {run_dir} has no config.yaml")
        if not has_checkpoint:
            raise CnnlabError(f"nothing to resume: {run_dir} has no checkpoint yet; start it "
                              f"again without --resume (the same --name is fine)")
        check_not_running(run_dir)
        changed = TrainConfig.load(saved).differences(cfg, ignore=RESUME_IGNORES)
        if changed:
            raise CnnlabError(f"--resume refuses a changed config ({'; '.join(changed)}); "
                              f"drop those flags or start a new run with --name")
    elif has_checkpoint:
        raise CnnlabError(f"run folder {run_dir} already exists; pick another --name or "
                          f"continue it with --resume {run_dir}")


def start_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    cfg.save(run_dir / "config.yaml")
    write_status(run_dir, "running", "")


def write_status(run_dir: Path, state: str, message: str) -> None:
    """status.json: what became of the run, so a failed one says why in its own folder; a
    running one names its process (``check_not_running``)."""
    import os

    atomic_write_json(run_dir / "status.json", {"state": state, "message": message,
                                                 "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                 "process": _process(os.getpid())})


def _process(pid: int) -> dict:
    """Who a process is, beyond its number (reused after it ends, and after a reboot): the
    machine, its boot and the process's start (Linux's /proc; elsewhere the number alone)."""
    import socket

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    stat = read(f"/proc/{pid}/stat")  # field 22, after the parenthesised name: start time
    started = stat.rsplit(")", 1)[-1].split()[19] if stat else ""
    return {"pid": pid, "host": socket.gethostname(), "started": started,
            "boot": read("/proc/sys/kernel/random/boot_id").strip()}


def _alive(then: dict) -> bool:
    """Whether the process ``_process`` described is still running: on Linux the same number,
    machine, boot and start time; elsewhere (no /proc) the number on the same machine."""
    import os
    import socket

    if then.get("started"):
        return _process(then["pid"]) == then
    if then.get("host") != socket.gethostname():
        return False
    try:
        os.kill(then["pid"], 0)  # signal 0: is the process there?
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # there, under another user
    return True


def check_not_running(run_dir: Path) -> None:
    """Refuse to resume a run that a live process on this machine is still training (two
    processes writing one folder would interleave their checkpoints)."""
    import json
    import os

    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return
    then = status.get("process")
    if status.get("state") != "running" or not isinstance(then, dict) or then.get("pid") == os.getpid():
        return
    if not isinstance(then.get("pid"), int) or not _alive(then):
        return  # that process is gone (killed, or the machine restarted): resuming is what it needs
    raise CnnlabError(f"{run_dir} is being trained by process {then['pid']} (status.json: running); "
                      f"let it finish or stop it (Ctrl-C) before resuming it")


def finish_run(run_dir: Path, cfg: TrainConfig, data: RunData, model: ImageClassifier,
               state, energy_before: dict | None = None) -> dict:
    """Evaluate the final model and write metrics.json, predictions, examples and meta.json."""
    device = next(model.parameters()).device
    if cfg.task == "classify":
        metrics = finish_classifier(run_dir, cfg, data, model, state, device)
    elif cfg.task == "generate":
        from cnnlab.tasks.generate import generation_files

        metrics = generation_files(run_dir, data, model) | {"n": len(data.eval)}
    else:
        result = state.final_eval or get_task(cfg.task).evaluate(model, data.eval, device,
                                                                   use_bf16(cfg, device))
        metrics = finish_task(run_dir, cfg.task, data, result, cfg.seed)
    stats = model_stats(model, data.train.image_shape)
    metrics.update(
        split=data.eval_split, model=cfg.model, dataset=cfg.dataset, epochs=state.epoch,
        params=stats.params, first_layer_params=stats.first_layer_params, macs=stats.macs,
        train_time_s=state.elapsed, train_images_per_s=state.images_seen / max(state.elapsed, 1e-9),
        train_steps_s=state.train_elapsed,  # the epochs' training alone, their validation excluded
        best_epoch=state.best_epoch, best_val_acc=state.best_acc,
        time_to_accuracy=time_to_accuracy(state.history),
        precision="bf16" if use_bf16(cfg, device) else "fp32",
        n_train=len(data.train), train_per_class=data.train.class_counts(),
        environment=environment(device),
    )
    metrics["energy"] = run_energy(cfg, state, len(data.eval), energy_before or {})
    if cfg.dp_epsilon:
        spent = [r["dp_epsilon"] for r in state.history if r.get("dp_epsilon") is not None]
        metrics["dp"] = {"epsilon_target": cfg.dp_epsilon, "epsilon_spent": spent[-1] if spent else None,
                         "delta": cfg.dp_delta, "clip": cfg.dp_clip, "accountant": "Opacus RDP",
                         "epsilon_per_epoch": spent}
    atomic_write_json(run_dir / "metrics.json", metrics)
    atomic_write_json(run_dir / "provenance.json", provenance.record(
        cfg.dataset, cfg.data_dir, data.train, data.eval) | {"code_version": code_version()})
    atomic_write_json(run_dir / "weights" / "meta.json", _meta(cfg, data, model, metrics))
    write_status(run_dir, "finished", "")
    return metrics


def finish_classifier(run_dir: Path, cfg: TrainConfig, data: RunData, model: ImageClassifier,
                      state, device: torch.device) -> dict:
    """A classifier's metrics, evaluation probabilities and example images."""
    if state.final_eval is not None:  # fit already evaluated the final model
        probs, loss = state.final_eval
    else:
        probs, loss = predict_probs(model, data.eval.x, tta=tta_level(cfg), device=device,
                                    channels_last=cfg.channels_last, y=data.eval.y,
                                    flip=data.flip_ok, bf16=use_bf16(cfg, device))
    y = data.eval.y.numpy()
    save_npz(run_dir / "predictions.npz", probs=probs.astype(np.float32), y=y)
    save_npz(run_dir / "examples.npz", **_examples(data, probs))
    if data.flipped is not None:  # the known answer for data valuation
        save_npz(run_dir / "label_noise.npz", flipped=data.flipped.numpy())
    return classification_report(probs, y, data.eval.classes, loss)


def run_energy(cfg: TrainConfig, state, n_val: int, before: dict) -> dict:
    """The run's energy (training, evaluation), per image, and its carbon: this process's
    phases, plus the training that earlier processes of a resumed run did (``resumed_kwh``)."""
    m = meter()
    phases = m.since(before)
    if not m.available:
        return {"method": m.method(), "phases": {}}
    evaluations = sum(r.get("val_acc") is not None for r in state.history) + 1
    train_j = 3.6e6 * (phases.get("training", {}).get("kwh", 0.0) + state.resumed_kwh)
    eval_j = 3.6e6 * phases.get("evaluation", {}).get("kwh", 0.0)
    kwh = sum(p["kwh"] for p in phases.values()) + state.resumed_kwh
    return {"method": m.method(), "phases": phases, "kwh": kwh, "resumed_kwh": state.resumed_kwh,
            "j_per_train_image": train_j / max(state.images_seen, 1),
            "j_per_prediction": eval_j / (evaluations * n_val),
            "carbon": carbon(kwh, cfg.country),
            "scope": "the whole training, a resumed run's earlier processes included (phases: "
                     "this process's)"}


def _normalization(model) -> dict:
    """The per-channel mean and std the model (or a task model's backbone) normalizes with."""
    kwargs = getattr(model, "build_kwargs", {})
    if kwargs.get("mean") is not None:
        return {"mean": list(kwargs["mean"]), "std": list(kwargs["std"])}
    return {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()}


def _meta(cfg: TrainConfig, data: RunData, model: ImageClassifier, metrics: dict) -> dict:
    return {
        "run_format": RUN_FORMAT, "model": cfg.model, "model_kwargs": model.build_kwargs,
        "classes": data.train.classes, "input_shape": list(data.train.image_shape),
        "normalization": _normalization(model),
        "flip_ok": data.flip_ok, "ema": bool(cfg.ema), "config": cfg.to_dict(),
        "code_version": code_version(), "dataset_source": data.source,
        "metrics": {k: metrics[k] for k in ("accuracy", "top5_accuracy", "macro_f1", "ece", "score",
                                            "score_name", "split") if k in metrics},
    } | ({} if cfg.task == "classify" else task_meta(cfg, data, model))


def _examples(data: RunData, probs: np.ndarray, per_class: int = 8, wrong: int = 24) -> dict:
    """Sample training images per class and the most confidently misclassified val images."""
    k = data.train.num_classes
    per_class = per_class if k <= 20 else 1
    y = data.train.y.numpy()
    sample_idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(min(k, 100))])
    pred = probs.argmax(1)
    yv = data.eval.y.numpy()
    wrong_idx = np.flatnonzero(pred != yv)
    wrong_idx = wrong_idx[np.argsort(-probs[wrong_idx].max(1))][:wrong]
    return {"samples": data.train.x[sample_idx].numpy(), "sample_labels": y[sample_idx],
            "wrong": data.eval.x[wrong_idx].numpy(), "wrong_labels": yv[wrong_idx],
            "wrong_probs": probs[wrong_idx].astype(np.float32), "wrong_index": wrong_idx}


__all__ = ["RUN_FORMAT", "Run", "finish_run", "load_npz", "load_run", "save_npz", "train_run"]
