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
