"""The detector head: encode and decode are inverses, the losses vanish at the answer, and a
detector on a ResNet-20 backbone learns to find the objects of a few scenes."""

import math

import pytest
import torch

from cnnlab.data.scenes import make_scenes
from cnnlab.models import create_model
from cnnlab.models.centernet import Detector, decode, encode, loss


def _perfect(encoded):
    """The outputs the losses want: certain at the centre cells, certain of nothing elsewhere."""
    return {"heat": torch.where(encoded["heat"] == 1, 12.0, -12.0), "sides": encoded["sides"]}


def test_decoding_the_encoded_ground_truth_gives_the_boxes_back():
    targets = [{"boxes": torch.tensor([[4.0, 8.0, 28.0, 20.0], [40.0, 36.0, 60.0, 62.0]]),
                "labels": torch.tensor([1, 0])},
               {"boxes": torch.tensor([[10.0, 10.0, 30.0, 50.0]]), "labels": torch.tensor([2])}]
    enc = encode(targets, num_classes=3, grid=(16, 16), stride=4)
    assert enc["mask"].eq(1).sum() == 3 and enc["heat"].max() == 1  # one centre cell per object
    out = decode(_perfect(enc), stride=4, threshold=0.5)
    for got, want in zip(out, targets, strict=True):
        order = torch.argsort(got["labels"], descending=True) if len(got["labels"]) > 1 else [0]
        assert torch.allclose(got["boxes"][order], want["boxes"], atol=1e-4)
        assert got["labels"][order].tolist() == want["labels"].tolist()
    total, parts = loss(_perfect(enc), enc, stride=4)
    assert parts["giou"] == pytest.approx(0, abs=1e-5) and parts["focal"] < 0.01
    worse, _ = loss({"heat": torch.zeros_like(enc["heat"]), "sides": enc["sides"] + 1}, enc, stride=4)
    assert worse > total + 1


def test_a_detector_learns_the_objects_of_a_few_scenes():
    pytest.importorskip("faster_coco_eval")
    from cnnlab.evaluate.detection import detection_map

    torch.manual_seed(0)
    scenes = make_scenes(8, 64, seed=5)
    backbone = create_model("resnet20", num_classes=4, in_channels=3, image_size=64)
    model = Detector(backbone, channels=64, num_classes=4, stride=4)
    x = scenes.x.float() / 255
    enc = encode(scenes.targets, 4, (16, 16), 4)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(150):
        value, _ = loss(model(x), enc, stride=4)
        opt.zero_grad()
        value.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        found = decode(model(x), stride=4)
    result = detection_map(found, scenes.targets, scenes.classes)
    assert result["map_50"] > 0.5 and math.isfinite(float(value)), result
