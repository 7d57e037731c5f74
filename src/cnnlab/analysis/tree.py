"""Confusion sets and the CNN tree (after Wang et al., "CNN Tree": confusion sets from softmax
outputs, node networks that learn finer features for the classes a model confuses).

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

Honesty: the evaluation images are split in two (seeded): confusion sets and node selection
use one half, and every accuracy reported is measured on the other half.
NBDT (Wan et al. 2021) differs: it builds its hierarchy from the final layer's weight vectors,
not from confusions, and keeps one network, routing by inner products with node prototypes.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from cnnlab.data import ImageDataset, RunData, prepare_data
from cnnlab.evaluate.predict import predict_probs
from cnnlab.io import atomic_write_json
from cnnlab.run import Run, load_npz, save_npz
from cnnlab.train.trainer import Log, fit, last_epoch_only


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


def head_name(model: nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def node_model(base: nn.Module, classes: list[int]) -> nn.Module:
    """A copy of the base network whose head keeps only ``classes`` (their rows of the head)."""
    model = copy.deepcopy(base)
    name = head_name(model)
    old: nn.Linear = model.get_submodule(name)
    new = nn.Linear(old.in_features, len(classes), bias=old.bias is not None)
    with torch.no_grad():
        new.weight.copy_(old.weight[classes])
        if old.bias is not None:
            new.bias.copy_(old.bias[classes])
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
    model.num_classes = len(classes)
    return model


def _restrict(ds: ImageDataset, classes: list[int]) -> ImageDataset:
    keep = torch.from_numpy(np.isin(ds.y.numpy(), classes))
    sub = ds.subset(torch.nonzero(keep).flatten())
    remap = torch.full((ds.num_classes,), -1, dtype=torch.long)
    remap[classes] = torch.arange(len(classes))
    return ImageDataset(sub.x, remap[sub.y], [ds.classes[c] for c in classes], ds.name, ds.flip_ok)


def build_tree(run: Run, k: int = 2, threshold: float = 0.1, max_node_size: int = 4,
               epochs: int = 0, lr_scale: float = 0.1, log: Log = print) -> dict:
    """Grow the tree from a trained run, train its nodes, and measure base versus tree."""
    cfg = run.config
    data = prepare_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.val_split, cfg.seed,
                        cfg.limit_train, cfg.permute_pixels)
    pred = load_npz(run.path / "predictions.npz")
    probs, y = pred["probs"], pred["y"]
    halves = np.random.default_rng(cfg.seed).permutation(len(y))
    build, held = np.sort(halves[: len(y) // 2]), np.sort(halves[len(y) // 2:])
    sets, freq = confusion_sets(probs[build], y[build], k, threshold)
    groups = group_classes(freq, max_node_size, threshold)
    log(f"confusion groups: {[[run.classes[c] for c in g] for g in groups]}")
    base = run.load_model()
    node_epochs = epochs or max(2, cfg.epochs // 4)
    node_probs_all = []
    for g, classes in enumerate(groups):
        node_data = RunData(_restrict(data.train, classes), _restrict(data.val.subset(build), classes),
                            "val", data.source)
        node_cfg = replace(cfg, epochs=node_epochs, lr=cfg.lr * lr_scale, warmup_epochs=0, ema=0.0)
        model, _ = fit(node_cfg, node_data, run.path / "tree" / f"node{g}",
                       model=node_model(base, classes), log=last_epoch_only(log, f"node {g}"),
                       progress=False)
        node_probs_all.append(predict_probs(model.cpu(), data.val.x)[0])
    tree_pred = route(probs, groups, node_probs_all)
    result = _measure(run, probs, y, tree_pred, held, groups, sets, freq, k, threshold,
                      max_node_size, node_epochs)
    fixed, broken = result["fixed_index"], result["broken_index"]
    save_npz(run.path / "analysis" / "tree.npz", fixed=data.val.x[fixed].numpy(),
             broken=data.val.x[broken].numpy())
    atomic_write_json(run.path / "analysis" / "tree.json", result)
    log(f"base {100 * result['base_acc']:.2f}% -> tree {100 * result['tree_acc']:.2f}% on "
        f"{result['n_held']} held-out images; on confused classes "
        f"{100 * result['base_confused_acc']:.2f}% -> {100 * result['tree_confused_acc']:.2f}%")
    return result


def _measure(run, probs, y, tree_pred, held, groups, sets, freq, k, threshold, max_node_size,
             node_epochs) -> dict:
    base_pred = probs.argmax(1)
    yh, bh, th = y[held], base_pred[held], tree_pred[held]
    confused = np.isin(yh, sum(groups, []))
    fixed = held[(bh != yh) & (th == yh)]
    broken = held[(bh == yh) & (th != yh)]
    acc = lambda p, m: float((p[m] == yh[m]).mean()) if m.any() else None  # noqa: E731
    everything = np.ones_like(confused)
    names = run.classes
    return {
        "k": k, "threshold": threshold, "max_node_size": max_node_size, "node_epochs": node_epochs,
        "n_build": int(len(y) - len(held)), "n_held": int(len(held)),
        "confusion_sets": {names[c]: [names[j] for j in s] for c, s in enumerate(sets)},
        "confusion_freq": freq.tolist(),
        "groups": [[names[c] for c in g] for g in groups],
        "base_acc": acc(bh, everything), "tree_acc": acc(th, everything),
        "n_confused": int(confused.sum()),
        "base_confused_acc": acc(bh, confused), "tree_confused_acc": acc(th, confused),
        "n_fixed": int(len(fixed)), "n_broken": int(len(broken)),
        "fixed_index": fixed[:8].tolist(), "broken_index": broken[:8].tolist(),
        "fixed_labels": [[names[y[i]], names[base_pred[i]], names[tree_pred[i]]] for i in fixed[:8]],
        "broken_labels": [[names[y[i]], names[base_pred[i]], names[tree_pred[i]]] for i in broken[:8]],
    }
