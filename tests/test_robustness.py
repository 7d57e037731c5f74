import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.robustness.attacks import ATTACKS, apgd, dlr_loss, fgsm, pgd, run_attack
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


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def binomial_noise(p: float, n: int) -> float:
    """Two standard errors of an accuracy p measured on n images."""
    return 2 * (max(p * (1 - p), 0.01) / n) ** 0.5


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


class Trap(nn.Module):
    """Input (B, 1, 1, 2); class 0 is right. Class 1 wins only where x1 is small, and raising x1
    raises the cross-entropy (98 classes creep up to just below class 0) while class 0 keeps
    winning: the highest-loss point is correctly classified."""

    def forward(self, x):
        x0, x1 = x[:, 0, 0, 0], x[:, 0, 0, 1]
        z1 = 0.2 * torch.tanh(50 * (x0 - 0.5)) - 5 * x1
        zk = (10 * x1 - 5.01)[:, None].expand(-1, 98)
        return torch.cat([torch.zeros_like(x0)[:, None], z1[:, None], zk], 1)


class Recorder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x):
        z = self.model(x)
        self.calls.append((x.detach().clone(), z.detach().clone()))
        return z


def test_apgd_returns_the_last_misclassified_iterate_not_the_highest_loss():
    torch.manual_seed(0)
    x = torch.zeros(300, 1, 1, 2)
    x[..., 0] = 0.55
    y = torch.zeros(300, dtype=torch.long)
    model = Recorder(Trap())
    adv = apgd(model, x, y, eps=0.5, steps=20)
    ever_fooled = torch.zeros(300, dtype=torch.bool)
    for xs, z in model.calls:
        if len(xs) == 300:  # the whole batch at one iterate
            ever_fooled |= z.argmax(1) != y
    fooled = Trap()(adv).argmax(1) != y
    assert ever_fooled.sum() > 30  # the trap works: many examples were fooled on the way
    assert torch.equal(fooled, ever_fooled)  # ... and every one of them is returned fooled


def test_apgd_dlr_on_two_classes_falls_back_to_cross_entropy_and_says_so():
    model = linear_model(k=2)
    x, y = torch.rand(10, 3, 4, 4), torch.randint(0, 2, (10,))
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr_loss(model(x), y)
    adv = run_attack("apgd-dlr", model, x, y, 0.05, steps=5)
    assert ((adv - x).abs().amax() <= 0.05 + 1e-6)
    r = robust_accuracy(model, x, y, ["apgd-dlr"], 0.05, steps=5)
    assert "cross-entropy" in r["per_attack"]["apgd-dlr"]["note"]


def test_one_eps_never_spans_two_norms(trained):
    model, x, y = trained
    with pytest.raises(CnnlabError, match="one eps cannot be a radius in two norms"):
        robust_accuracy(model, x, y, ["pgd", "deepfool"], 0.1)
    with pytest.raises(CnnlabError, match="autoattack .* is not implemented; use apgd-ens"):
        robust_accuracy(model, x, y, ["autoattack"], 0.1)


