"""Two gloo processes on CPU, rendezvous through a file (no ports), against one process."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from cnnlab.config import TrainConfig
from cnnlab.data import prepare_data
from cnnlab.training.trainer import fit


def config(tmp: str) -> TrainConfig:
    return TrainConfig(dataset="digits", model="mlp", epochs=2, batch_size=64, limit_train=512,
                       crop_padding=1, model_kwargs={"dropout": 0.0}, out_dir=tmp, name="ddp")


def _train(tmp: str, tag: str) -> None:
    data = prepare_data("digits", "", 0, 0, seed=0, limit_train=512)
    model, _ = fit(config(tmp), data, __import__("pathlib").Path(tmp) / tag, log=lambda s: None,
                   progress=False)
    rank = dist.get_rank() if dist.is_initialized() else 0
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{tmp}/{tag}{rank}.st")


def _worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=2)
    try:
        _train(tmp, "ddp")
    finally:
        dist.destroy_process_group()


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
