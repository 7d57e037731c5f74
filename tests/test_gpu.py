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
