"""Confusion sets and the CNN tree, the algorithms (the analysis plug-in is analysis/tree.py).

After Wang et al., "CNN Tree": confusion sets from softmax outputs, node networks that learn
finer features for the classes a model confuses.

1. Confusion sets: for each class c, the other classes that appear among the top-k
   predictions of c's held-out images at least ``threshold`` of the time.
2. Hierarchy: a confusion graph (edge weight = confusion both ways) grouped by greedy
   average-linkage merging, with at most ``max_node_size`` classes per node. The tree is the
   base network at the root, one node per group, classes as leaves.
3. Node classifiers: a copy of the base network whose head keeps only the node's classes (its
   rows of the base head, so it starts out agreeing with the base), fine-tuned on the node's
   training images.
4. Routing: the base network predicts; a prediction that falls in a node is decided again by
   that node's classifier.

Honesty (in the plug-in): the evaluation images are split in two (seeded): confusion sets
and node selection use one half, and every accuracy reported is measured on the other half.
NBDT (Wan et al. 2021) differs: it builds its hierarchy from the final layer's weight vectors,
not from confusions, and keeps one network, routing by inner products with node prototypes.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.config import TrainConfig
from cnnlab.data import ImageDataset, RunData
from cnnlab.evaluate.predict import predict_probs, tta_level, use_bf16
from cnnlab.log import Log, last_epoch_only
from cnnlab.models import ImageClassifier
from cnnlab.training.trainer import fit


def confusion_sets(probs: np.ndarray, y: np.ndarray, k: int = 2, threshold: float = 0.05,
                   min_prob: float = 0.05) -> tuple[list[list[int]], np.ndarray]:
    """Each class's confusion set, and freq[c, j]: the fraction of class-c images whose top-k
    predictions include class j (j != c) with probability at least ``min_prob``.

    ``min_prob`` keeps a confident model's meaningless runner-up (0.1% probability, say) from
    counting as a confusion."""
    n_classes = probs.shape[1]
    top = np.argsort(-probs, axis=1)[:, :k]
    real = np.take_along_axis(probs, top, axis=1) >= min_prob
    freq = np.zeros((n_classes, n_classes))
    for c in range(n_classes):
        mine, ok = top[y == c], real[y == c]
        if len(mine):
            for j in range(n_classes):
                freq[c, j] = ((mine == j) & ok).any(axis=1).mean()
    np.fill_diagonal(freq, 0.0)
    sets = [[j for j in range(n_classes) if freq[c, j] >= threshold] for c in range(n_classes)]
    return sets, freq


def group_classes(freq: np.ndarray, max_node_size: int = 4, min_link: float = 0.05
                  ) -> list[list[int]]:
    """Greedy average-linkage merging on the symmetric confusion graph; groups of 2+ classes."""
    w = freq + freq.T
    groups = [[c] for c in range(len(freq))]
    while True:
        best, pair = min_link, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if len(groups[a]) + len(groups[b]) > max_node_size:
                    continue
                link = w[np.ix_(groups[a], groups[b])].mean()
                if link >= best:
                    best, pair = link, (a, b)
        if pair is None:
            break
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return sorted((g for g in groups if len(g) > 1), key=lambda g: g[0])


def route(base_probs: np.ndarray, groups: list[list[int]], node_probs: list[np.ndarray]) -> np.ndarray:
    """Final classes: the base prediction, re-decided by the node whose group contains it.

    ``node_probs[g]`` holds, for every image, node g's probabilities over ``groups[g]``."""
    pred = base_probs.argmax(1).copy()
    for g, classes in enumerate(groups):
        routed = np.isin(pred, classes)
        pred[routed] = np.asarray(classes)[node_probs[g][routed].argmax(1)]
    return pred


def node_model(base: ImageClassifier, classes: list[int]) -> ImageClassifier:
    """A copy of the base network whose head keeps only ``classes`` (their rows of the head),
    so it starts out agreeing with the base on them."""
    model = copy.deepcopy(base)
    old = base.get_classifier()
    model.reset_classifier(len(classes))
    new = model.get_classifier()
    with torch.no_grad():
        new.weight.copy_(old.weight[classes])
        if old.bias is not None:
            new.bias.copy_(old.bias[classes])
    return model


def restrict(ds: ImageDataset, classes: list[int]) -> ImageDataset:
    keep = torch.from_numpy(np.isin(ds.y.numpy(), classes))
    sub = ds.subset(torch.nonzero(keep).flatten())
    remap = torch.full((ds.num_classes,), -1, dtype=torch.long)
    remap[classes] = torch.arange(len(classes))
    return ImageDataset(sub.x, remap[sub.y], [ds.classes[c] for c in classes], ds.name, ds.flip_ok)


def fine_tune(base: ImageClassifier, cfg: TrainConfig, data: RunData, build: np.ndarray,
              epochs: int, lr_scale: float, log: Log) -> np.ndarray:
    """The control: the base fine-tuned on all its classes as a node is on its own (same
    epochs, learning rate, validation half); its predicted class for every evaluation image."""
    node_data = RunData(data.train, data.eval.subset(build), "val", data.source)
    return _fine_tuned_probs(copy.deepcopy(base), cfg, node_data, data, epochs, lr_scale,
                             "control", log).argmax(1)


def train_nodes(base: ImageClassifier, cfg: TrainConfig, data: RunData, groups: list[list[int]],
                build: np.ndarray, epochs: int, lr_scale: float, log: Log) -> list[np.ndarray]:
    """Fine-tune one node per group on its classes' training images (validated on the
    ``build`` half); return each node's probabilities over its group for every evaluation image."""
    return [_fine_tuned_probs(node_model(base, classes), cfg,
                              RunData(restrict(data.train, classes),
                                      restrict(data.eval.subset(build), classes), "val", data.source),
                              data, epochs, lr_scale, f"node {g}", log)
            for g, classes in enumerate(groups)]


def _fine_tuned_probs(model: ImageClassifier, cfg: TrainConfig, train_data: RunData, data: RunData,
                      epochs: int, lr_scale: float, label: str, log: Log) -> np.ndarray:
    """Fine-tune ``model`` on ``train_data`` (the base's recipe at ``lr_scale`` of its rate, no
    warm-up or EMA; checkpoints in a scratch folder, validated after the last epoch alone);
    its probabilities on every evaluation image."""
    tuned_cfg = cfg.fresh(epochs=epochs, lr=cfg.lr * lr_scale, warmup_epochs=0, ema=0.0,
                          eval_every=epochs)
    with tempfile.TemporaryDirectory(prefix="cnnlab-tree-") as scratch:
        model, _ = fit(tuned_cfg, train_data, Path(scratch) / label.replace(" ", ""), model=model,
                       log=last_epoch_only(log, label), progress=False)
    return predict_probs(model.cpu(), data.eval.x, tta=tta_level(cfg), flip=data.flip_ok,
                         bf16=use_bf16(cfg, "cpu"))[0]
