"""Adversarial robustness: attacks (ATTACKS registry), robust accuracy, robustness curves,
common corruptions, and the analysis that adds a robustness section to a run's report."""

from cnnlab.robustness.attacks import ATTACKS, run_attack
from cnnlab.robustness.evaluate import robust_accuracy

__all__ = ["ATTACKS", "robust_accuracy", "run_attack"]
