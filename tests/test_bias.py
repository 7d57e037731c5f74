"""Bias: groups in the data, group-balanced and Group DRO losses by hand, the audits."""

import json

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.data import ImageDataset, load_dataset
from cnnlab.data.shapes import make_shapes
from cnnlab.errors import CnnlabError
from cnnlab.training.groups import GroupLoss, dro_update, group_mean_losses

quiet = lambda s: None  # noqa: E731


def test_group_dro_weight_update_by_hand():
    q = torch.full((4,), 0.25, dtype=torch.float64)
    new = dro_update(q, torch.tensor([1.0, 0.0, 2.0, 0.5], dtype=torch.float64), eta=0.5)
    # 0.25 * exp(0.5 * l) = 0.4122, 0.25, 0.6796, 0.3210; their sum is 1.6628
    assert new.tolist() == pytest.approx([0.2479, 0.1504, 0.4087, 0.1931], abs=1e-4)
    means, present = group_mean_losses(torch.tensor([1.0, 2, 3, 4]), torch.tensor([0, 0, 2, 2]), 4)
    assert means.tolist() == [1.5, 0, 3.5, 0] and present.tolist() == [True, False, True, False]


def test_group_losses_weigh_cells_as_documented():
    y, g = torch.tensor([0, 0, 0, 1]), torch.tensor([1, 1, 1, 0])  # cells 1, 1, 1, 2 (of 4)
    logits = torch.tensor([[2.0, 0], [1, 0], [0, 0], [0, 1]])
    per_image = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    balance = GroupLoss("balance", y, g, n_classes=2, n_groups=2)
    w = torch.tensor([4 / 6, 4 / 6, 4 / 6, 2.0])  # N / (cells present x cell size)
    assert balance(logits, y, g).item() == pytest.approx(((w * per_image).sum() / w.sum()).item())
    dro = GroupLoss("dro", y, g, n_classes=2, n_groups=2, eta=1.0)
    cell = torch.tensor([0, per_image[:3].mean(), per_image[3], 0])
    q = torch.full((4,), 0.25) * torch.exp(cell)
    q /= q.sum()
    assert dro(logits, y, g).item() == pytest.approx((q * cell).sum().item(), rel=1e-5)
    assert dro.q.tolist() == pytest.approx(q.tolist(), rel=1e-5)


def test_shapes_groups_and_colour_versions_of_the_same_images():
    base, own, other = (make_shapes(100, 16, seed=1, hue=h) for h in ("random", "own", "other"))
    assert torch.equal(base.y, own.y) and torch.equal(base.extras["masks"], other.extras["masks"])
    assert own.groups.all() and not other.groups.any() and 0 < base.groups.float().mean() < 0.5
    biased = load_dataset("shapes:bias=0.95", image_size=16)
    assert biased.train.groups.float().mean() > 0.9 and biased.test.groups.float().mean() < 0.5
    assert biased.train.group_names == ["other colour", "own colour"]
    with pytest.raises(CnnlabError, match="shapes:bias=0.95"):
        load_dataset("shapes:colour=1")
    with pytest.raises(CnnlabError, match="groups must be one whole number per image"):
        ImageDataset(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(3), ["a"],
                     extras={"groups": torch.zeros(2)})


def test_group_dro_training_keeps_its_weights_and_needs_groups(tmp_path):
    cfg = cnnlab.TrainConfig(dataset="shapes:bias=0.95", image_size=16, limit_train=300, epochs=1,
                             model="lenet5", groups="dro", dro_eta=0.5, out_dir=str(tmp_path), name="d")
    run = cnnlab.train(cfg, log=quiet, report=False)
    from cnnlab.training.checkpoint import load_tensors

    _, meta = load_tensors(run.path / "weights" / "last.safetensors")
    q = meta["train_state"]["group_q"]
    assert len(q) == 8 and sum(q) == pytest.approx(1) and max(q) > 1 / 8
    cfg = cnnlab.TrainConfig(epochs=1, groups="balance", out_dir=str(tmp_path), name="g")
    with pytest.raises(CnnlabError, match="needs data with a group per image"):
        cnnlab.train(cfg, log=quiet, report=False)


