"""CUDA checks: skipped without a GPU (CI has none)."""

import pytest
import torch

import cnnlab

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_training_on_cuda_with_bf16_autocast(tmp_path):
    cfg = cnnlab.TrainConfig(model="resnet20", epochs=2, device="cuda", out_dir=str(tmp_path),
                             name="gpu", crop_padding=1)
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    assert run.metrics["accuracy"] > 0.5 and run.metrics["environment"]["gpu"]


def test_a_nan_loss_on_cuda_stops_at_the_end_of_its_epoch_with_the_step(tmp_path):
    """On CUDA the finite-loss check is read once per epoch (no wait per step); it still names
    the first bad step, and no checkpoint of that epoch is written."""
    cfg = cnnlab.TrainConfig(model="mlp", epochs=2, lr=1e6, device="cuda", out_dir=str(tmp_path),
                             name="nan")
    with pytest.raises(cnnlab.CnnlabError, match=r"loss became (nan|inf) at epoch 1, step \d+"):
        cnnlab.train(cfg, log=lambda s: None, report=False)
    assert not (tmp_path / "nan" / "weights" / "last.safetensors").exists()
