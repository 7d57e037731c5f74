"""Data attribution: TracIn against a hand computation, neighbours, kept checkpoints, and
leaving training images out."""

import numpy as np
import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.data import ImageDataset, drop_images, read_indices
from cnnlab.errors import CnnlabError
from cnnlab.training import checkpoint as ckpt
from cnnlab.training.trainer import checkpoint_epochs, tracin_weight

pytest.importorskip("captum")


def _load(model, path):
    tensors, meta = ckpt.load_tensors(path)
    model.load_state_dict(tensors)
    return meta["lr"]


def _last_layer_grads(model, x, y):
    """Per-image gradient of the cross-entropy loss with respect to the last layer's weight."""
    grads = []
    for xi, yi in zip(x, y, strict=True):
        model.zero_grad()
        nn.functional.cross_entropy(model(xi[None].float() / 255), yi[None]).backward()
        grads.append(model[-1].weight.grad.flatten().clone())
    return torch.stack(grads)


def test_tracin_equals_the_sum_over_checkpoints_of_lr_times_gradient_dot_products(tmp_path):
    from cnnlab.explain.influence import proponents, self_influence, tracin

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3, bias=False))
    train_x = torch.randint(0, 256, (20, 3, 2, 2), dtype=torch.uint8)
    train_y = torch.randint(0, 3, (20,))
    test_x, test_y = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8), torch.tensor([0, 1, 2, 1])
    paths, lrs, expected, expected_self = [], [0.5, 0.1], torch.zeros(4, 20), torch.zeros(20)
    for t, lr in enumerate(lrs):
        for p in model.parameters():
            p.data += 0.3 * torch.randn_like(p)
        paths.append(str(tmp_path / f"epoch-{t}.safetensors"))
        ckpt.save_tensors(paths[-1], model.state_dict(), {"lr": lr})
        g_train, g_test = _last_layer_grads(model, train_x, train_y), _last_layer_grads(model, test_x, test_y)
        expected += lr * g_test @ g_train.T
        expected_self += lr * (g_train ** 2).sum(1)
    tracer = tracin(model, model[-1], paths, _load, train_x, train_y, batch_size=7)
    scores = tracer.influence((test_x.float() / 255, test_y))
    assert torch.allclose(scores.double(), expected.double(), rtol=1e-4, atol=1e-6)
    assert np.allclose(self_influence(tracer), expected_self.numpy(), rtol=1e-4, atol=1e-6)
    idx, top = proponents(tracer, test_x, test_y, k=3)
    assert (idx == expected.argsort(1, descending=True)[:, :3].numpy()).all()
    idx, low = proponents(tracer, test_x, test_y, k=3, opponents=True)
    assert (idx == expected.argsort(1)[:, :3].numpy()).all() and (low <= top[:, -1:]).all()


def test_nearest_neighbours_are_the_most_cosine_similar_training_embeddings():
    from cnnlab.explain.influence import nearest

    rng = np.random.default_rng(0)
    train, query = rng.normal(size=(50, 8)), rng.normal(size=(3, 8))
    idx, sims = nearest(train, query, 4)
    cos = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        train / np.linalg.norm(train, axis=1, keepdims=True)).T
    assert (idx == np.argsort(-cos, axis=1)[:, :4]).all()
    assert np.allclose(sims, np.sort(cos, axis=1)[:, ::-1][:, :4], atol=1e-6)


def test_kept_checkpoints_are_evenly_spaced_and_end_at_the_last_epoch():
    assert checkpoint_epochs(cnnlab.TrainConfig(epochs=10, checkpoints=4)) == [2, 5, 8, 10]
    assert checkpoint_epochs(cnnlab.TrainConfig(epochs=3, checkpoints=3)) == [1, 2, 3]
    assert checkpoint_epochs(cnnlab.TrainConfig(epochs=3)) == []
    with pytest.raises(CnnlabError, match="checkpoints must be in"):
        cnnlab.TrainConfig(epochs=3, checkpoints=5)


def test_dropping_training_images_reindexes_the_flipped_record(tmp_path):
    ds = ImageDataset(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10) % 2,
                      ["a", "b"])
    kept, flipped = drop_images(ds, torch.tensor([1, 4, 7]), torch.tensor([0, 4, 5]))
    assert kept.x.flatten().tolist() == [1, 2, 3, 6, 7, 8, 9]
    assert flipped.tolist() == [0, 4]  # images 1 and 7 kept, now at 0 and 4; image 4 was dropped
    f = tmp_path / "drop.txt"
    f.write_text("3\n1\n3\n")
    assert read_indices(str(f), 10).tolist() == [1, 3]
    for text, match in [("1\nx\n", "one whole number per line"), ("12\n", "has 10 images"),
                        ("\n".join(map(str, range(10))), "leaves out all 10")]:
        f.write_text(text)
        with pytest.raises(CnnlabError, match=match):
            read_indices(str(f), 10)


def test_influence_explains_mistakes_and_asks_for_checkpoints_when_there_are_none(tmp_path):
    quiet = lambda s: None  # noqa: E731
    cfg = cnnlab.TrainConfig(model="lenet5", epochs=3, limit_train=400, out_dir=str(tmp_path), name="r")
    bare = cnnlab.train(cfg, log=quiet, report=False)
    with pytest.raises(CnnlabError, match="--checkpoints 4"):
        run_analysis(bare, "influence", log=quiet)
    cfg.name, cfg.checkpoints = "k", 3
    run = cnnlab.train(cfg, log=quiet, report=False)
    assert [p.name for p in run.checkpoints()] == [f"epoch-00{e}.safetensors" for e in (1, 2, 3)]
    res = run_analysis(run, "influence", n=3, k=2, log=quiet)
    assert res["n"] == 3 and all(len(r[side]) == 2 for r in res["rows"]
                                 for side in ("proponents", "opponents", "neighbours"))
    # TracIn's proponents of a wrong prediction are mostly images of the predicted class
    assert res["summary"]["proponents"]["predicted_label"] > res["summary"]["opponents"]["predicted_label"]
    assert "Which training images made each mistake" in cnnlab.render_report(run).read_text()


def test_each_checkpoint_weighs_the_step_size_of_the_interval_it_stands_for():
    """Review defect: weighing by the lr mid-epoch gave the last of 4 checkpoints of a cosine
    schedule 1/1,200 of the first. Known answer, no warm-up: the mean of 0.5 (1 + cos(pi t))
    over [a, b] of training, times the interval's epochs."""
    import math

    cfg = cnnlab.TrainConfig(epochs=30, checkpoints=4, lr=1.0, warmup_epochs=0, schedule="cosine")
    steps = 200  # per epoch: fine enough for the integral
    kept = checkpoint_epochs(cfg)  # [8, 15, 22, 30]
    starts = [0, *kept[:-1]]
    for start, end in zip(starts, kept, strict=True):
        a, b = start / 30, end / 30
        integral = 0.5 * (b - a) + 0.5 * (math.sin(math.pi * b) - math.sin(math.pi * a)) / math.pi
        assert tracin_weight(end, cfg, (30 * steps, 0), steps) == pytest.approx(30 * integral, rel=0.01)
    weights = [tracin_weight(e, cfg, (30 * steps, 0), steps) for e in kept]
    assert weights[-1] / weights[0] > 0.05  # the explained model counts
    flat = cnnlab.TrainConfig(epochs=4, checkpoints=4, lr=0.1, schedule="constant", warmup_epochs=0)
    assert tracin_weight(3, flat, (40, 0), 10) == pytest.approx(0.1)  # one epoch at lr 0.1
