import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.robustness.attacks import ATTACKS, fgsm, pgd, run_attack
from cnnlab.robustness.corruptions import CORRUPTIONS, corrupt
from cnnlab.robustness.evaluate import robust_accuracy


def linear_model(d=3 * 4 * 4, k=5, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k)).eval()


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained on the digits, with its test images in [0, 1]."""
    import tempfile

    cfg = cnnlab.TrainConfig(model="mlp", epochs=4, out_dir=tempfile.mkdtemp(), name="m")
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    test = cnnlab.load_dataset("digits").test
    return run.load_model(), test.x[:200].float() / 255, test.y[:200]


def test_fgsm_on_a_linear_model_equals_its_closed_form():
    model = linear_model()
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 5, (8,))
    w, b = model[1].weight, model[1].bias
    with torch.no_grad():
        p = (x.flatten(1) @ w.T + b).softmax(1)
        grad = (p - F.one_hot(y, 5).float()) @ w  # d CE / d x for logits W x + b
        expected = (x + 0.03 * grad.sign().view_as(x)).clamp(0, 1)
    assert torch.allclose(fgsm(model, x, y, 0.03), expected, atol=1e-6)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_stays_in_its_ball_and_the_box(name):
    model = linear_model()
    torch.manual_seed(1)
    x, y = torch.rand(6, 3, 4, 4), torch.randint(0, 5, (6,))
    eps = 0.05 if ATTACKS.get(name).norm == "linf" else 0.5
    kw = {"steps": 5} if "steps" in ATTACKS.get(name).defaults else {}
    kw = {"queries": 50} if name == "square" else kw
    adv = run_attack(name, model, x, y, eps, **kw)
    assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
    delta = (adv - x).flatten(1)
    size = delta.abs().max(1).values if ATTACKS.get(name).norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all(), size


def test_pgd_loss_is_not_lower_than_fgsm(trained):
    model, x, y = trained
    torch.manual_seed(0)
    eps = 4 / 255
    loss = lambda a: F.cross_entropy(model(a), y).item()  # noqa: E731
    assert loss(pgd(model, x, y, eps, steps=10)) >= loss(fgsm(model, x, y, eps)) - 1e-6


def test_at_eps_zero_robust_accuracy_equals_clean(trained):
    model, x, y = trained
    r = robust_accuracy(model, x, y, ["fgsm", "pgd", "apgd-ens"], 0.0)
    clean = (model(x).argmax(1) == y).float().mean().item()
    assert r["robust_accuracy"] == pytest.approx(clean) == pytest.approx(r["clean_accuracy"])


def test_stronger_attacks_find_more(trained):
    model, x, y = trained
    torch.manual_seed(0)
    r = robust_accuracy(model, x, y, ["fgsm", "pgd", "apgd-ce"], 8 / 255)
    acc = {k: v["accuracy"] for k, v in r["per_attack"].items()}
    assert acc["apgd-ce"] <= acc["fgsm"] and acc["pgd"] <= acc["fgsm"]
    assert r["robust_accuracy"] <= min(acc.values()) < r["clean_accuracy"]


def test_targeted_pgd_reaches_its_target():
    model = linear_model()
    x, y = torch.rand(16, 3, 4, 4), torch.zeros(16, dtype=torch.long)
    target = torch.full((16,), 3)
    adv = pgd(model, x, y, eps=1.0, steps=30, target=target)
    assert (model(adv).argmax(1) == 3).float().mean() > 0.9


def test_black_box_square_attack_fools_the_model(trained):
    model, x, y = trained
    torch.manual_seed(0)
    r = robust_accuracy(model, x[:60], y[:60], ["square"], 16 / 255, queries=200)
    assert r["per_attack"]["square"]["accuracy"] < r["clean_accuracy"]


def test_our_pgd_is_as_strong_as_torchattacks(trained):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    eps, alpha, steps = 4 / 255, 1 / 255, 10
    torch.manual_seed(0)
    ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    ours = pgd(model, x, y, eps, steps=steps, step_size=alpha)
    acc = lambda a: (model(a).argmax(1) == y).float().mean().item()  # noqa: E731
    assert acc(ours) <= acc(ref) + 0.02


def test_corruptions_keep_the_box_and_grow_with_severity():
    x = torch.rand(4, 3, 16, 16)
    for name in CORRUPTIONS:
        outs = [corrupt(x, name, s) for s in range(1, 6)]
        assert all(o.shape == x.shape and o.min() >= 0 and o.max() <= 1 for o in outs), name
        change = [float((o - x).abs().mean()) for o in outs]
        assert change[-1] >= change[0], name


def test_adversarial_training_tracks_robust_accuracy(tmp_path):
    cfg = cnnlab.TrainConfig(model="mlp", epochs=2, adv="fgsm-rs", adv_eps=0.1, adv_eval=100,
                             limit_train=400, out_dir=str(tmp_path), name="adv")
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    import csv

    rows = list(csv.DictReader(open(run.path / "results.csv")))
    robust = float(rows[-1]["val_robust_acc"])
    assert 0 <= robust <= float(rows[-1]["val_acc"])


def test_unknown_attack_is_a_clear_error():
    with pytest.raises(CnnlabError, match="unknown attack 'cw'"):
        run_attack("cw", linear_model(), torch.rand(1, 3, 4, 4), torch.zeros(1, dtype=torch.long), 0.1)


def test_deepfool_finds_small_l2_perturbations():
    model = linear_model()
    x = torch.rand(20, 3, 4, 4) * 0.5 + 0.25
    y = model(x).argmax(1)
    adv = run_attack("deepfool", model, x, y, None)
    flipped = model(adv).argmax(1) != y
    assert flipped.float().mean() > 0.9
    assert np.isfinite((adv - x).flatten(1).norm(dim=1).detach().numpy()).all()
