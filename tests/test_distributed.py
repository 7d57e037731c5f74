"""Two gloo processes on CPU, rendezvous through a file (no ports), against one process."""

import csv
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from cnnlab.config import TrainConfig
from cnnlab.data import prepare_data
from cnnlab.errors import CnnlabError
from cnnlab.training.trainer import fit


def config(tmp: str, **kw) -> TrainConfig:
    base = dict(dataset="digits", model="mlp", epochs=2, batch_size=64, limit_train=512,
                crop_padding=1, model_kwargs={"dropout": 0.0}, out_dir=tmp, name="ddp",
                precision="fp32")  # equal to 1e-5: bf16 rounding depends on the batch split
    return TrainConfig(**(base | kw))


def _train(tmp: str, tag: str) -> None:
    data = prepare_data("digits", "", 0, 0, seed=0, limit_train=512)
    model, _ = fit(config(tmp), data, Path(tmp) / tag, log=lambda s: None, progress=False)
    rank = dist.get_rank() if dist.is_initialized() else 0
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{tmp}/{tag}{rank}.st")


def _join(tmp: str, rank: int):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=2)


def _worker(rank: int, tmp: str) -> None:
    _join(tmp, rank)
    try:
        _train(tmp, "ddp")
    finally:
        dist.destroy_process_group()


def train_losses(folder: Path) -> list[float]:
    with open(folder / "results.csv") as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f)]


def test_two_gloo_ranks_end_identical_and_match_one_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    a, b = load_file(tmp_path / "ddp0.st"), load_file(tmp_path / "ddp1.st")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    _train(str(tmp_path), "single")
    single = load_file(tmp_path / "single0.st")
    for k in a:
        assert torch.allclose(a[k], single[k], atol=1e-5), k
    assert (tmp_path / "ddp" / "weights" / "last.safetensors").is_file()  # rank 0 wrote it
    # The logged training loss is the mean over both ranks' images, as in one process.
    ddp, one = train_losses(tmp_path / "ddp"), train_losses(tmp_path / "single")
    assert ddp == pytest.approx(one, abs=1e-5)


def _train_run_worker(rank: int, tmp: str, kw: dict) -> None:
    from cnnlab.run import train_run

    _join(tmp, rank)
    try:
        run = train_run(config(tmp, **kw), log=lambda s: None, progress=False)
        Path(f"{tmp}/rank{rank}.txt").write_text("none" if run is None else str(run.path))
    except CnnlabError as e:
        Path(f"{tmp}/rank{rank}.txt").write_text(f"error: {e}")
    finally:
        dist.destroy_process_group()


def spawn(tmp: Path, kw: dict, seconds: float = 120) -> list[str]:
    """Start two ranks of train_run; fail (not hang) if they do not end in time."""
    for f in ("store", "rank0.txt", "rank1.txt"):
        (tmp / f).unlink(missing_ok=True)
    ctx = mp.start_processes(_train_run_worker, args=(str(tmp), kw), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.time() + seconds
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the ranks hung")
    return [(tmp / f"rank{r}.txt").read_text() for r in range(2)]


def test_a_batchnorm_model_trains_through_train_run_and_rank_0_alone_writes(tmp_path):
    kw = dict(model="resnet20", model_kwargs={}, epochs=1, limit_train=256, name="bn")
    rank0, rank1 = spawn(tmp_path, kw)
    assert rank0 == str(tmp_path / "bn") and rank1 == "none"
    for f in ("metrics.json", "weights/meta.json", "status.json", "results.csv"):
        assert (tmp_path / "bn" / f).is_file(), f
    # A failure on rank 0 before the barrier (the folder exists) ends both ranks with its error.
    rank0, rank1 = spawn(tmp_path, kw)
    assert rank0.startswith("error: run folder") and rank1 == rank0
    # SyncBatchNorm runs on GPUs only: on CPU both ranks say so.
    rank0, rank1 = spawn(tmp_path, kw | {"name": "sync", "sync_bn": True})
    assert "sync_bn needs CUDA" in rank0 and "sync_bn needs CUDA" in rank1


@pytest.mark.parametrize("head", ["centernet", "fcos"])
def test_a_detector_trains_under_ddp(tmp_path, head):
    """Dense tasks share the trainer's DDP path; FCOS takes its targets through DDP's forward."""
    import json

    kw = dict(task="detect", head=head, dataset="scenes:n=32", model="resnet20",
              model_kwargs={"width": 4}, epochs=1, batch_size=16, limit_train=0, name="det")
    rank0, rank1 = spawn(tmp_path, kw)
    assert rank0 == str(tmp_path / "det") and rank1 == "none"
    metrics = json.loads((tmp_path / "det" / "metrics.json").read_text())
    assert metrics["score_name"] == "mAP@0.5:0.95" and 0 <= metrics["map"] <= 1


def _gan_worker(rank: int, tmp: str, judge: str) -> None:
    _join(tmp, rank)
    try:
        cfg = config(tmp, task="generate", head="conditional", judge=judge, model_kwargs={"width": 8},
                     optimizer="adamw", lr=2e-3, momentum=0.5, weight_decay=0.0, epochs=1,
                     eval_every=1, flip=False, crop_padding=0, name="gan", limit_train=256)
        data = prepare_data("digits", "", 0, 0, seed=0, limit_train=256)
        model, _ = fit(cfg, data, Path(tmp) / "gan", log=lambda s: None, progress=False)
        params = {k: v.detach().contiguous() for k, v in model.named_parameters()}
        save_file(params, f"{tmp}/gan{rank}.st")
    finally:
        dist.destroy_process_group()


def test_a_gan_trains_under_ddp_with_its_own_gradient_average(tmp_path):
    """A GAN steps twice around two networks, past DDP's one forward: it averages its own
    gradients, so both ranks end with the same weights (BatchNorm statistics stay per rank)."""
    from cnnlab.run import train_run

    judge = train_run(TrainConfig(dataset="digits", epochs=1, limit_train=256, out_dir=str(tmp_path),
                                  name="judge"), log=lambda s: None, progress=False)
    mp.spawn(_gan_worker, args=(str(tmp_path), str(judge.path)), nprocs=2, join=True)
    a, b = load_file(tmp_path / "gan0.st"), load_file(tmp_path / "gan1.st")
    assert set(a) == set(b) and any("generator" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with open(tmp_path / "gan" / "results.csv") as f:
        row = list(csv.DictReader(f))[-1]
    assert float(row["d_loss"]) > 0 and float(row["val_score"]) >= 0  # rank 0 wrote the epoch
