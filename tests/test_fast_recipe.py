"""The airbench tricks behind the fastnet recipes: each checked against a hand computation."""

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.config import TrainConfig
from cnnlab.data.augment import alternating_flip_mask, augment
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.predict import predict_probs, tta_views
from cnnlab.training.optim import Lookahead, make_optimizer


def test_alternating_flips_flip_each_image_every_other_epoch():
    masks = [alternating_flip_mask(1000, epoch, seed=3) for epoch in range(4)]
    assert torch.equal(masks[0], ~masks[1]) and torch.equal(masks[0], masks[2])
    assert torch.equal(masks[1], masks[3])
    assert 400 < int(masks[0].sum()) < 600  # a random half
    assert not torch.equal(masks[0], alternating_flip_mask(1000, 0, seed=4))


def test_augment_flips_exactly_the_masked_images():
    x = torch.rand(6, 3, 8, 8)
    mask = torch.tensor([True, False, True, False, False, True])
    out = augment(x, torch.Generator().manual_seed(0), flip=True, flip_mask=mask)
    assert torch.equal(out[mask], x[mask].flip(-1)) and torch.equal(out[~mask], x[~mask])


def test_tta_level_2_views_are_mirrors_and_one_pixel_shifts():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 2] = 1.0  # one bright pixel at row 3, column 2 (away from the reflected border)
    views = tta_views(x, 2)
    assert len(views) == 6 and sum(w for w, _ in views) == pytest.approx(1.0)
    where = [tuple(torch.nonzero(v[0, 0])[0].tolist()) for _, v in views]
    assert where == [(3, 2), (3, 5), (4, 3), (4, 4), (2, 1), (2, 6)]
    assert [w for w, _ in tta_views(x, 1)] == [0.5, 0.5] and len(tta_views(x, 0)) == 1


def test_predict_probs_averages_the_views_with_their_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    probs, _ = predict_probs(model, x, tta=2)
    xf = x.float() / 255
    expected = sum(w * model(v).softmax(-1) for w, v in tta_views(xf, 2))
    assert torch.allclose(torch.from_numpy(probs), expected, atol=1e-6)
    assert not torch.allclose(torch.from_numpy(predict_probs(model, x, tta=1)[0]), expected, atol=1e-4)


def test_lookahead_moves_slow_weights_and_ends_on_them():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    la = Lookahead(model)
    with torch.no_grad():
        model.weight.fill_(3.0)  # the fast weights moved
    la.after_step(4, 100)  # not a multiple of 5: nothing happens
    assert model.weight.item() == 3.0
    decay = Lookahead.decay(5, 100)
    assert decay == pytest.approx(0.95 ** 5 * 0.05 ** 3)
    la.after_step(5, 100)  # slow = 1 + (1 - decay) * (3 - 1), and the weights restart there
    assert model.weight.item() == pytest.approx(1 + (1 - decay) * 2)
    slow = model.weight.item()
    with torch.no_grad():
        model.weight.fill_(10.0)
    la.after_step(100, 100)  # the last step: the model becomes the slow weights
    assert model.weight.item() == pytest.approx(slow)


def test_norm_parameters_get_their_own_learning_rate_and_frozen_scales_stay_put():
    model = cnnlab.create_model("fastnet", widths=(8, 16, 16), bn_scale=False)
    cfg = TrainConfig(model="fastnet", bias_lr_scale=64.0, lr=0.1)
    opt = make_optimizer(cfg, model)
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    fast = [{id(p) for p in g["params"]} for g in opt.param_groups if g["lr_scale"] == 64.0]
    assert fast == [norm_biases]  # BN weights are frozen, so only the shifts
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert not any(m.weight.requires_grad for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_the_training_loop_applies_each_groups_learning_rate_scale(tmp_path):
    from cnnlab.training import checkpoint as ckpt

    cfg = TrainConfig(dataset="shapes", model="fastnet", model_kwargs={"widths": [8, 16, 16]},
                      epochs=1, batch_size=64, limit_train=256, bias_lr_scale=8.0,
                      out_dir=str(tmp_path), name="r")
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    _, meta = ckpt.load_tensors(run.path / "weights" / "last.safetensors")
    lrs = {g["lr_scale"]: g["lr"] for g in meta["optimizer"]["param_groups"]}
    assert lrs[8.0] == pytest.approx(8.0 * lrs[1.0]) and lrs[1.0] > 0


def test_whitening_eps_caps_the_gain_of_faint_patch_directions():
    torch.manual_seed(0)
    images = torch.rand(64, 3, 16, 16)
    gains = []
    for eps in (5e-4, 1e-1):
        model = cnnlab.create_model("fastnet", widths=(8, 16, 16), whiten_eps=eps)
        model.init_from_data(images)
        gains.append(model.whiten.weight.flatten(1).norm(dim=1).max().item())
    assert gains[1] < gains[0]


def test_tta_never_mirrors_where_the_dataset_forbids_flips():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 2] = 1.0
    views = tta_views(x, 2, flip=False)
    assert [w for w, _ in views] == [0.5, 0.25, 0.25]
    where = [tuple(torch.nonzero(v[0, 0])[0].tolist()) for _, v in views]
    assert where == [(3, 2), (4, 3), (2, 1)]  # the image and its two shifts: no mirror image
    assert len(tta_views(x, 1, flip=False)) == 1


