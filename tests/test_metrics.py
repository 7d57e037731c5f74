import numpy as np
import pytest
from sklearn import metrics as skm

from cnnlab.evaluate.metrics import (
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    most_confused_pairs,
    precision_recall_f1,
    top_k_accuracy,
)


@pytest.fixture
def preds(rng):
    k, n = 6, 500
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, y, k


def test_confusion_and_per_class_metrics_agree_with_scikit_learn(preds):
    probs, y, k = preds
    pred = probs.argmax(1)
    cm = confusion_matrix(y, pred, k)
    assert (cm == skm.confusion_matrix(y, pred, labels=range(k))).all()
    ours = precision_recall_f1(cm)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    np.testing.assert_allclose(ours["precision"], p)
    np.testing.assert_allclose(ours["recall"], r)
    np.testing.assert_allclose(ours["f1"], f)
    assert (ours["support"] == s).all()


def test_top_k_agrees_with_scikit_learn(preds):
    probs, y, k = preds
    assert top_k_accuracy(probs, y, 3) == pytest.approx(skm.top_k_accuracy_score(y, probs, k=3))


def test_ece_known_answers():
    # Always 80% confident and right 80% of the time: perfectly calibrated.
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, y) == pytest.approx(0.0)
    # Always 90% confident, right half of the time: ECE = |0.5 - 0.9| = 0.4.
    probs = np.tile([0.9, 0.1], (10, 1))
    y = np.array([0, 1] * 5)
    assert expected_calibration_error(probs, y) == pytest.approx(0.4)


def test_most_confused_pairs_by_hand():
    cm = np.array([[5, 3, 0], [4, 6, 1], [0, 2, 9]])
    pairs = most_confused_pairs(cm, ["a", "b", "c"])
    assert [(p["a"], p["b"], p["total"]) for p in pairs] == [("a", "b", 7), ("b", "c", 3)]
    assert pairs[0]["a_as_b"] == 3 and pairs[0]["b_as_a"] == 4


def test_report_fields(preds):
    probs, y, k = preds
    rep = classification_report(probs, y, [str(i) for i in range(k)])
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))
    assert rep["macro_f1"] == pytest.approx(skm.f1_score(y, probs.argmax(1), average="macro"))
    assert rep["top5_accuracy"] is not None and len(rep["per_class"]) == k


def test_wilson_interval_matches_a_hand_computation():
    from cnnlab.evaluate.stats import proportion_ci

    # Wilson: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    p, n, z = 0.8, 100, 1.959964
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    ci = proportion_ci(80, 100)
    assert ci.estimate == 0.8
    assert ci.low == pytest.approx((centre - half) / (1 + z * z / n), abs=1e-6)
    assert ci.high == pytest.approx((centre + half) / (1 + z * z / n), abs=1e-6)


@pytest.mark.parametrize("counts, low, high", [
    ((56, 70, 48, 80), 0.0524, 0.3339),  # Newcombe (1998), Table II, method 10: examples (a),
    ((9, 10, 3, 10), 0.1705, 0.8090),    # (b)
    ((10, 10, 0, 20), 0.6791, 1.0000),   # and (g)
])
def test_difference_of_two_proportions_matches_newcombes_published_intervals(counts, low, high):
    from cnnlab.evaluate.stats import proportion_difference_ci

    ci = proportion_difference_ci(*counts)
    assert ci.estimate == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=5e-5)


def test_exact_mcnemar_matches_the_binomial_by_hand():
    from math import comb

    from cnnlab.evaluate.stats import mcnemar

    a = np.array([1] * 31 + [0] * 23 + [1] * 100, bool)  # the CNN tree's 31 fixed, 23 broken
    b = np.array([0] * 31 + [1] * 23 + [1] * 100, bool)
    test = mcnemar(a, b)
    tail = sum(comb(54, k) for k in range(0, 24)) / 2**54  # P(X <= 23), X ~ Bin(54, 1/2)
    assert (test.a_only, test.b_only) == (31, 23)
    assert test.p_value == pytest.approx(2 * tail, rel=1e-9)
    assert test.p_value > 0.3  # not a significant win


def test_welch_interval_matches_scipy_and_zero_spread_is_handled():
    from scipy import stats as st

    from cnnlab.evaluate.stats import mean_difference_ci

    a, b = [0.50, 0.52, 0.51], [0.40, 0.43, 0.41]
    ci = mean_difference_ci(a, b)
    ref = st.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert ci.low == pytest.approx(ref.low) and ci.high == pytest.approx(ref.high)
    assert ci.estimate == pytest.approx(np.mean(b) - np.mean(a)) and ci.high < 0
    assert np.isinf(mean_difference_ci([0.5], [0.4]).low)


def test_paired_interval_matches_scipy_and_is_narrower_than_welch_when_pairs_move_together():
    from scipy import stats as st

    from cnnlab.evaluate.stats import mean_difference_ci, paired_difference_ci

    a, b = [10.0, 20.0, 30.0, 40.0], [11.0, 21.5, 30.5, 41.2]  # b a little above a on every pair
    ci = paired_difference_ci(a, b)
    ref = st.ttest_rel(b, a).confidence_interval(0.95)
    assert ci.low == pytest.approx(ref.low) and ci.high == pytest.approx(ref.high)
    assert ci.low > 0  # significant when paired ...
    assert mean_difference_ci(a, b).low < 0  # ... lost in the spread of the values when not
    assert np.isinf(paired_difference_ci([1.0], [2.0]).low)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference_ci([1.0, 2.0], [1.0])


def test_bootstrap_interval_covers_the_mean():
    from cnnlab.evaluate.stats import bootstrap_ci

    values = np.random.default_rng(0).normal(1.0, 1.0, 400)
    ci = bootstrap_ci(values)
    assert ci.low < 1.0 < ci.high and ci.high - ci.low == pytest.approx(0.2, abs=0.05)


def test_a_batched_bootstrap_draws_the_same_resamples_as_the_loop():
    from cnnlab.evaluate.stats import bootstrap_ci

    values = np.random.default_rng(1).normal(0.0, 1.0, 300)
    loop = bootstrap_ci(values, np.median, resamples=500)
    batched = bootstrap_ci(values, lambda v: np.median(v, axis=-1), resamples=500, batched=True)
    assert (batched.estimate, batched.low, batched.high) == pytest.approx(
        (loop.estimate, loop.low, loop.high), abs=1e-12)
