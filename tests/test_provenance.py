"""Provenance: content hashes, leakage between splits, the audit and the model card."""

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.data import ImageDataset
from cnnlab.data.provenance import content_hash, leakage

pytest.importorskip("imagehash")
quiet = lambda s: None  # noqa: E731


def _ds(x):
    return ImageDataset(torch.as_tensor(x), torch.zeros(len(x), dtype=torch.long), ["a"])


def test_content_hash_sees_one_changed_pixel():
    x = np.random.default_rng(0).integers(0, 255, (5, 3, 8, 8), dtype=np.uint8)
    same, changed = x.copy(), x.copy()
    changed[2, 1, 3, 3] ^= 1
    assert content_hash(_ds(x)) == content_hash(_ds(same)) != content_hash(_ds(changed))


def test_leakage_counts_exact_and_near_copies():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    train = np.stack([np.stack([((xx * (k + 1) + yy * (7 - k)) % 64 * 4).astype(np.uint8)] * 3)
                      for k in range(6)])
    near = train[2].astype(int) + rng.integers(-3, 4, train[2].shape)
    other = rng.integers(0, 255, (3, 32, 32), dtype=np.uint8)
    evals = np.stack([train[4], np.clip(near, 0, 255).astype(np.uint8), other])
    res = leakage(train, evals, max_distance=4)
    assert res["exact"] == 1 and res["exact_pairs"] == [[4, 0]]
    assert res["near"] == 1 and res["near_pairs"][0][:2] == [2, 1]


def test_the_audit_finds_changed_data_and_writes_a_model_card(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    x, y = rng.integers(0, 255, (80, 8, 8, 3), dtype=np.uint8), np.arange(80) % 2
    np.savez(path, x=x, y=y)
    run = cnnlab.train(cnnlab.TrainConfig(dataset=f"npz:{path}", model="mlp", epochs=1,
                                          out_dir=str(tmp_path), name="r"), log=quiet, report=False)
    res = run_analysis(run, "provenance", log=quiet)
    assert res["all_match"] and res["recorded"]["licence"] == "unknown"
    card = (run.path / "model_card.md").read_text()
    for heading in ("Model details", "Intended use", "Factors", "Metrics", "Evaluation data",
                    "Training data", "Quantitative analyses", "Ethical considerations",
                    "Caveats and recommendations"):
        assert f"## {heading}" in card
    x[0, 0, 0, 0] ^= 1
    np.savez(path, x=x, y=y)
    res = run_analysis(run, "provenance", log=quiet)
    changed = {c["what"] for c in res["checks"] if not c["matches"]}
    assert not res["all_match"] and "1 source file" in changed
    assert len(changed) == 2  # the file, and the training or evaluation images (wherever x[0] went)