def test_deepfool_on_a_linear_model_equals_its_closed_form():
    """For logits W x + b the nearest boundary is at distance min_k |f_k| / ||w_k||, with
    f_k = z_k - z_y and w_k = W_k - W_y; DeepFool reaches it in one step (plus its overshoot)."""
    model = linear_model()
    torch.manual_seed(3)
    x = torch.rand(20, 3, 4, 4) * 0.1 + 0.45  # far from the box's faces
    with torch.no_grad():
        z = model(x)
        y = z.argmax(1)
        w = model[1].weight
        f = z - z.gather(1, y[:, None])
        wk = (w[None] - w[y][:, None]).norm(dim=2)  # (N, K)
        dist = torch.where(f == 0, torch.inf, f.abs() / wk).min(1).values
    adv = run_attack("deepfool", model, x, y, None, overshoot=0.02)
    size = (adv - x).flatten(1).norm(dim=1)
    assert (model(adv).argmax(1) != y).all()
    assert torch.allclose(size, 1.02 * dist, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("ours, ref", [
    (dict(name="apgd-ce", steps=20), dict(cls="APGD", steps=20, loss="ce")),
    (dict(name="square", queries=300, p_init=0.3), dict(cls="Square", n_queries=300, p_init=0.3)),
])
def test_our_attacks_are_as_strong_as_torchattacks(trained, ours, ref):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    eps = 16 / 255
    torch.manual_seed(0)
    ours = dict(ours)
    adv = run_attack(ours.pop("name"), model, x, y, eps, **ours)
    ref = dict(ref)
    ref_adv = getattr(torchattacks, ref.pop("cls"))(model, eps=eps, **ref)(x, y)
    a, b = accuracy(model, adv, y), accuracy(model, ref_adv, y)
    assert a <= b + binomial_noise(b, len(y)), (a, b)


def test_our_deepfool_finds_perturbations_as_small_as_torchattacks(trained):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    ours = run_attack("deepfool", model, x, y, None)
    ref = torchattacks.DeepFool(model, steps=50, overshoot=0.02)(x, y)
    with torch.no_grad():
        both = (model(ours).argmax(1) != y) & (model(ref).argmax(1) != y)
    assert both.sum() > 50
    size = lambda a: (a - x).flatten(1).norm(dim=1)[both].median().item()  # noqa: E731
    assert size(ours) <= 1.05 * size(ref)


def test_adversarial_training_beats_standard_training_under_attack(tmp_path):
    """Same model, data and budget; only the training batches differ (FGSM-RS, Wong et al.)."""
    eps = 32 / 255  # two grey levels of the digits: standard training falls apart there
    common = dict(model="mlp", epochs=8, out_dir=str(tmp_path))
    std = cnnlab.train(cnnlab.TrainConfig(name="std", **common), log=lambda s: None, report=False)
    adv = cnnlab.train(cnnlab.TrainConfig(name="adv", adv="fgsm-rs", adv_eps=eps, adv_eval=50,
                                          **common), log=lambda s: None, report=False)
    test = cnnlab.load_dataset("digits").test
    x, y = test.x.float() / 255, test.y
    robust = {}
    for name, run in (("std", std), ("adv", adv)):
        torch.manual_seed(0)
        robust[name] = robust_accuracy(run.load_model(), x, y, ["pgd"], eps)["robust_accuracy"]
    assert robust["adv"] > robust["std"] + binomial_noise(robust["std"], len(y)), robust


def test_the_section_says_only_what_ran_and_labels_the_curve_in_its_norm(tmp_path):
    """Review: the apgd-ens note appeared when apgd-ens did not run, and an L2 curve's axis
    said L-inf."""
    from cnnlab.analysis import run_analysis

    run = cnnlab.train(cnnlab.TrainConfig(model="mlp", epochs=1, limit_train=300,
                                          out_dir=str(tmp_path), name="r"), log=lambda s: None,
                       report=False)
    run_analysis(run, "robustness", attacks=("pgd-l2",), eps=0.5, n=50, curve=("pgd-l2",),
                 curve_n=20, corruptions=False, log=lambda s: None)
    html = cnnlab.render_report(run).read_text()
    section = html.split('id="robustness"')[1].split("</section>")[0]
    assert "apgd-ens is" not in section
    from cnnlab.analysis.robustness import curve_axis

    assert curve_axis("l2") == (1.0, "eps (L2 norm, pixels in [0, 1])") and "L-inf" in curve_axis("linf")[1]


def test_the_full_budget_fits_a_small_evaluation_set(tmp_path):
    """cnnlab run --full on the digits stopped at robustness: 1,000 images asked of 360."""
    import cnnlab
    from cnnlab.analysis import ANALYSES, load_all

    load_all()
    run = cnnlab.train(cnnlab.TrainConfig(epochs=1, limit_train=200, out_dir=str(tmp_path), name="d"),
                       log=lambda line: None, report=False)
    budget = ANALYSES.get("robustness").budget(run, full=True)
    assert budget["n"] == run.metrics["n"] == 360 and budget["curve_n"] <= 360
    ANALYSES.get("robustness").resolve(budget)  # accepted as it stands


def test_the_default_attacks_every_image_of_a_small_evaluation_set(tmp_path):
    """Review: the README's API example (run_analysis(run, "robustness", eps=4 / 255) on the
    digits) stopped with "--n 1,000 is more than the 360 evaluation images"; a number asked
    for explicitly is still refused."""
    from cnnlab.analysis import run_analysis

    run = cnnlab.train(cnnlab.TrainConfig(model="mlp", epochs=1, limit_train=200,
                                          out_dir=str(tmp_path), name="d"), log=lambda s: None,
                       report=False)
    res = run_analysis(run, "robustness", attacks=("fgsm",), curve=(), corruptions=False,
                       log=lambda s: None)
    assert res["n"] == run.metrics["n"] == 360
    with pytest.raises(CnnlabError, match="361 is more than the 360 evaluation images"):
        run_analysis(run, "robustness", attacks=("fgsm",), n=361, curve=(), corruptions=False,
                     log=lambda s: None)
