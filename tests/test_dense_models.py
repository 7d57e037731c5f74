"""Segmentation and pose heads: shapes, gradients, losses that ignore absent keypoints, crops
that put keypoints where they belong, heatmap decoding against known answers, and each model
learns a few scenes."""

import math

import pytest
import torch

from cnnlab.data.scenes import make_scenes
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.pose import (
    PoseHeatmap,
    PoseRegressor,
    crop_objects,
    decode_heatmaps,
    deeppose_resnet20,
    from_crop,
    gaussian_log_targets,
    heatmap_resnet20,
    object_crops,
    to_crop,
)
from cnnlab.models.segment import Segmenter, unet_resnet20

POSE_BUILDERS = [deeppose_resnet20, heatmap_resnet20]


def _params(module):
    return sum(p.numel() for p in module.parameters())


def _assert_gradients_flow(model, value):
    assert torch.isfinite(value)
    value.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def _train(model, x, y, steps, lr=3e-3):
    """Adam for ``steps`` full-batch steps; the losses before the first and after the last."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        value, parts = model.loss(model(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert all(math.isfinite(v) for v in losses) and set(parts) <= {"ce", "l1", "kl"}
    model.eval()
    return losses[0], model.loss(model(x), y)[0].item()


@pytest.mark.parametrize("size", [64, 30])
def test_segmenter_gives_logits_at_input_resolution(size):
    torch.manual_seed(0)
    model = unet_resnet20(num_classes=5, image_size=size)
    assert model.num_classes == 5 and model.image_size == size and model.takes_targets is False
    assert _params(model) - _params(model.backbone) <= 100_000
    x = torch.rand(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 5, size, size)
    value, parts = model.loss(out, torch.randint(0, 5, (2, size, size)))
    assert set(parts) == {"ce"}
    _assert_gradients_flow(model, value)
    model.eval()
    pred = model.segment(x)
    assert pred.shape == (2, size, size) and pred.dtype == torch.long


@pytest.mark.parametrize("build", POSE_BUILDERS)
def test_pose_models_give_keypoints_in_crop_coordinates(build):
    torch.manual_seed(0)
    model = build(num_keypoints=10, image_size=32)
    assert model.num_classes == 10 and model.image_size == 32 and model.takes_targets is False
    x = torch.rand(3, 3, 32, 32)
    out = model(x)
    assert out.shape == ((3, 10, 2) if build is deeppose_resnet20 else (3, 10, 16, 16))
    targets = torch.cat([torch.rand(3, 10, 2), torch.randint(0, 3, (3, 10, 1)).float()], dim=-1)
    value, _ = model.loss(out, targets)
    _assert_gradients_flow(model, value)
    model.eval()
    kp = model.keypoints(x)
    assert kp.shape == (3, 10, 2) and torch.isfinite(kp).all()


@pytest.mark.parametrize("build", POSE_BUILDERS)
def test_absent_keypoints_do_not_touch_the_loss(build):
    torch.manual_seed(0)
    model = build(num_keypoints=10, image_size=32)
    out = model(torch.rand(2, 3, 32, 32)).detach().requires_grad_()
    targets = torch.cat([torch.rand(2, 10, 2), torch.ones(2, 10, 1)], dim=-1)
    targets[0, 5:, 2] = 0  # a circle: 5 keypoints, then padding
    targets[1, 3:, 2] = 0  # a triangle
    targets[1, 1, 2] = 1  # hidden behind another object: still counts
    value, _ = model.loss(out, targets)
    (grad,) = torch.autograd.grad(value, out)
    for changed in (torch.rand(2, 10, 2) * 5 - 2, torch.full((2, 10, 2), float("nan"))):
        other = targets.clone()
        absent = other[..., 2] == 0
        other[..., :2][absent] = changed[absent]
        value2, _ = model.loss(out, other)
        (grad2,) = torch.autograd.grad(value2, out)
        assert torch.equal(value, value2) and torch.equal(grad, grad2)
    assert value > 0 and (grad[0, 5:] == 0).all() and (grad[1, 3:] == 0).all()


def test_decoding_a_target_heatmap_gives_its_keypoints_back():
    torch.manual_seed(0)
    h, w = 16, 12
    kp = torch.rand(4, 10, 2) * 0.6 + 0.2  # far enough from the edges for a whole 5x5 window
    heat = gaussian_log_targets(kp, (h, w), sigma=1.0).exp()
    assert torch.allclose(heat.sum(dim=(-2, -1)), torch.ones(4, 10))
    error = (decode_heatmaps(heat) - kp) * torch.tensor([w, h])  # in cells
    assert error.abs().max() < 0.1  # soft-argmax: well below the grid's 0.5-cell rounding
    anywhere = torch.cat([torch.rand(1, 200, 2), torch.tensor([[[0.0, 1.0], [0.02, 0.97]]])], dim=1)
    error = (decode_heatmaps(gaussian_log_targets(anywhere, (h, w)).exp()) - anywhere) * torch.tensor([w, h])
    assert error.abs().max() <= 0.5 + 1e-5  # near the edges the window shrinks: half a cell at worst
    model = heatmap_resnet20(num_keypoints=10, image_size=2 * h)
    targets = torch.cat([kp[:, :, :2], torch.full((4, 10, 1), 2.0)], dim=-1)
    value, _ = model.loss(gaussian_log_targets(kp, (h, h)), targets)  # the target itself: KL 0
    assert value.abs() < 1e-5


def test_to_crop_and_from_crop_are_inverses():
    torch.manual_seed(0)
    boxes = torch.rand(6, 2) * 50
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(6, 2) * 30], dim=1)
    kp = torch.cat([torch.rand(6, 10, 2) * 90 - 10, torch.randint(0, 3, (6, 10, 1)).float()], dim=-1)
    assert torch.allclose(from_crop(to_crop(kp, boxes), boxes), kp, atol=1e-4, rtol=0)
    norm = torch.rand(6, 10, 2)
    assert torch.allclose(to_crop(from_crop(norm, boxes), boxes), norm, atol=1e-6, rtol=0)
    corners = to_crop(boxes.view(6, 2, 2), boxes)
    assert torch.allclose(corners, torch.tensor([[0.0, 0.0], [1.0, 1.0]]).expand(6, 2, 2))


@pytest.mark.parametrize("size", [32, 16])
def test_a_bright_pixel_lands_where_to_crop_says(size):
    """Each visible keypoint of a few scenes, painted as one bright pixel on a black image,
    shows up in its object's crop at to_crop(pixel centre), within half a crop pixel."""
    scenes = make_scenes(6, 64, seed=0)
    images, boxes, centres = [], [], []
    for t in scenes.targets:
        for box, kps in zip(t["boxes"], t["keypoints"], strict=True):
            for x, y, v in kps.tolist():
                if v > 0 and 0 <= x < 64 and 0 <= y < 64:
                    image = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
                    image[0, :, int(y), int(x)] = 255
                    images.append(image)
                    boxes.append(box[None])
                    centres.append([int(x) + 0.5, int(y) + 0.5])
    crops, index, crop_boxes = crop_objects(torch.cat(images), boxes, size, margin=0.1)
    assert crops.shape == (len(images), 3, size, size) and crops.dtype == torch.uint8
    assert torch.equal(index, torch.arange(len(images)))
    side = crop_boxes[:, 2:] - crop_boxes[:, :2]
    assert torch.allclose(side[:, 0], side[:, 1])  # square
    boxes = torch.cat(boxes)
    assert (crop_boxes[:, :2] < boxes[:, :2]).all() and (crop_boxes[:, 2:] > boxes[:, 2:]).all()
    want = to_crop(torch.tensor(centres)[:, None], crop_boxes)[:, 0] * size  # in crop pixels
    mass = crops[:, 0].float()
    grid = torch.arange(size) + 0.5
    got = torch.stack([(mass.sum(1) * grid).sum(-1), (mass.sum(2) * grid).sum(-1)], -1)
    got = got / mass.sum((1, 2))[:, None]  # the centroid of the bright pixel's image in the crop
    inside = ((want > 1) & (want < size - 1)).all(-1)  # (a keypoint may lie beyond its box)
    assert inside.sum() > 30 and (got - want)[inside].abs().max() < 0.5