def test_the_bias_audit_slices_by_class_group_and_cell(tmp_path):
    pytest.importorskip("fairlearn")
    cfg = cnnlab.TrainConfig(dataset="shapes:bias=0.95", image_size=16, limit_train=400, epochs=2,
                             model="lenet5", out_dir=str(tmp_path), name="s")
    run = cnnlab.train(cfg, log=quiet, report=False)
    res = run_analysis(run, "bias", log=quiet)
    assert set(res["slices"]) == {"class", "group", "class x group"}
    cells = res["slices"]["class x group"]
    accs = [r["accuracy"] for r in cells["rows"]]
    assert len(cells["rows"]) == 8 and sum(r["n"] for r in cells["rows"]) == 1000
    assert cells["difference"] == pytest.approx(max(accs) - min(accs))
    assert res["worst"]["accuracy"] == min(accs) == pytest.approx(cells["min"])
    pred = np.load(run.path / "predictions.npz")
    assert res["slices"]["class"]["overall"] == pytest.approx((pred["probs"].argmax(1) == pred["y"]).mean())
    assert "Bias: who the model fails" in cnnlab.render_report(run).read_text()


def test_the_spurious_experiment_compares_each_fix_with_erm(tmp_path):
    run = cnnlab.train(cnnlab.TrainConfig(model="lenet5", epochs=1, limit_train=200,
                                          out_dir=str(tmp_path), name="r"), log=quiet, report=False)
    res = run_analysis(run, "spurious", methods=("erm", "dro"), seeds=2, image_size=16,
                       limit_train=300, epochs=2, model="lenet5", log=quiet)
    for m in ("erm", "dro"):
        for x in res["per_seed"][m]:
            assert x["reliance"] == pytest.approx(x["own_colour"] - x["other_colour"])
            assert x["worst_group"] == min(c["accuracy"] for c in x["cells"].values())
            shares = [c["train_share"] for c in x["cells"].values()]
            assert x["in_distribution"] == pytest.approx(  # cells weighted as in training
                sum(c["train_share"] * c["accuracy"] for c in x["cells"].values()) / sum(shares))
            assert 0.99 < sum(shares) <= 1 + 1e-9 and max(shares) > 2 * min(shares)  # bias: unequal cells
    assert {(c["method"], c["measure"]) for c in res["comparisons"]} == {
        ("dro", "worst_group"), ("dro", "in_distribution"), ("dro", "average"), ("dro", "reliance")}
    json.dumps(res["comparisons"])
    assert "Against ERM" in cnnlab.render_report(run).read_text()


def test_npz_groups_are_read_and_checked(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 8, 8, 3), dtype=np.uint8)
    y, g = np.arange(40) % 2, (np.arange(40) // 2) % 2
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, groups=g, x_test=x[:10], y_test=y[:10], groups_test=g[:10],
             group_names=np.array(["indoor", "outdoor"]))
    splits = load_dataset(f"npz:{path}")
    assert splits.train.group_names == ["indoor", "outdoor"]
    assert splits.test.groups.tolist() == g[:10].tolist()
    for bad, match in [({"groups": g[:39]}, "one whole number per image"),
                       ({"groups_test": None}, "no groups_test"),
                       ({"group_names": np.array(["a", "b", "c"])}, "'c' has no training images")]:
        arrays = {"x": x, "y": y, "groups": g, "x_test": x[:10], "y_test": y[:10],
                  "groups_test": g[:10]} | bad
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
        with pytest.raises(CnnlabError, match=match):
            load_dataset(f"npz:{path}")


