"""Classification metrics from predicted probabilities, in numpy.

Names follow scikit-learn; tests check per-class precision, recall and F1 against it.
Expected calibration error follows Guo et al. 2017 ("On calibration of modern neural
networks"): equal-width confidence bins, weighted mean |accuracy - confidence|.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts C[i, j] of images of true class i predicted as class j."""
    return np.bincount(num_classes * y_true + y_pred, minlength=num_classes**2).reshape(
        num_classes, num_classes)


def precision_recall_f1(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support; 0 where undefined (scikit-learn's default)."""
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(0).astype(float), cm.sum(1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual.astype(int)}


def top_k_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    top = np.argsort(-probs, axis=1)[:, :k]
    return float((top == y_true[:, None]).any(axis=1).mean())


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    confidence = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> dict[str, list]:
    """Per-bin mean confidence, accuracy and count, for a reliability diagram."""
    confidence, correct = probs.max(1), probs.argmax(1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = {"confidence": [], "accuracy": [], "count": [], "edges": edges.tolist()}
    for b in range(bins):
        m = which == b
        out["count"].append(int(m.sum()))
        out["confidence"].append(float(confidence[m].mean()) if m.any() else None)
        out["accuracy"].append(float(correct[m].mean()) if m.any() else None)
    return out


def most_confused_pairs(cm: np.ndarray, classes: list[str], top: int = 10) -> list[dict]:
    """Unordered class pairs ranked by how many images went either way between them."""
    off = cm + cm.T
    np.fill_diagonal(off, 0)
    i, j = np.triu_indices(len(cm), k=1)
    order = np.argsort(-off[i, j], kind="stable")[:top]
    pairs = []
    for a, b in zip(i[order], j[order], strict=True):
        if off[a, b] == 0:
            break
        pairs.append({"a": classes[a], "b": classes[b], "a_as_b": int(cm[a, b]),
                      "b_as_a": int(cm[b, a]), "total": int(off[a, b])})
    return pairs


def classification_report(probs: np.ndarray, y_true: np.ndarray, classes: list[str],
                          loss: float | None = None) -> dict:
    """All headline metrics of one evaluation as a JSON-ready dict."""
    y_pred = probs.argmax(1)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    prf = precision_recall_f1(cm)
    report = {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "top5_accuracy": top_k_accuracy(probs, y_true, 5) if len(classes) > 5 else None,
        "macro_f1": float(prf["f1"].mean()),
        "ece": expected_calibration_error(probs, y_true),
        "loss": loss,
        "per_class": [
            {"class": c, "precision": float(prf["precision"][k]), "recall": float(prf["recall"][k]),
             "f1": float(prf["f1"][k]), "support": int(prf["support"][k])}
            for k, c in enumerate(classes)
        ],
        "confusion_matrix": cm.tolist(),
        "most_confused": most_confused_pairs(cm, classes),
    }
    return report
