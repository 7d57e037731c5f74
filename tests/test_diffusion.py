"""The diffusion model of task generate (diffusers' UNet, DDPM training, DDIM sampling), against
known answers: an oracle denoiser leads DDIM to the one training image, the great-circle path
keeps the noise's length, and a run trains, resumes exactly, samples and evaluates as a GAN's."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from cnnlab.cli import main
from cnnlab.config import TrainConfig
from conftest import assert_generator_resumes_exactly

pytest.importorskip("diffusers")
pytest.importorskip("torchmetrics")
pytest.importorskip("prdc")

from cnnlab.models.diffusion import Diffusion  # noqa: E402  (after the skip: needs diffusers)

TINY = ["--epochs", "2", "--limit-train", "400", "--batch-size", "50", "--eval-every", "1",
        "--sampling-steps", "3"]


@pytest.mark.parametrize("size, channels", [(8, 1), (28, 1), (32, 3)])
def test_a_diffusion_model_draws_images_of_the_data_size_and_the_same_ones_for_a_seed(size, channels):
    torch.manual_seed(0)
    model = Diffusion(in_channels=channels, image_size=size, num_classes=4, conditional=True,
                      width=8, sampling_steps=2)
    a, b = model.sample(5, seed=1), model.sample(5, seed=1)
    assert a.dtype == torch.uint8 and a.shape == (5, channels, size, size)
    assert torch.equal(a, b) and not torch.equal(a, model.sample(5, seed=2))
    assert model.latent_dim == channels * model.side**2  # the noise is an image of the padded side


def test_ddim_with_an_oracle_denoiser_ends_at_the_training_image():
    """If the data is one image x0, the best noise prediction at time t is exactly
    (x_t - sqrt(a_t) x0) / sqrt(1 - a_t); DDIM driven by it must land on x0 from any noise."""
    torch.manual_seed(0)
    model = Diffusion(in_channels=1, image_size=6, num_classes=2, width=8, sampling_steps=10)
    x0 = torch.rand(1, 1, 6, 6) * 2 - 1
    target = model._pad(x0)
    abar = model.schedule.alphas_cumprod

    def oracle(x_t, t=None, y=None):
        a = abar[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * target) / (1 - a).sqrt()

    model.forward = oracle
    out = model.generate(model.noise(3, torch.Generator().manual_seed(1)))
    assert out.shape == (3, 1, 6, 6)
    assert torch.allclose(out, ((x0 + 1) / 2).expand(3, -1, -1, -1), atol=1e-4)


def test_the_interpolation_follows_a_great_circle_and_keeps_the_length_of_noise():
    model = Diffusion(in_channels=1, image_size=8, num_classes=2, width=8)
    a, b = torch.zeros(1, 64), torch.zeros(1, 64)
    a[0, 0], b[0, 1] = 8.0, 8.0  # orthogonal, as two high-dimensional noise vectors nearly are
    t = torch.tensor([[0.0], [0.5], [1.0]])
    path = model.between(a, b, t)
    assert torch.allclose(path[0], a[0]) and torch.allclose(path[2], b[0], atol=1e-5)
    assert path[1].norm() == pytest.approx(8.0, rel=1e-5)  # a straight line's midpoint: 8 / sqrt(2)
    assert torch.allclose(path[1], (a[0] + b[0]) / math.sqrt(2))  # halfway round the quarter circle


@pytest.mark.parametrize("steps", [1, 3, 25])
def test_ddim_starts_from_pure_noise_whatever_the_number_of_steps(steps):
    """The first step must be the schedule's last time (999), where x_t holds no image: the
    default "leading" spacing starts 25 steps at 960 and one step at 0."""
    model = Diffusion(in_channels=1, image_size=8, num_classes=2, width=8, sampling_steps=steps)
    model.sampler.set_timesteps(steps)
    times = model.sampler.timesteps.tolist()
    assert times[0] == 999 and len(times) == steps and times == sorted(times, reverse=True)


def test_the_ema_of_a_diffusion_model_warms_up_and_a_gans_does_not():
    from cnnlab.models.gan import GAN
    from cnnlab.training.trainer import make_ema

    for model, first_weight in ((Diffusion(in_channels=1, image_size=8, width=8), 1 - 2 / 11),
                                (GAN(in_channels=1, image_size=8), 1 - 0.999)):
        ema = make_ema(model, 0.999)
        p = next(model.parameters())
        ema.update_parameters(model)  # the first update copies the weights
        start = p.detach().clone()
        with torch.no_grad():
            p.add_(1.0)
        ema.update_parameters(model)  # the second moves (1 - decay) of the way: 9/11 warming up
        got = next(ema.module.parameters())
        assert torch.allclose(got, start + first_weight, atol=1e-6), type(model).__name__


def test_one_training_step_moves_the_unet_and_returns_the_denoising_loss():
    torch.manual_seed(0)
    model = Diffusion(in_channels=1, image_size=8, num_classes=10, conditional=True, width=8)
    opt = torch.optim.AdamW(model.optimizer_groups()[0]["params"], lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss, parts = model.train_step(torch.rand(4, 1, 8, 8), torch.arange(4), opt, torch.autocast(
        "cpu", enabled=False))
    assert torch.isfinite(loss) and 0.1 < float(loss) < 10 and parts == {}  # about 1 at the start
    assert any(not torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    from cnnlab.run import train_run

    out = tmp_path_factory.mktemp("judge")
    return train_run(TrainConfig(dataset="digits", epochs=2, out_dir=str(out), name="judge"),
                     progress=False)


def test_generate_train_head_ddpm_writes_a_run_that_resumes_exactly_samples_and_evaluates(
        tmp_path, capsys, judge, monkeypatch):
    # 2,000 x 25 UNet passes take 20 s of a test; more than the 1,000 scored keeps the histogram's own n
    monkeypatch.setattr(Diffusion, "final_samples", 1200)
    out = tmp_path / "runs"
    assert main(["generate", "train", "--name", "d", "--head", "ddpm-conditional", "--dataset",
                 "digits", "--out-dir", str(out), "--judge", str(judge.path), *TINY]) == 0
    run = out / "d"
    cfg = TrainConfig.load(run / "config.yaml")
    assert (cfg.lr, cfg.momentum, cfg.r1_gamma) == (1e-3, 0.9, 0.0)  # the diffusion defaults
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["parameters"]["denoiser"] > 0 and "g_params" not in metrics
    assert metrics["score_name"] == "domain FID" and metrics["fid_floor"] < metrics["score"]
    result = json.loads((run / "generation.json").read_text())
    assert result["labels"]["n"] == Diffusion.final_samples and "copies" in result
    rows = list(csv.DictReader((run / "results.csv").read_text().splitlines()))
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])  # it learns
    html = (run / "report.html").read_text()
    assert "Denoising loss" in html or "denoising loss" in html
    assert_generator_resumes_exactly(run)  # Ctrl-C after epoch 1, then --resume
    capsys.readouterr()
    assert main(["generate", "sample", str(run), "-n", "4", "--label", "3",
                 "--out", str(tmp_path / "s.png")]) == 0
    assert main(["generate", "eval", str(run), "-n", "50"]) == 0
    assert "domain FID" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["generate", "train", "--head", "ddpm", "--r1-gamma", "1"], "trains a diffusion model"),
    (["generate", "train", "--head", "ddpm", "--spectral-norm"], "trains a diffusion model"),
    (["generate", "train", "--sampling-steps", "10"], "sampling_steps applies to the diffusion"),
    (["generate", "train", "--head", "ddpm", "--aux-weight", "1"], "trains a diffusion model"),
    (["generate", "train", "--head", "ddpm", "--latent-dim", "8"], "trains a diffusion model"),
    (["generate", "train", "--head", "ddpm", "--model-kwargs", "{width: 12}"], "a multiple of 8"),
])
def test_gan_only_settings_on_a_diffusion_head_get_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_generate_train_help_names_the_diffusion_defaults_where_they_differ(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps (and splits words at hyphens)
    with pytest.raises(SystemExit) as stop:
        main(["generate", "train", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "(default: 0.0002; with --head ddpm or ddpm-conditional: 0.001)" in text
    assert "(default: 0.99; with --head ddpm or ddpm-conditional: 0.995)" in text
    r1_every = next(line for line in text.splitlines() if line.lstrip().startswith("--r1-every"))
    assert r1_every.endswith("(default: 16)")  # R1 is refused on a diffusion head: no second default
