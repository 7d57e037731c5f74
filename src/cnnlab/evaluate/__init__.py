"""Evaluation: batched inference (with optional flip TTA) and classification metrics."""

from cnnlab.evaluate.metrics import classification_report
from cnnlab.evaluate.predict import predict_probs

__all__ = ["classification_report", "predict_probs"]
