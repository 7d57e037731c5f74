"""The learning-rate range test: its readings on a curve with a known answer, the test on real
training, `cnnlab lr-find` and `--lr auto`."""

import json

import numpy as np
import pytest
import yaml

import cnnlab
from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.data import data_for
from cnnlab.training.lr_find import lr_range_test, suggest


def test_the_readings_of_a_curve_whose_steepest_fall_and_minimum_are_known():
    lrs = np.logspace(-6, 1, 141)  # 20 points per decade
    x = np.log10(lrs)
    loss = 2.0 - np.tanh(2 * (x + 2))  # falls fastest at lr = 1e-2
    loss = np.where(x > -0.5, loss + 3 * (x + 0.5) ** 2, loss)  # turns up after 10^-0.5
    r = suggest(list(lrs), list(loss))
    assert r["steepest"] == pytest.approx(1e-2, rel=0.13)  # one grid step
    low = lrs[int(np.argmin(loss))]
    assert r["lowest_loss_at"] == low and r["minimum_over_10"] == pytest.approx(low / 10)
    assert r["suggestion"] == r["steepest"]


def test_a_test_that_diverges_at_once_says_so():
    with pytest.raises(CnnlabError, match="diverged after 3 steps"):
        suggest([1e-3, 1e-2, 1e-1], [1.0, 5.0, 50.0])


def test_the_range_test_on_digits_is_seeded_grows_geometrically_and_stops_when_it_diverges():
    cfg = cnnlab.TrainConfig(dataset="digits", model="lenet5", threads=1)
    data = data_for(cfg)
    a = lr_range_test(cfg, data, start=1e-5, end=100.0, steps=60, log=print)
    b = lr_range_test(cfg, data, start=1e-5, end=100.0, steps=60, log=print)
    assert a["losses"] == b["losses"]  # CPU runs repeat exactly
    ratios = np.diff(np.log(a["lrs"]))
    assert np.allclose(ratios, np.log(1e7) / 59)
    assert len(a["lrs"]) < 60 and a["smoothed"][-1] > 4 * min(a["smoothed"])  # stopped: diverged
    assert all(np.isfinite(a["losses"])) and 1e-5 < a["suggestion"] <= a["lowest_loss_at"]


def test_lr_find_plots_and_lr_auto_trains_with_its_suggestion(tmp_path, capsys):
    out = tmp_path / "lr.png"
    assert main(["lr-find", "--dataset", "digits", "--steps", "40", "--out", str(out)]) == 0
    found = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 10_000 and "suggested lr" in capsys.readouterr().out
    assert main(["train", "--dataset", "digits", "--lr", "auto", "--epochs", "1",
                 "--out-dir", str(tmp_path), "--name", "auto"]) == 0
    saved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())
    test = json.loads((tmp_path / "auto" / "lr_find.json").read_text())
    assert saved["lr_find"] is True and saved["lr"] == test["suggestion"] > 0
    assert len(test["lrs"]) > len(found["lrs"])  # the default 100 steps, not the 40 above
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dataset: digits\nlr: auto\nepochs: 1\n")
    assert cnnlab.TrainConfig.load(recipe).lr_find is True


def test_lr_find_refuses_what_it_cannot_do(tmp_path):
    assert main(["lr-find", "--dataset", "digits", "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["train", "--dataset", "digits", "--lr", "auto", "--dp-epsilon", "8",
                 "--out-dir", str(tmp_path)]) == 2
    assert main(["train", "--dataset", "digits", "--lr", "fast", "--out-dir", str(tmp_path)]) == 2


def test_a_loss_that_only_rises_suggests_a_decade_below_its_lowest_point():
    lrs = list(np.logspace(-4, 0, 40))
    r = suggest(lrs, list(np.linspace(1.0, 5.0, 40)))
    assert r["suggestion"] == r["minimum_over_10"] == pytest.approx(1e-5)