def test_folder_groups_come_from_groups_csv(tmp_path):
    from PIL import Image

    rows = ["file,group"]
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / c / f"{i}.png")
            rows.append(f"{c}/{i}.png,{'indoor' if i < 2 else 'outdoor'}")
    (tmp_path / "groups.csv").write_text("\n".join(rows) + "\n")
    train = load_dataset(f"folder:{tmp_path}", image_size=8).train
    assert train.group_names == ["indoor", "outdoor"] and train.groups.tolist() == [0, 0, 1, 0, 0, 1]
    (tmp_path / "groups.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(CnnlabError, match="has no row for dog/2.png"):
        load_dataset(f"folder:{tmp_path}", image_size=8)


def test_group_dro_draws_batches_with_every_cell_equally_likely():
    """Review defect: Group DRO sampled at natural frequency; Sagawa et al. sample groups
    uniformly. 95% of one cell and 5% of another: the epoch's draws are near half and half."""
    from cnnlab.training.groups import GroupLoss
    from cnnlab.training.trainer import epoch_batches

    y = torch.zeros(2000, dtype=torch.long)
    groups = (torch.arange(2000) < 100).long()  # 100 minority images
    dro = GroupLoss("dro", y, groups, 1, 2)
    batches, _ = epoch_batches(2000, 100, torch.Generator().manual_seed(0), None, weights=dro.sample_weights)
    drawn = torch.cat(list(batches))
    assert 0.45 < groups[drawn].float().mean() < 0.55
    assert GroupLoss("balance", y, groups, 1, 2).sample_weights is None  # reweighting keeps the order


def test_class_balance_draws_and_weighs_every_class_alike():
    import torch.nn.functional as F

    from cnnlab.training.groups import ClassBalance
    from cnnlab.training.trainer import epoch_batches

    y = torch.tensor([0] * 90 + [1] * 10)
    sampler = ClassBalance("sampler", y, 2)
    gen = torch.Generator().manual_seed(0)
    drawn = torch.cat([y[b] for _ in range(200)  # the trainer's own batches, 200 epochs of them
                       for b in epoch_batches(100, 50, gen, None, weights=sampler.sample_weights)[0]])
    assert len(drawn) == 20_000 and abs(drawn.float().mean().item() - 0.5) < 0.02  # 10% class: half
    loss = ClassBalance("loss", y, 2)
    logits = torch.randn(100, 2, generator=torch.Generator().manual_seed(2))
    w = torch.where(y == 0, 100 / (2 * 90), 100 / (2 * 10)).double()
    expected = (w * F.cross_entropy(logits, y, reduction="none").double()).sum() / w.sum()
    assert loss(logits, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert sampler(logits, y).item() == pytest.approx(F.cross_entropy(logits, y).item())


@pytest.mark.parametrize("mode", ["sampler", "loss"])
def test_balance_trains_on_data_without_groups_and_is_refused_where_it_cannot_apply(tmp_path, mode):
    run = cnnlab.train(cnnlab.TrainConfig(model="lenet5", epochs=1, limit_train=200, balance=mode,
                                          out_dir=str(tmp_path), name=mode), log=quiet, report=False)
    assert run.config.balance == mode and run.metrics["accuracy"] > 0
    with pytest.raises(CnnlabError, match="cannot be combined with groups"):
        cnnlab.TrainConfig(balance=mode, groups="dro")
    with pytest.raises(CnnlabError, match="balance must be sampler or loss"):
        cnnlab.TrainConfig(balance="oversample")


def test_a_fix_helps_only_if_it_still_does_after_correcting_for_trying_two():
    """Each fix alone significant at 95% is not enough when either would have counted: the
    claim tests each at 97.5% (Bonferroni)."""
    from cnnlab.analysis.spurious import _compare, claims

    erm = [{"worst_group": w, "average": 0.6, "in_distribution": 0.9, "reliance": 0.3}
           for w in (0.30, 0.32, 0.34)]

    def verdict(shift: float):
        per_seed = {"erm": erm} | {m: [s | {"worst_group": s["worst_group"] + shift + d}
                                       for s, d in zip(erm, (0.0, 0.03, -0.03), strict=True)]
                                   for m in ("balance", "dro")}
        res = {"per_seed": per_seed, "comparisons": _compare(per_seed, lambda _: None)}
        (claim,) = claims(res)
        single = [c for c in res["comparisons"] if c["measure"] == "worst_group"][0]["ci"]
        return single["low"] > 0, claim.holds

    assert verdict(0.30) == (True, True)
    assert verdict(0.065) == (True, None)  # significant alone at 95%, not at 97.5%
