"""Calibration: temperature scaling against its closed form, ECE by hand, the analysis and predict."""

import json
import math

import numpy as np
import pytest

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import calibration as C
from cnnlab.evaluate.metrics import expected_calibration_error


def test_temperature_scaling_matches_its_closed_form():
    # Two classes, every image with the same logit gap d toward class 0, and a fraction q of
    # them truly class 0. The likelihood is maximal where sigmoid(d / T) = q: T = d / logit(q).
    d, q, n = 4.0, 0.8, 1000
    p0 = 1 / (1 + math.exp(-d))
    probs = np.tile([p0, 1 - p0], (n, 1))
    y = (np.arange(n) >= q * n).astype(int)
    assert C.fit_temperature(probs, y) == pytest.approx(d / math.log(q / (1 - q)), rel=1e-4)
    scaled = C.apply_temperature(probs, 2.0)
    assert np.allclose(scaled[:, 0], 1 / (1 + math.exp(-d / 2)))
    assert (scaled.argmax(1) == probs.argmax(1)).all()


def test_ece_and_adaptive_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])  # confidences 0.9, 0.9, 0.6, 0.6; right, wrong, right, right
    # bins {0.9, 0.9}: |0.5 - 0.9| and {0.6, 0.6}: |1.0 - 0.6|, each half the images
    assert C.ece(probs, y, bins=10) == pytest.approx(0.4)
    assert C.ece(probs, y, bins=2, adaptive=True) == pytest.approx(0.4)
    assert C.ece(probs, y, bins=4, adaptive=True) == pytest.approx((0.4 + 0.4 + 0.1 + 0.9) / 4)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), 300)
    t = rng.integers(0, 5, 300)
    assert C.ece(p, t) == pytest.approx(expected_calibration_error(p, t))


def test_brier_nll_and_selective_prediction():
    onehot = np.eye(3)
    y = np.array([0, 1, 2])
    assert C.brier(onehot, y) == 0 and C.brier(onehot[[1, 2, 0]], y) == 2
    assert C.nll(np.full((3, 3), 1 / 3), y) == pytest.approx(math.log(3))
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    rows = C.selective(probs, np.array([0, 0, 1, 0]), coverages=(1.0, 0.5))
    assert rows[0]["accuracy"] == 0.75 and rows[1] == {"coverage": 0.5, "answered": 2,
                                                       "accuracy": 1.0, "threshold": 0.8}


def test_the_analysis_fits_on_one_half_scores_the_other_and_predict_applies_it(tmp_path):
    quiet = lambda s: None  # noqa: E731
    run = cnnlab.train(cnnlab.TrainConfig(model="mlp", epochs=2, limit_train=300,
                                          out_dir=str(tmp_path), name="r"), log=quiet, report=False)
    raw = run.predict(run.data().eval.x[:20])
    res = run_analysis(run, "calibration", resamples=200, log=quiet)
    assert res["n_fit"] + res["n_score"] == 360 and res["n_fit"] == 180
    for k in ("ece", "adaptive_ece", "nll", "brier"):
        for side in ("before", "after"):
            ci = res["metrics"][k][side]
            assert ci["low"] <= ci["estimate"] <= ci["high"]
    t = json.loads((run.path / "weights" / "calibration.json").read_text())["temperature"]
    assert t == pytest.approx(res["temperature"]) and run.temperature() == pytest.approx(t)
    calibrated = run.predict(run.data().eval.x[:20])
    assert np.allclose(calibrated, C.apply_temperature(raw, t), atol=1e-6)
    assert np.allclose(run.predict(run.data().eval.x[:20], calibrated=False), raw)
    html = cnnlab.render_report(run).read_text()
    assert "Temperature scaling" in html and html.count("<h2>Calibration") == 1
    (run.path / "weights" / "calibration.json").write_text('{"temperature": -1}')
    with pytest.raises(CnnlabError, match="temperature must be a positive number"):
        run.predict(run.data().eval.x[:2])
    with pytest.raises(CnnlabError, match="--fit-fraction must be between 0.05 and 0.95"):
        run_analysis(run, "calibration", fit_fraction=1.5, log=quiet)


def test_a_section_drawn_in_advance_is_the_one_the_report_would_draw(tmp_path):
    from cnnlab.analysis import ANALYSES
    from cnnlab.report import analysis_section, draw_section

    quiet = lambda s: None  # noqa: E731
    run = cnnlab.train(cnnlab.TrainConfig(model="mlp", epochs=1, limit_train=200,
                                          out_dir=str(tmp_path), name="r"), log=quiet, report=False)
    stem = run_analysis(run, "calibration", resamples=100, log=quiet)["stem"]
    body = draw_section(ANALYSES.get("calibration"), run, stem)
    assert "Temperature scaling" in body and (run.path / "plots" / "calibration.png").is_file()
    fresh = analysis_section(ANALYSES.get("calibration"), run, run.path / "plots").html
    taken = analysis_section(ANALYSES.get("calibration"), run, run.path / "plots", {stem: "DRAWN"}).html
    assert body in fresh and "DRAWN" in taken and body not in taken


def test_a_temperature_that_does_not_measurably_help_is_not_saved(tmp_path, monkeypatch):
    import cnnlab.analysis.calibration as A

    quiet = lambda s: None  # noqa: E731
    run = cnnlab.train(cnnlab.TrainConfig(model="mlp", epochs=2, limit_train=300,
                                          out_dir=str(tmp_path), name="r"), log=quiet, report=False)
    level = {"ci": {"estimate": -0.001, "low": -0.01, "high": 0.008}, "verdict": "no significant difference"}
    monkeypatch.setattr(A, "_ece_change", lambda *a: level)
    (run.path / "weights" / "calibration.json").write_text('{"temperature": 2.0}')  # an earlier fit's
    lines = []
    res = run_analysis(run, "calibration", resamples=200, log=lines.append)
    assert not res["saved"] and res["not_saved"] == "no gain" and run.temperature() is None
    assert any("the temperature is not saved" in line for line in lines)
    assert "The temperature is not saved" in cnnlab.render_report(run).read_text()
    res = run_analysis(run, "calibration", resamples=200, save=False, log=lines.append)
    assert res["not_saved"] == "asked"