def test_a_digits_run_with_flip_tta_equals_no_tta(tmp_path):
    """A mirrored 2 is not a 2: on digits, TTA level 1 must not change a single probability."""
    common = dict(model="mlp", epochs=1, limit_train=300, out_dir=str(tmp_path))
    a = cnnlab.train(TrainConfig(name="a", tta=0, **common), log=lambda s: None, report=False)
    b = cnnlab.train(TrainConfig(name="b", tta=1, **common), log=lambda s: None, report=False)
    x = cnnlab.load_dataset("digits").test.x[:50]
    assert (a.predict(x) == b.predict(x)).all()
    assert a.metrics["loss"] == b.metrics["loss"]


def test_the_permutation_arms_use_no_tta_and_no_flips(tmp_path):
    from cnnlab.analysis.permutation import _base_config

    run = cnnlab.train(TrainConfig(model="mlp", epochs=1, limit_train=200, tta=2, crop_padding=1,
                                   out_dir=str(tmp_path), name="r"), log=lambda s: None, report=False)
    cfg = _base_config(run, "", 0, 0, 0, {})
    assert (cfg.tta, cfg.flip, cfg.crop_padding, cfg.cutout) == (0, False, 0, 0)


@pytest.mark.slow
def test_the_fast_recipe_runs_end_to_end_on_synthetic_data(tmp_path):
    """configs/cifar10_fast.yaml with every trick on, shortened, on procedural shapes."""
    from pathlib import Path

    from cnnlab.cli import main

    recipe = Path(__file__).parents[1] / "configs" / "cifar10_fast.yaml"
    assert main(["train", "--config", str(recipe), "--dataset", "shapes", "--epochs", "3",
                 "--limit-train", "2000", "--out-dir", str(tmp_path), "--name", "fast"]) == 0
    run = cnnlab.load_run(tmp_path / "fast")
    assert run.config.lookahead and run.config.tta == 2 and run.config.alternate_flips
    assert run.metrics["accuracy"] > 0.5  # 4 classes: chance is 0.25


def test_precision_auto_picks_bf16_where_the_cpu_has_bf16_arithmetic(monkeypatch):
    import cnnlab.evaluate.predict as P

    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert P.use_bf16(TrainConfig(), "cpu") and not P.use_bf16(TrainConfig(precision="fp32"), "cpu")
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))  # AMD Zen 4
    assert P.use_bf16(TrainConfig(), "cpu")
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx512f", "avx512_vnni"}))  # no bf16
    assert not P.use_bf16(TrainConfig(), "cpu")
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx2"}))
    assert not P.use_bf16(TrainConfig(), "cpu") and P.use_bf16(TrainConfig(precision="bf16"), "cpu")
    assert P.use_bf16(TrainConfig(), "cuda")


def test_a_bf16_run_evaluates_to_its_own_metrics(tmp_path):
    cfg = TrainConfig(model="lenet5", epochs=2, limit_train=300, precision="bf16",
                      out_dir=str(tmp_path), name="b")
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    assert run.evaluate()["accuracy"] == pytest.approx(run.metrics["accuracy"])
    fp32 = cnnlab.train(cfg.__class__(**(cfg.to_dict() | {"precision": "fp32", "name": "f"})),
                        log=lambda s: None, report=False)
    assert run.metrics["loss"] != fp32.metrics["loss"]  # bf16 really ran
    assert abs(run.metrics["accuracy"] - fp32.metrics["accuracy"]) < 0.1


def test_progressive_resizing_grows_the_image_side_to_full_size():
    from cnnlab.data.augment import progressive_size, resize_batch

    assert [progressive_size(32, 20, 3, e) for e in range(5)] == [20, 24, 28, 32, 32]
    assert [progressive_size(32, 0, 3, e) for e in range(2)] == [32, 32]  # off
    x = torch.rand(2, 3, 32, 32)
    assert resize_batch(x, 20).shape == (2, 3, 20, 20) and resize_batch(x, 32) is x


def test_a_progressively_resized_run_trains_and_evaluates_at_full_size(tmp_path):
    cfg = TrainConfig(dataset="shapes", model="fastnet", model_kwargs={"widths": [8, 16, 16]},
                      epochs=2, limit_train=256, resize_start=16, resize_epochs=1,
                      out_dir=str(tmp_path), name="r")
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    assert run.metrics["accuracy"] > 0 and run.evaluate()["accuracy"] == run.metrics["accuracy"]


