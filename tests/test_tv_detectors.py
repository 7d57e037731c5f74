"""torchvision's FCOS on our ResNet-20: no resize to 800 px, the interface of our detectors, empty
targets, a size close to our Detector's, and it learns the objects of a few scenes."""

import math

import pytest
import torch
from torchvision.ops import box_iou

from cnnlab.data.scenes import make_scenes
from cnnlab.models import create_model
from cnnlab.models.centernet import Detector
from cnnlab.models.tv_detectors import TorchvisionFCOS, fcos_resnet20

K = 4


@pytest.fixture(scope="module")
def scenes():
    s = make_scenes(8, 64, seed=0)
    return s.x.float() / 255, s.targets


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("training", [True, False])
def test_the_transform_leaves_a_64px_batch_at_64px(scenes, training):
    x, targets = scenes
    model = fcos_resnet20(K, 64).train(training)
    images, _ = model.fcos.transform(list(x[:4]))
    assert images.tensors.shape == (4, 3, 64, 64) and images.image_sizes == [(64, 64)] * 4
    assert torch.equal(images.tensors, x[:4])  # identity normalization (the backbone normalizes)
    features = model.fcos.backbone(images.tensors)
    assert [tuple(f.shape) for f in features.values()] == [(4, 64, 32, 32), (4, 64, 16, 16)]


def test_the_interface_of_our_detectors(scenes):
    torch.manual_seed(0)
    x, targets = scenes
    model = fcos_resnet20(K, 64)
    assert isinstance(model, TorchvisionFCOS) and model.takes_targets
    assert (model.num_classes, model.image_size) == (K, 64)
    assert model.fcos.head.classification_head.cls_logits.out_channels == K  # no background class
    outputs = model(x[:2], targets[:2])
    assert set(outputs) == {"classification", "bbox_regression", "bbox_ctrness"}
    total, parts = model.loss(outputs, targets[:2])
    assert total.dim() == 0 and math.isfinite(total.item()) and set(parts) == set(outputs)
    assert all(isinstance(v, float) for v in parts.values())
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    found = model.detect(x[:3])
    assert model.training and len(found) == 3  # detect leaves the mode as it was
    for d in found:
        n = len(d["boxes"])
        assert d["boxes"].shape == (n, 4) and d["scores"].shape == d["labels"].shape == (n,)
        assert n <= 100 and (d["scores"] > 0.05).all() and d["labels"].dtype == torch.long
        assert ((d["labels"] >= 0) & (d["labels"] < K)).all()
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 64).all()


def test_images_without_boxes_do_not_break_the_loss(scenes):
    x, targets = scenes
    model = fcos_resnet20(K, 64)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    for batch in ([empty, empty], [empty, targets[0]]):
        total, parts = model.loss(model(x[:2], batch), batch)
        total.backward()
        assert math.isfinite(total.item()) and all(math.isfinite(v) for v in parts.values())


def test_its_size_is_close_to_our_detectors():
    ours = _count(Detector(create_model("resnet20", num_classes=K, image_size=64), 64, K, 4))
    for fine in (True, False):
        assert abs(_count(fcos_resnet20(K, 64, fine=fine)) / ours - 1) < 0.05


def test_it_learns_the_objects_of_a_few_scenes(scenes):
    torch.manual_seed(0)
    x, targets = scenes[0][:4], scenes[1][:4]
    model = fcos_resnet20(K, 64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        total, _ = model.loss(model(x, targets), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(total.item())
    assert all(map(math.isfinite, history)) and history[-1] < 0.5 * history[0], history
    found, hits, objects = model.detect(x), 0, 0
    for d, t in zip(found, targets, strict=True):
        sure = d["scores"] > 0.3
        iou = box_iou(t["boxes"], d["boxes"][sure])  # (objects, confident detections)
        same = t["labels"][:, None] == d["labels"][sure][None, :]
        hits += int(((iou > 0.5) & same).any(1).sum()) if sure.any() else 0
        objects += len(t["boxes"])
    assert hits >= 0.75 * objects, (hits, objects)