def test_object_crops_pair_crops_with_their_keypoints():
    scenes = make_scenes(3, 64, seed=0)
    crops, kp, index, crop_boxes = object_crops(scenes.x, scenes.targets, 32)
    n = sum(len(t["boxes"]) for t in scenes.targets)
    assert crops.shape == (n, 3, 32, 32) and kp.shape == (n, 10, 3) and index.shape == (n,)
    assert torch.allclose(from_crop(kp, crop_boxes), torch.cat([t["keypoints"] for t in scenes.targets]),
                          atol=1e-4)


def test_a_segmenter_learns_a_few_scenes():
    scenes = make_scenes(8, 64, seed=0)
    torch.manual_seed(0)
    model = unet_resnet20(num_classes=len(scenes.classes) + 1, image_size=64)
    x, y = scenes.x.float() / 255, scenes.class_map.long()
    first, last = _train(model, x, y, steps=40)
    accuracy = (model.segment(x) == y).float().mean()
    assert last < first / 2 and accuracy > (y == 0).float().mean() + 0.05, (first, last, accuracy)


@pytest.mark.parametrize("build", POSE_BUILDERS)
def test_a_pose_model_learns_a_few_objects(build):
    scenes = make_scenes(8, 64, seed=0)
    crops, kp, _, _ = object_crops(scenes.x, scenes.targets, 32)
    x, y = crops[:16].float() / 255, kp[:16]
    torch.manual_seed(0)
    model = build(num_keypoints=10, image_size=32)
    first, last = _train(model, x, y, steps=40)
    visible = y[..., 2] > 0
    error = (model.keypoints(x) - y[..., :2]).norm(dim=-1)[visible]
    guess = (y[..., :2][visible].mean(0) - y[..., :2][visible]).norm(dim=-1)  # one point for all
    assert last < first / 2 and error.mean() < guess.mean() / 2, (first, last, error.mean(), guess.mean())


def test_heads_that_read_resnet_stages_refuse_other_backbones_and_deeppose_takes_any():
    with pytest.raises(CnnlabError, match="CIFAR ResNet"):
        Segmenter(create_model("lenet5", num_classes=5, in_channels=3, image_size=32), 5)
    with pytest.raises(CnnlabError, match="CIFAR ResNet"):
        PoseHeatmap(create_model("lenet5", num_classes=10, in_channels=3, image_size=32), 10)
    model = PoseRegressor(create_model("lenet5", num_classes=10, in_channels=3, image_size=32), 10)
    value, _ = model.loss(model(torch.rand(2, 3, 32, 32)), torch.rand(2, 10, 3))
    value.backward()  # the feature map's layers and the head learn (LeNet's hidden fc layers sit idle)
    for p in (model.fc.weight, model.reduce[0].weight, model.backbone.first_layer().weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
