"""Data valuation: exact KNN-Shapley against brute force, label noise, and the value analysis."""

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.data import ImageDataset, flip_labels
from cnnlab.errors import CnnlabError
from cnnlab.explain.valuation import brute_force_shapley, knn_shapley

pytest.importorskip("cleanlab")


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_shapley_equals_brute_force_shapley_over_all_subsets(k):
    rng = np.random.default_rng(k)
    train, ty = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    val, vy = rng.normal(size=(5, 4)), rng.integers(0, 3, 5)
    ours = knn_shapley(train, ty, val, vy, k, chunk=2)  # chunks must not change the answer
    assert np.abs(ours - brute_force_shapley(train, ty, val, vy, k)).max() < 1e-6


def test_flipped_labels_are_exactly_the_fraction_and_always_another_class():
    ds = ImageDataset(torch.zeros(200, 1, 4, 4, dtype=torch.uint8), torch.arange(200) % 4,
                      ["a", "b", "c", "d"])
    noisy, which = flip_labels(ds, 0.1, seed=3)
    changed = torch.nonzero(noisy.y != ds.y).flatten()
    assert len(which) == 20 and torch.equal(changed, which)
    again, _ = flip_labels(ds, 0.1, seed=3)
    assert torch.equal(again.y, noisy.y)


def test_the_value_analysis_finds_flipped_labels_far_better_than_chance(tmp_path):
    cfg = cnnlab.TrainConfig(model="mlp", epochs=6, out_dir=str(tmp_path), name="r")
    run = cnnlab.train(cfg, log=lambda s: None, report=False)
    review = tmp_path / "review.csv"
    res = run_analysis(run, "value", noise=0.1, export_review=str(review), log=lambda s: None)
    by = {r["ranking"]: r for r in res["detection"]["rankings"]}
    for ranking in ("KNN-Shapley K=5", "TracIn self-influence", "cleanlab (3-fold)"):
        assert by[ranking]["precision"] > 3 * max(by["random"]["precision"], 0.1), ranking
    assert (tmp_path / "r" / "subruns").is_dir() and len(res["lowest"]) == 16
    lines = review.read_text().strip().splitlines()
    assert lines[0] == "index,label,suggested,value" and len(lines) == 17
    noisy = next((tmp_path / "r" / "subruns").glob("noisy-*"))
    assert len(np.load(noisy / "label_noise.npz")["flipped"]) == res["detection"]["k"]
    html = cnnlab.render_report(run).read_text()
    assert "Finding the flipped labels" in html


def test_bad_value_options_are_one_line_errors(tmp_path):
    with pytest.raises(CnnlabError, match="label_noise must be between"):
        cnnlab.TrainConfig(label_noise=1.5)
    run = cnnlab.train(cnnlab.TrainConfig(model="mlp", epochs=1, limit_train=200,
                                          out_dir=str(tmp_path), name="r"), log=lambda s: None,
                       report=False)
    with pytest.raises(CnnlabError, match="value needs 0 <= noise < 1"):
        run_analysis(run, "value", ks=("five",), log=lambda s: None)


def test_remove_and_retrain_compares_each_ranking_with_the_model_before(tmp_path):
    quiet = lambda s: None  # noqa: E731
    run = cnnlab.train(cnnlab.TrainConfig(model="mlp", epochs=3, limit_train=300,
                                          out_dir=str(tmp_path), name="r"), log=quiet, report=False)
    res = run_analysis(run, "value", noise=0.2, folds=0, retrain=0.2, log=quiet)
    rows = {r["ranking"]: r for r in res["retrain"]["rows"]}
    # review defect: values and scores on disjoint evaluation images (360 = 180 + 180)
    assert res["n_valued_against"] + res["retrain"]["n_eval"] == len(run.data().eval)
    assert res["retrain"]["n_eval"] < len(run.data().eval)
    assert set(rows) == {"none (the model before)", "KNN-Shapley K=5", "TracIn self-influence",
                         "training loss", "random", "the flipped images (oracle)"}
    oracle = rows["the flipped images (oracle)"]
    assert oracle["removed"] == oracle["flipped_removed"] == 60
    assert all(0 <= r["mcnemar_p"] <= 1 and r["ci"]["low"] <= r["accuracy"] <= r["ci"]["high"]
               for name, r in rows.items() if name != "none (the model before)")
    retrained = list((tmp_path / "r" / "subruns").glob("noisy-*/subruns/retrain-*"))
    # one training per distinct set removed (rankings that agree share a cached sub-run)
    assert len(retrained) == len({r.get("drop_file") for r in rows.values()} - {None})
    assert "Remove the lowest 20% and retrain" in cnnlab.render_report(run).read_text()
