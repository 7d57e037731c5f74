"""GANs as a task of the one trainer, and the measures of generated images, against known
answers: identical sets score 0, a generator that copies is caught, a collapsed one flagged."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.config import TrainConfig
from cnnlab.evaluate import generation as G
from cnnlab.models.gan import GAN
from conftest import assert_generator_resumes_exactly

pytest.importorskip("torchmetrics")
pytest.importorskip("prdc")

TINY = ["--epochs", "2", "--limit-train", "400", "--batch-size", "50", "--eval-every", "1"]


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    """A LeNet-5 judge on the digits (2 epochs): enough to tell the classes apart."""
    from cnnlab.run import train_run

    out = tmp_path_factory.mktemp("judge")
    return train_run(TrainConfig(dataset="digits", epochs=2, out_dir=str(out), name="judge"),
                     progress=False)


@pytest.mark.parametrize("size", [7, 8, 15, 28, 32])  # 7 and 15: one short of 8 and 16 (probing)
@pytest.mark.parametrize("conditional", [False, True])
def test_a_gan_makes_images_of_the_data_size_and_the_same_ones_for_a_seed(size, conditional):
    torch.manual_seed(0)
    gan = GAN(in_channels=3 if size == 32 else 1, image_size=size, num_classes=4, conditional=conditional)
    a, b = gan.sample(6, seed=1), gan.sample(6, seed=1)
    assert a.dtype == torch.uint8 and a.shape == (6, 3 if size == 32 else 1, size, size)
    assert torch.equal(a, b) and not torch.equal(a, gan.sample(6, seed=2))
    assert gan(a.float() / 255).shape == (6,)  # the discriminator's logits


def test_each_half_of_a_step_moves_only_its_own_network():
    torch.manual_seed(0)
    gan = GAN(in_channels=1, image_size=8, num_classes=3, conditional=True)
    opt = torch.optim.Adam(gan.optimizer_groups(), lr=1e-3)
    g0 = [p.detach().clone() for p in gan.generator.parameters()]
    d0 = [p.detach().clone() for p in gan.discriminator.parameters()]
    real = torch.rand(16, 1, 8, 8)
    y = torch.randint(3, (16,))
    loss, parts = gan.train_step(real, y, opt, contextlib.nullcontext())
    assert set(parts) == {"d_loss", "g_loss", "d_real", "d_fake"} and torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(g0, gan.generator.parameters(), strict=True)
               if a.numel() > 1)
    assert any(not torch.equal(a, b) for a, b in zip(d0, gan.discriminator.parameters(), strict=True))
    # the discriminator is trainable again after the generator's step froze it
    assert all(p.requires_grad for p in gan.discriminator.parameters())
    # Adam saw the discriminator's parameters once (its step), the generator's once (its step)
    steps = {int(opt.state[p]["step"]) for p in gan.parameters() if p in opt.state}
    assert steps == {1}


@pytest.mark.parametrize("loss", ["nonsaturating", "minimax", "hinge"])
def test_every_loss_and_stabiliser_trains_one_finite_step(loss):
    torch.manual_seed(0)
    gan = GAN(in_channels=1, image_size=8, num_classes=3, loss=loss, spectral_norm=True, r1_gamma=1.0)
    opt = torch.optim.Adam(gan.optimizer_groups(d_lr_scale=2.0), lr=1e-3)
    total, _ = gan.train_step(torch.rand(8, 1, 8, 8), torch.zeros(8).long(), opt,
                              contextlib.nullcontext())
    assert torch.isfinite(total) and opt.param_groups[1]["lr_scale"] == 2.0


def _convolutions(module: torch.nn.Module, kernel: int) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (kernel, kernel) for m in module.modules())


@pytest.mark.parametrize("size, sides", [(8, 1), (32, 3)])
def test_a_deeper_discriminator_adds_3x3_convolutions_at_each_side_it_halves(size, sides):
    torch.manual_seed(0)
    for depth in (1, 3):
        gan = GAN(in_channels=1, image_size=size, num_classes=3, conditional=True, d_depth=depth)
        d = gan.discriminator
        assert _convolutions(d, 4) == sides and _convolutions(d, 3) == 1 + (depth - 1) * sides
        opt = torch.optim.Adam(gan.optimizer_groups(), lr=1e-3)
        total, _ = gan.train_step(torch.rand(8, 1, size, size), torch.zeros(8).long(), opt,
                                  contextlib.nullcontext())
        assert torch.isfinite(total)


def test_a_run_with_a_deeper_discriminator_samples_from_its_folder(tmp_path, judge):
    from cnnlab.run import Run

    out = tmp_path / "runs"
    assert main(["generate", "train", "--name", "deep", "--dataset", "digits", "--out-dir", str(out),
                 "--judge", str(judge.path), "--model-kwargs", "{d_depth: 2}",
                 *TINY[:1], "1", *TINY[2:]]) == 0
    model = Run(out / "deep").load_model()
    assert _convolutions(model.discriminator, 3) == 2  # 8 px: one side halved, one more 3x3
    assert main(["generate", "sample", str(out / "deep"), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0


def test_lazy_r1_pays_every_kth_step_k_times_as_strong():
    """R1 every 2 steps at gamma 1 is R1 at gamma 2 on steps 0 and 2 and no penalty on step 1
    (learning rate 0: the three GANs keep the same weights, so only the penalty differs)."""
    x, y = torch.rand(8, 1, 8, 8), torch.zeros(8).long()

    def gan(gamma: float, every: int) -> GAN:
        torch.manual_seed(0)
        return GAN(in_channels=1, image_size=8, num_classes=3, r1_gamma=gamma, r1_every=every)

    lazy, always, never = gan(1.0, 2), gan(2.0, 1), gan(0.0, 1)
    opts = {id(g): torch.optim.SGD(g.optimizer_groups(), lr=0.0) for g in (lazy, always, never)}

    def d_loss(g: GAN) -> float:
        torch.manual_seed(1)  # the same noise and labels for all three
        return float(g.train_step(x, y, opts[id(g)], contextlib.nullcontext())[1]["d_loss"])

    for step in range(3):
        a, b, c = d_loss(lazy), d_loss(always), d_loss(never)
        assert b > c  # the penalty is positive
        assert a == pytest.approx(b if step % 2 == 0 else c, rel=1e-6)
    assert int(lazy.d_steps) == 3


def test_weights_saved_before_the_r1_step_counter_still_load():
    gan = GAN(in_channels=1, image_size=8, num_classes=3, r1_gamma=1.0, r1_every=4)
    gan.d_steps.fill_(5)
    old = {k: v for k, v in gan.state_dict().items() if k != "d_steps"}
    fresh = GAN(in_channels=1, image_size=8, num_classes=3, r1_gamma=1.0, r1_every=4)
    fresh.load_state_dict(old)  # strict: every other key must match
    assert int(fresh.d_steps) == 0
    fresh.load_state_dict(gan.state_dict())
    assert int(fresh.d_steps) == 5


def test_the_auxiliary_classifier_learns_real_classes_and_pulls_the_generator_to_them():
    """AC-GAN: the discriminator's class head is trained on real images only; the generator's
    loss gains the cross-entropy of its images against the classes it was asked for."""
    torch.manual_seed(0)
    gan = GAN(in_channels=1, image_size=8, num_classes=3, conditional=True, aux_weight=1.0)
    head = gan.discriminator.classify
    assert head is not None and head.out_features == 3
    assert GAN(in_channels=1, image_size=8, num_classes=3, aux_weight=1.0).discriminator.classify is None
    opt = torch.optim.Adam(gan.optimizer_groups(), lr=1e-2)
    real = torch.rand(32, 1, 8, 8) * 0.2 + torch.arange(3).repeat_interleave(11)[:32].view(-1, 1, 1, 1) * 0.4
    y = torch.arange(3).repeat_interleave(11)[:32]
    first = None
    for _ in range(30):
        gan.train_step(real, y, opt, contextlib.nullcontext())
        with torch.no_grad():
            ce = torch.nn.functional.cross_entropy(gan.discriminator.scores(real * 2 - 1, y)[1], y)
        first = ce if first is None else first
    assert ce < 0.5 * first  # the class head learnt the three brightness classes


def test_fid_matches_a_hand_computation_and_identical_sets_score_zero():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(loc=0.5, scale=1.5, size=(400, 6))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real)
    got = G.fid_kid(torch.from_numpy(a), torch.from_numpy(b))
    assert got["fid"] == pytest.approx(expected, rel=1e-3)
    assert abs(G.fid_kid(torch.from_numpy(a), torch.from_numpy(a))["fid"]) < 1e-6
    # KID's subsets are random: the same sets give the same KID (they came from torch's unseeded
    # global generator: probing saw -0.58, -0.51, -0.56 for one run), and the stream is left alone
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    again = G.fid_kid(torch.from_numpy(a), torch.from_numpy(b))
    assert again["kid"] == got["kid"] and again["kid_std"] == got["kid_std"]
    assert torch.equal(torch.rand(1), before)
    alike = G.fid_kid(torch.from_numpy(a), torch.from_numpy(rng.normal(size=(400, 6))))
    assert abs(alike["kid"]) < 0.05 < 0.5 < got["kid"]  # KID: unbiased, about 0 for one distribution
    assert G.prdc(torch.from_numpy(a), torch.from_numpy(a))["precision"] == 1.0


def test_spoilt_real_images_blur_by_a_box_and_add_seeded_noise():
    flat = torch.full((2, 1, 6, 6), 100, dtype=torch.uint8)
    assert torch.equal(G.spoilt(flat, "blur"), flat)  # a box blur leaves a flat image alone
    edge = torch.zeros(1, 1, 3, 3, dtype=torch.uint8)
    edge[..., 1] = 90  # one bright column: the box spreads it a third each way
    assert G.spoilt(edge, "blur")[0, 0, 1].tolist() == [30, 30, 30]
    noisy = G.spoilt(flat, "noise")
    assert torch.equal(noisy, G.spoilt(flat, "noise")) and not torch.equal(noisy, flat)
    assert (noisy.float() - 100).std() == pytest.approx(12, rel=0.2)
    with pytest.raises(ValueError, match="blur or noise"):
        G.spoilt(flat, "jpeg")


def test_the_yardsticks_put_spoilt_real_images_above_the_floor(judge):
    data = judge.data()
    r = G.score(judge.load_model(), data.eval.x[:100], data.train.x, data.eval.x, 10, copies=False)
    assert set(r["yardsticks"]) == set(G.YARDSTICKS)
    assert min(r["yardsticks"].values()) > r["floor"]["fid"]


def test_the_copy_statistic_catches_copies_and_stays_near_five_percent_otherwise():
    torch.manual_seed(0)
    train, held, fresh = torch.randn(600, 8), torch.randn(400, 8), torch.randn(400, 8)
    copied = G.memorisation(train, held, train[:400] + 1e-3 * torch.randn(400, 8))
    honest = G.memorisation(train, held, fresh)
    assert copied["copy_share"] > 0.95 and copied["ci"][0] > honest["ci"][1]
    assert honest["ci"][0] <= 0.05 + 0.03 and honest["copy_share"] < 0.12


def test_a_histogram_of_one_class_is_flagged_as_collapse_and_real_labels_are_not():
    real = torch.arange(1000) % 10
    assert not G.label_histogram(real, real, 10)["collapsed"]
    one = G.label_histogram(torch.full((1000,), 3), real, 10)
    assert one["collapsed"] and one["classes_covered"] == pytest.approx(0.1)
    half = G.label_histogram(torch.arange(1000) % 5, real, 10)
    assert half["collapsed"] and half["classes_covered"] == 0.5


def test_a_deliberately_collapsed_generator_is_flagged_by_the_task(judge):
    from cnnlab.tasks.generate import GenerateTask

    torch.manual_seed(0)
    gan = GAN(in_channels=1, image_size=8, num_classes=10)
    with torch.no_grad():  # every noise vector gives one image: the generator's last layer ignores it
        gan.generator.to_image.weight.zero_()
        gan.generator.to_image.bias.fill_(0.3)
    gan.judge_path = str(judge.path)
    result = GenerateTask().evaluate(gan, judge.data().eval, torch.device("cpu"))
    assert result["classes_covered"] <= 0.2 and result["score"] > 1.0
    assert result["snapshot"].shape == (8 * 9 + 1, 8 * 9 + 1, 1)


def test_generate_train_writes_a_run_that_resumes_exactly_samples_and_evaluates(tmp_path, capsys, judge):
    out = tmp_path / "runs"
    common = ["--dataset", "digits", "--out-dir", str(out), "--judge", str(judge.path), *TINY]
    assert main(["generate", "train", "--name", "g", "--head", "conditional", *common]) == 0
    run = out / "g"
    for name in ("generation.json", "samples.npz", "report.html", "snapshots/epoch-002.png",
                 "weights/last.safetensors"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["score_name"] == "domain FID" and metrics["fid_floor"] < metrics["score"]
    result = json.loads((run / "generation.json").read_text())
    assert result["labels"]["n"] == 10_000 and "copies" in result and 0 <= result["label_agreement"] <= 1
    assert result["label_agreement_n"] == 1000  # its own count (FID's n is half the held-out images)
    html = (run / "report.html").read_text()
    assert "Did it copy its training images?" in html and "not comparable with the Inception" in html
    assert_generator_resumes_exactly(run)  # Ctrl-C after epoch 1, then --resume
    capsys.readouterr()
    assert main(["generate", "sample", str(run), "-n", "12", "--label", "7",
                 "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["generate", "sample", str(run), "-n", "12", "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as f:  # each image with the class it was asked for (probing)
        assert f["x"].shape[0] == 12 and f["y"].tolist() == [k % 10 for k in range(12)]
        assert f["classes"].tolist()[7] == "7"
    assert main(["generate", "eval", str(run), "--out", str(tmp_path / "e.json")]) == 0
    said = capsys.readouterr().out
    assert "domain FID" in said and "real-data floor" in said and "near-copies" in said
    assert "the judge reads the class asked for in" in said  # conditional: as training said (probing)
    assert 0 <= json.loads((tmp_path / "e.json").read_text())["label_agreement"] <= 1


def test_generate_train_trains_its_own_judge_when_none_is_given(tmp_path):
    out = tmp_path / "runs"
    assert main(["generate", "train", "--name", "g", "--out-dir", str(out), *TINY]) == 0
    assert (out / "g-judge" / "weights" / "meta.json").is_file()
    assert TrainConfig.load(out / "g" / "config.yaml").judge == str(out / "g-judge")


@pytest.mark.parametrize("argv, message", [
    (["train", "--task", "generate", "--epochs", "1"], "needs a judge"),
    (["train", "--gan-loss", "hinge", "--epochs", "1"], "apply to task generate only"),
    (["generate", "train", "--gan-loss", "wasserstein"], "gan_loss must be one of"),
    (["generate", "train", "--aux-weight", "1"], "aux_weight (AC-GAN) needs labels to ask for"),
    (["generate", "train", "--pretrained", "x.pth"], "unrecognized arguments"),
])
def test_bad_generate_commands_get_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_sample_and_eval_refuse_what_they_cannot_do(tmp_path, capsys, judge, monkeypatch):
    assert main(["generate", "sample", str(judge.path)]) == 2
    assert "is a classify run" in capsys.readouterr().err
    out = tmp_path / "runs"
    assert main(["generate", "train", "--name", "g", "--out-dir", str(out), "--judge", str(judge.path),
                 *TINY]) == 0
    capsys.readouterr()
    assert main(["generate", "sample", str(out / "g"), "--label", "3"]) == 2
    assert "unconditional generator" in capsys.readouterr().err
    assert main(["generate", "eval", str(out / "g"), "--fid-weights", str(tmp_path / "none.pth")]) == 2
    err = capsys.readouterr().err
    assert "pt_inception-2015-12-05-6726825d.pth" in err and err.count("\n") == 1
    damaged = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    damaged.write_bytes(b"not the weights")
    import cnnlab.evaluate.generation as G

    monkeypatch.setattr(G, "score", lambda *a, **k: pytest.fail("scored before the file was read"))
    assert main(["generate", "eval", str(out / "g"), "--fid-weights", str(damaged)]) == 2
    assert "SHA-256" in capsys.readouterr().err  # found before any sampling, not after


def test_the_generation_analysis_measures_a_gan_and_a_detector_of_its_images(tmp_path, judge,
                                                                              monkeypatch):
    """On the judge run (the digits): a GAN, an unseen generator, the real-or-generated detector,
    a GAN on few images, a diffusion model beside the GAN; the report section and the claims
    read the result."""
    import shutil

    from cnnlab.analysis import run_analysis
    from cnnlab.analysis.generation import claims
    from cnnlab.models.diffusion import Diffusion
    from cnnlab.report import render_report
    from cnnlab.run import Run

    monkeypatch.setattr(Diffusion, "final_samples", 200)  # 2,000 x 25 UNet passes: 20 s of a test

    run = Run(shutil.copytree(judge.path, tmp_path / "main"))
    res = run_analysis(run, "generation", log=lambda s: None, epochs=4, unseen_epochs=2,
                       detector_samples=300, detector_epochs=2, few=50, few_epochs=4,
                       diffusion_epochs=1)
    d = res["detector"]
    assert d["n_train"] == 600 and 0 <= d["same"]["low"] <= d["same"]["estimate"] <= d["same"]["high"] <= 1
    assert res["gan"]["head"] == "conditional" and res["unseen"]["head"] == "dcgan"
    assert res["few"]["n_train"] == 50 and Run(run.path / res["subruns"]["gan-few"]).metrics["n_train"] == 50
    diff = res["diffusion"]
    assert diff["head"] == "ddpm-conditional" and diff["epochs"] == 1 and diff["g_params"] is None
    assert diff["sample_s"] > 0 and res["gan"]["sample_s"] > 0
    said = claims(res)
    assert [c.claim.split()[0] for c in said] == ["A", "Its", "A", "Such", "A"]
    html = render_report(run).read_text()
    assert "Can a CNN tell real images from generated ones?" in html and "Few images" in html
    assert "GAN or diffusion, on this budget" in html


def test_the_claims_follow_their_intervals():
    from cnnlab.analysis.generation import claims

    def result(same=(0.9, 0.02), gap=(-0.3, 0.05), copies=(0.04, 0.06)):
        ci = lambda e, w: {"estimate": e, "low": e - w, "high": e + w}  # noqa: E731
        g = {"classes_covered": 1.0, "collapsed": False, "label_agreement": None, "fid": 1.0, "floor": 0.5,
             "copies": {"copy_share": sum(copies) / 2, "ci": list(copies), "expected": 0.05}}
        return {"gan": g, "detector": {"same": ci(*same), "caught_gap": ci(*gap), "generated_missed": 0.1,
                                       "words": ""}}

    assert claims(result())[3].holds is True  # the unseen generator's images are caught less often
    assert claims(result(gap=(-0.03, 0.05)))[3].holds is None  # within noise
    assert claims(result(gap=(0.2, 0.05)))[3].holds is False  # caught more often
    assert claims(result(same=(0.52, 0.03)))[2].holds is None  # the CI reaches chance
    assert claims(result(same=(0.45, 0.03)))[2].holds is False
    assert claims(result(copies=(0.092, 0.131)))[1].holds is None  # 11% near-copies: not shown new
    assert claims(result(copies=(0.11, 0.15)))[1].holds is False
    assert claims(result(copies=(0.02, 0.09)))[1].holds is True

    def agreeing(share: float, n: int):
        r = result()
        r["gan"] |= {"label_agreement": share, "label_agreement_n": n, "n": 10}
        return claims(r)[0].holds

    assert agreeing(0.85, 2000) is True  # Wilson 83.4-86.5%
    assert agreeing(0.85, 100) is None  # 76.7-90.7%: the bar inside
    assert agreeing(0.7, 2000) is False


def inception_file(folder, stem: str = "pt_inception-2015-12-05") -> str:
    """A weights file in the layout torch-fidelity reads (random weights), named as published:
    STEM-<first sha256 digits>.pth."""
    import hashlib
    from unittest import mock

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
            mock.patch("torch_fidelity.feature_extractor_inceptionv3.torch.load", lambda *a, **k: {}):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="x")
    tmp = folder / "w.pth"
    torch.save(net.state_dict(), tmp)
    path = folder / f"{stem}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(path)
    return str(path)


def test_published_fid_features_come_from_the_users_file_read_safely(tmp_path, capsys):
    pytest.importorskip("torch_fidelity")
    import pickle

    path = inception_file(tmp_path)
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    f = G.inception_features(x, path)
    assert f.shape == (3, 2048) and torch.isfinite(f).all()

    class Evil:
        def __reduce__(self):
            return (print, ("this ran",))

    evil = tmp_path / "pt_inception-2015-12-05-deadbeef.pth"
    evil.write_bytes(pickle.dumps({"fc.weight": Evil()}, protocol=2))
    with pytest.raises(CnnlabError, match="--fid-weights .*SHA-256"):
        G.inception_features(x, evil)
    unhashed = tmp_path / "inception.pth"
    unhashed.write_bytes(pickle.dumps({"fc.weight": Evil()}, protocol=2))
    with pytest.raises(CnnlabError, match="--fid-weights .*not a plain file of tensors"):
        G.inception_features(x, unhashed)
    assert "this ran" not in capsys.readouterr().out
    other = tmp_path / "other"
    other.mkdir()
    torch.save({"a": torch.zeros(3)}, other / "w.pth")  # tensors, but not Inception's (probing)
    with pytest.raises(CnnlabError, match="--fid-weights .*not those of torch-fidelity's Inception-v3"):
        G.inception_features(x, other / "w.pth")


def test_generate_eval_adds_the_published_protocol_from_the_file(tmp_path, capsys, judge):
    pytest.importorskip("torch_fidelity")
    out = tmp_path / "runs"
    assert main(["generate", "train", "--name", "g", "--out-dir", str(out), "--judge", str(judge.path),
                 *TINY]) == 0
    path = inception_file(tmp_path)
    capsys.readouterr()
    assert main(["generate", "eval", str(out / "g"), "-n", "12", "--fid-weights", path,
                 "--out", str(tmp_path / "e.json")]) == 0
    said = capsys.readouterr().out
    assert "inception FID" in said and "domain FID" in said
    r = json.loads((tmp_path / "e.json").read_text())["inception"]
    assert r["n"] == 12 and r["generated"]["fid"] > 0
    assert main(["generate", "eval", str(out / "g"), "-n", "3"]) == 2


def test_generate_detect_gives_a_generator_run_a_detector_that_the_game_plays_with(tmp_path, capsys,
                                                                                   judge):
    from cnnlab.serve.game import WhichIsReal, game_result

    out = tmp_path / "runs"
    common = ["--dataset", "digits", "--out-dir", str(out), "--judge", str(judge.path), *TINY]
    assert main(["generate", "train", "--name", "g", *common]) == 0
    assert main(["generate", "train", "--name", "other", "--seed", "1", "--head", "conditional",
                 *common]) == 0
    assert game_result(out / "g") is None  # no detector yet
    capsys.readouterr()
    assert main(["generate", "detect", str(out / "g"), "--unseen", str(out / "g"), "-n", "100"]) == 2
    assert "is the generator itself" in capsys.readouterr().err
    assert main(["generate", "detect", str(out / "g"), "--unseen", str(out / "other"), "-n", "100",
                 "--epochs", "2"]) == 0
    said = capsys.readouterr().out
    assert "on the GAN it trained against" in said and "on an unseen generator" in said
    result = json.loads((out / "g" / "detector.json").read_text())
    assert result["n_train"] == 200 and result["unseen_run"] == str(out / "other")
    for key in ("same", "unseen"):
        assert 0 <= result[key]["low"] <= result[key]["estimate"] <= result[key]["high"] <= 1
    game = WhichIsReal()
    r = game.new_round(out / "g", {})
    assert r["left"].startswith("data:image/png;base64,") and r["right"].startswith("data:image/png")
    answer = game.answer(r["round"], "left")
    assert answer["real"] in ("left", "right") and answer["correct"] == (answer["real"] == "left")


def test_the_game_ignores_a_detector_file_that_points_outside_its_run(tmp_path):
    from cnnlab.serve.game import game_result

    run = tmp_path / "g"
    run.mkdir()
    for bad in (json.dumps({"subrun": "../../elsewhere"}), "[1, 2]", "{not json"):
        (run / "detector.json").write_text(bad)
        assert game_result(run) is None
    inside = {"subrun": "subruns/real-or-generated-1"}
    (run / "detector.json").write_text(json.dumps(inside))
    assert game_result(run) == {"subruns": {"gan": "."}, "detector": inside}


def test_the_main_jobs_quick_budget_leaves_the_gans_to_full_runs_off_the_digits(judge, tmp_path,
                                                                                  monkeypatch):
    """On the digits the quick budget trains its GANs; on other data (the 32x32 shapes: 11
    minutes, a domain FID of 235) the main job skips them in a line that names the commands."""
    import shutil

    import yaml

    from cnnlab.analysis.generation import ANALYSIS
    from cnnlab.pipeline import _step
    from cnnlab.run import Run

    assert ANALYSIS.quick_skip(judge) == ""
    run = Run(shutil.copytree(judge.path, tmp_path / "shapes-run"))
    cfg = yaml.safe_load((run.path / "config.yaml").read_text()) | {"dataset": "shapes"}
    (run.path / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = Run(run.path)
    said, stems = [], {}
    assert _step(run, ANALYSIS, 15, False, "", stems, said.append, record=False) == 0.0
    assert stems == {} and "skipped: the quick budget's GANs are sized for the digits" in said[-1]
    assert f"cnnlab experiment generation {run.path}" in said[-1] and "cnnlab run --full" in said[-1]
    from cnnlab.analysis.registry import record_main_job
    from cnnlab.report.claims import left_to_full

    assert left_to_full(run) == []  # not a main job's run: nothing was left out
    record_main_job(run.path, {"bias": "bias"})  # the claims table names what the job left out
    assert [(name, why) for name, _, why in left_to_full(run)] == [("generation", ANALYSIS.quick_skip(run))]
    ran = []  # --full trains them whatever the data
    monkeypatch.setattr("cnnlab.pipeline.run_analysis",
                        lambda r, name, **k: ran.append(name) or {"stem": name})
    _step(run, ANALYSIS, 15, True, "", stems, said.append, record=False)
    assert ran == ["generation"] and stems == {"generation": "generation"}


def test_ctrl_c_while_the_judge_trains_is_continued_by_the_same_command(tmp_path, capsys):
    """Found by probing: stopped while its judge trained, generate train said `cnnlab train
    --resume RUN-judge`, and the same command then refused the judge's folder."""
    from cnnlab.errors import Interrupted
    from cnnlab.generation import train_generator

    cfg = TrainConfig(dataset="digits", epochs=1, limit_train=200, batch_size=50, out_dir=str(tmp_path),
                      name="g")
    seen = []

    def stop_in_the_judges_second_epoch(line: str) -> None:
        seen.append(line)
        if line.startswith("epoch") and sum(s.startswith("epoch") for s in seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        train_generator(cfg, log=stop_in_the_judges_second_epoch, progress=False, report=False)
    assert caught.value.run_dir == tmp_path / "g-judge" and "generate train" in caught.value.resume_with
    said = []
    run = train_generator(cfg, log=said.append, progress=False, report=False)
    assert any("resuming its interrupted training" in s for s in said)
    assert run.metrics["epochs"] == 1 and (tmp_path / "g-judge" / "weights" / "meta.json").is_file()