def test_compiled_fastnet_in_bf16_gets_the_eager_gradients():
    """torch.compile (inductor) under bf16 autocast once gave NaN gradients through fastnet's
    global max-pool (amax); the compiled step must match the eager one."""
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    grads = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = cnnlab.create_model("fastnet", widths=(8, 16, 16))
        model.init_from_data(x)
        step = torch.compile(model) if compiled else model
        with torch.autocast("cpu", torch.bfloat16):
            loss = nn.functional.cross_entropy(step(x).float(), y)
        loss.backward()
        grads.append(model.whiten.bias.grad.clone())
    assert torch.isfinite(grads[1]).all()
    assert torch.allclose(grads[0], grads[1], rtol=0.1, atol=1e-3)


def test_muon_orthogonalises_the_filters_steps_and_leaves_the_rest_to_plain_sgd():
    torch.manual_seed(0)
    model = cnnlab.create_model("fastnet", widths=(8, 16, 16))
    twin = cnnlab.create_model("fastnet", widths=(8, 16, 16))
    twin.load_state_dict(model.state_dict())
    cfg = TrainConfig(model="fastnet", optimizer="muon", lr=0.1, muon_lr=0.2)
    opt, ref = make_optimizer(cfg, model), make_optimizer(cfg.derive(optimizer="sgd"), twin)
    for g in opt.param_groups + ref.param_groups:
        g["lr"] = cfg.lr * g["lr_scale"]
    x = torch.rand(16, 3, 16, 16)
    y = torch.randint(0, 10, (16,))
    for net, o in ((model, opt), (twin, ref)):  # one step: the same gradients for both
        o.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        o.step()
    filters = [n for n, p in model.named_parameters() if p.ndim == 4 and p.requires_grad]
    params, twins = dict(model.named_parameters()), dict(twin.named_parameters())
    for name in filters:  # each bank back at norm sqrt(out channels), and moved
        w = params[name]
        assert w.norm().item() == pytest.approx(len(w) ** 0.5, rel=1e-5)
        assert not torch.allclose(w, twins[name])
    for name, p in params.items():  # head, whitening bias, BatchNorm: exactly SGD's steps
        if name not in filters and p.requires_grad:
            assert torch.equal(p, twins[name]), name
    assert [g["lr_scale"] for g in opt.param_groups][-1] == pytest.approx(2.0)


def test_muon_leaves_frozen_filters_alone_and_follows_discriminative_rates():
    torch.manual_seed(0)
    model = cnnlab.create_model("fastnet", widths=(8, 16, 16))
    cfg = TrainConfig(model="fastnet", optimizer="muon", lr=0.1, muon_lr=0.2, body_lr_scale=0.1)
    opt = make_optimizer(cfg, model)  # built before a frozen body is frozen, as fit() does
    assert {round(g["lr_scale"], 6) for g in opt.muon.param_groups} == {0.2}  # 0.1 x 0.2 / 0.1
    frozen = model.layer1.conv1.weight
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    nn.functional.cross_entropy(model(torch.rand(4, 3, 16, 16)), torch.arange(4)).backward()
    opt.step()
    assert torch.equal(frozen, before)
    assert model.layer2.conv1.weight.norm().item() == pytest.approx(16 ** 0.5, rel=1e-5)


def test_muon_refuses_what_it_would_break():
    with pytest.raises(CnnlabError, match="has none; use --optimizer sgd"):
        make_optimizer(TrainConfig(model="mlp", optimizer="muon"), cnnlab.create_model("mlp"))
    with pytest.raises(CnnlabError, match="lenet5's conv1 has a bias"):
        make_optimizer(TrainConfig(model="lenet5", optimizer="muon"), cnnlab.create_model("lenet5"))
    with pytest.raises(CnnlabError, match="optimizer muon is for classifiers"):
        TrainConfig(model="fastnet", optimizer="muon", dp_epsilon=8.0)
    with pytest.raises(CnnlabError, match="give --lr and --muon-lr"):
        TrainConfig(model="fastnet", optimizer="muon", lr_find=True)
    from cnnlab.training.lr_find import lr_range_test

    with pytest.raises(CnnlabError, match="lr-find sweeps one learning rate"):
        lr_range_test(TrainConfig(model="fastnet", optimizer="muon"), data=None)


def test_an_analysis_trains_its_other_models_with_sgd_where_the_run_used_muon():
    run_cfg = TrainConfig(model="fastnet", optimizer="muon")
    assert run_cfg.fresh(model="mlp").optimizer == "sgd"  # an MLP has no filters for Muon
    assert run_cfg.fresh(label_noise=0.1).optimizer == "muon"  # the run's own model keeps it
    assert run_cfg.fresh(model="resnet20", optimizer="muon").optimizer == "muon"  # asked for
    with pytest.raises(CnnlabError, match="optimizer muon is for classifiers"):
        TrainConfig(model="fastnet", optimizer="muon", task="segment")
