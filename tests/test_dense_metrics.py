"""Segmentation IoU, PCK, COCO keypoint AP and precision-recall curves against known answers."""

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from cnnlab.evaluate.detection import detection_map, precision_recall
from cnnlab.evaluate.pose import DEFAULT_SIGMA, _coco_keypoint_eval, keypoint_ap, keypoint_hits, pck, pck_ci
from cnnlab.evaluate.segmentation import segmentation_iou

NAMES = ["background", "circle", "square", "triangle"]


# --- segmentation ---------------------------------------------------------------------------

def test_segmentation_iou_on_a_hand_computed_case():
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]], [[2, 2, 0, 0], [2, 2, 0, 0]]])
    pred = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 0]], [[2, 2, 2, 2], [0, 2, 0, 0]]])
    r = segmentation_iou(pred, target, NAMES)
    # background: 5 shared of 10 in either; circle: 3 of 5; square: 3 of 6; triangle: nowhere
    expected = {"background": 0.5, "circle": 0.6, "square": 0.5, "triangle": None}
    assert r["per_class"] == pytest.approx(expected)
    assert r["miou"] == pytest.approx((0.5 + 0.6 + 0.5) / 3)
    assert r["pixel_accuracy"] == pytest.approx(11 / 16)


def test_a_class_only_predicted_counts_as_zero():
    target = torch.zeros(1, 2, 4, dtype=torch.long)
    pred = target.clone()
    pred[0, 0, 0] = 3
    r = segmentation_iou(pred, target, NAMES)
    expected = {"background": 7 / 8, "circle": None, "square": None, "triangle": 0.0}
    assert r["per_class"] == pytest.approx(expected)
    assert r["miou"] == pytest.approx(7 / 16)


def test_segmentation_iou_agrees_with_scikit_learn(rng):
    target = torch.from_numpy(rng.integers(0, 3, (3, 8, 8)))
    pred = torch.where(torch.from_numpy(rng.random((3, 8, 8)) < 0.7), target,
                       torch.from_numpy(rng.integers(0, 3, (3, 8, 8))))
    r = segmentation_iou(pred, target, NAMES)
    t, p = target.reshape(-1).numpy(), pred.reshape(-1).numpy()
    expected = skm.jaccard_score(t, p, labels=[0, 1, 2], average=None)
    assert [r["per_class"][n] for n in NAMES[:3]] == pytest.approx(expected.tolist())
    assert r["per_class"]["triangle"] is None
    assert r["miou"] == pytest.approx(skm.jaccard_score(t, p, labels=[0, 1, 2], average="macro"))
    assert r["pixel_accuracy"] == pytest.approx(skm.accuracy_score(t, p))


# --- PCK -------------------------------------------------------------------------------------

def test_pck_on_a_hand_computed_case():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # longer side 20: tolerance 2 pixels at alpha 0.1
    gt = torch.tensor([[[5, 5, 2], [5, 5, 2], [5, 5, 2], [5, 5, 0], [5, 5, 1], [5, 5, 0]]], dtype=torch.float)
    pred = torch.tensor([[[6, 5], [5, 7], [8, 5], [50, 50], [5, 5], [5, 5]]], dtype=torch.float)
    r = pck(pred, gt, boxes)
    # distances 1, 2 (on the boundary), 3, unlabelled, 0, unlabelled
    assert r == {"pck": 3 / 4, "per_keypoint": [1.0, 1.0, 0.0, None, 1.0, None], "n": 4}
    assert pck(pred, gt, boxes, alpha=0.2)["pck"] == 1.0
    assert pck(pred, gt * torch.tensor([1, 1, 0]), boxes) == {"pck": None, "per_keypoint": [None] * 6, "n": 0}


def test_pck_averages_over_objects_per_keypoint():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 100.0, 50.0]])  # tolerances 1 and 10
    gt = torch.zeros(2, 2, 3)
    gt[..., 2] = 2
    pred = torch.tensor([[[0.0, 5.0], [0.0, 0.5]], [[0.0, 5.0], [0.0, 20.0]]])
    assert pck(pred, gt, boxes) == {"pck": 0.5, "per_keypoint": [0.5, 0.5], "n": 4}


def test_the_pck_interval_resamples_whole_objects():
    # 40 objects of 5 keypoints: 20 wholly right, 20 wholly wrong, 10 unlabelled objects between
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(50, 1)
    gt = torch.zeros(50, 5, 3)
    gt[:40, :, 2] = 2
    pred = torch.zeros(50, 5, 2)
    pred[20:40] = 5.0  # 7 pixels off against a tolerance of 1
    correct, labelled = keypoint_hits(pred, gt, boxes)
    ci = pck_ci(correct.numpy(), labelled.numpy(), resamples=4000, seed=1)
    assert ci["estimate"] == pck(pred, gt, boxes)["pck"] == 0.5
    # the objects are the draws: half-width about 1.96 * sqrt(0.25 / 40) = 0.155, where
    # counting the 200 keypoints as independent would give 0.069
    assert 0.13 < (ci["high"] - ci["low"]) / 2 < 0.18
    assert pck_ci(correct.numpy() | labelled.numpy(), labelled.numpy(), resamples=100) | {"level": 0} == {
        "estimate": 1.0, "low": 1.0, "high": 1.0, "level": 0}
    with pytest.raises(ValueError, match="no labelled keypoint"):
        pck_ci(correct.numpy()[40:], labelled.numpy()[40:])


# --- COCO keypoint AP ------------------------------------------------------------------------

def _targets(rng, k=10, images=3, per_image=3):
    """Random objects: boxes of 12 to 40 pixels, keypoints inside, some unlabelled (v=0)."""
    targets = []
    for _ in range(images):
        x0 = rng.uniform(0, 60, (per_image, 2))
        boxes = np.concatenate([x0, x0 + rng.uniform(12, 40, (per_image, 2))], 1)
        kps = np.zeros((per_image, k, 3))
        size = boxes[:, None, 2:] - boxes[:, None, :2]
        kps[..., :2] = boxes[:, None, :2] + rng.random((per_image, k, 2)) * size
        kps[..., 2] = rng.choice([0, 1, 2], (per_image, k), p=[0.2, 0.3, 0.5])
        kps[:, 0, 2] = 2  # every object has a labelled keypoint
        targets.append({"keypoints": torch.tensor(kps), "boxes": torch.tensor(boxes),
                        "labels": torch.tensor(rng.integers(0, 2, per_image))})
    return targets


def _predict(targets, shift=0.0, sigma=DEFAULT_SIGMA, seed=0):
    """Predictions at the ground truth, each moved by ``shift`` * s * k in a random direction;
    unlabelled keypoints put far away, which must not matter."""
    rng, preds = np.random.default_rng(seed), []
    for t in targets:
        kps = t["keypoints"].clone()
        s = (t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(1).sqrt()  # sqrt of the default area
        angle = torch.from_numpy(rng.uniform(0, 2 * np.pi, kps.shape[:2]))
        d = shift * s[:, None] * 2 * sigma
        kps[..., 0] += d * angle.cos()
        kps[..., 1] += d * angle.sin()
        kps[..., :2] = torch.where(kps[..., 2:] > 0, kps[..., :2], torch.tensor(-500.0))
        preds.append({"keypoints": kps, "scores": torch.linspace(0.9, 0.5, len(kps)), "labels": t["labels"]})
    return preds


def test_perfect_keypoints_give_ap_one(rng):
    targets = _targets(rng)
    assert keypoint_ap(_predict(targets), targets) == {"ap": 1.0, "ap50": 1.0, "ap75": 1.0}
    xy_only = [dict(p, keypoints=p["keypoints"][..., :2]) for p in _predict(targets)]
    assert keypoint_ap(xy_only, targets)["ap"] == 1.0


@pytest.mark.parametrize("k", [10, 17])
def test_shifted_keypoints_give_the_oks_of_the_formula(rng, k):
    """A shift of s * k gives OKS = exp(-1/2) = 0.607 for every object: it passes the thresholds
    0.50, 0.55, 0.60 only, so AP = 3/10. With K = 17 the evaluator would silently take COCO's
    person sigmas were ours not passed."""
    targets = _targets(rng, k=k)
    preds = _predict(targets, shift=1.0)
    assert keypoint_ap(preds, targets) == pytest.approx({"ap": 0.3, "ap50": 1.0, "ap75": 0.0})
    # sigma 0.1 doubles k: OKS = exp(-1/8) = 0.88 passes 0.50 .. 0.85, AP = 8/10
    wider = keypoint_ap(preds, targets, sigmas=[0.1] * k)
    assert wider == pytest.approx({"ap": 0.8, "ap50": 1.0, "ap75": 1.0})
    evaluator = _coco_keypoint_eval(preds, targets, None)
    assert evaluator.params.kpt_oks_sigmas.tolist() == [DEFAULT_SIGMA] * k


def test_oks_matrix_matches_hand_computation(rng):
    """exp(-d^2 / (2 s^2 k^2)), k = 2 sigma, s^2 = the area, averaged over keypoints with v > 0."""
    k = 6
    sigmas = rng.uniform(0.03, 0.1, k)
    gt = torch.tensor([[[10, 10, 2], [20, 10, 1], [15, 20, 0], [12, 18, 2], [18, 18, 2], [15, 5, 2]]],
                      dtype=torch.float64).repeat(2, 1, 1)
    gt[1, :, :2] += 3.0
    target = {"keypoints": gt, "boxes": torch.tensor([[8.0, 4, 22, 22], [11, 7, 25, 25]]),
              "labels": torch.tensor([1, 1]), "area": torch.tensor([150.0, 300.0])}
    det = gt[[0, 1, 0], :, :2] + torch.from_numpy(rng.normal(0, 1.5, (3, k, 2)))
    pred = {"keypoints": det, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 1, 1])}
    evaluator = _coco_keypoint_eval([pred], [target], sigmas.tolist())
    labelled = (gt[:, :, 2] > 0).numpy()
    expected = np.zeros((3, 2))
    for i in range(3):
        for j in range(2):
            d2 = ((det[i] - gt[j, :, :2]) ** 2).sum(-1).numpy()
            oks = np.exp(-d2 / (2 * target["area"][j].item() * (2 * sigmas) ** 2))
            expected[i, j] = oks[labelled[j]].mean()
    assert np.asarray(evaluator.ious[(0, 1)]) == pytest.approx(expected)


def test_no_or_wrong_predictions_give_ap_zero(rng):
    targets = _targets(rng)
    empty = [{"keypoints": torch.zeros(0, 10, 3), "scores": torch.zeros(0), "labels": torch.zeros(0)}] * 3
    assert keypoint_ap(empty, targets) == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
    wrong_class = [dict(p, labels=1 - p["labels"]) for p in _predict(targets)]
    assert keypoint_ap(wrong_class, targets)["ap"] == 0.0  # OKS only matches within a class


def test_keypoint_ap_refuses_sigmas_of_the_wrong_length(rng):
    targets = _targets(rng)
    with pytest.raises(ValueError, match="sigma"):
        keypoint_ap(_predict(targets), targets, sigmas=[0.05] * 17)


# --- precision-recall curves -----------------------------------------------------------------

def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float)


def test_perfect_detections_have_precision_one_at_every_recall():
    targets = [{"boxes": _boxes([0, 0, 10, 10], [20, 20, 40, 30]), "labels": torch.tensor([0, 1])},
               {"boxes": _boxes([5, 5, 25, 25]), "labels": torch.tensor([0])}]
    preds = [dict(t, scores=torch.full((len(t["labels"]),), 0.9)) for t in targets]
    preds[1] = {"boxes": _boxes([5, 5, 25, 25], [40, 40, 60, 60]), "labels": torch.tensor([0, 2]),
                "scores": torch.tensor([0.9, 0.8])}  # a class without ground truth is left out
    curves = precision_recall(preds, targets, NAMES[:3])
    assert set(curves) == {"background", "circle"}
    for recall, precision in curves.values():
        assert recall == pytest.approx(np.linspace(0, 1, 101))
        assert (precision == 1.0).all()


def test_a_false_positive_ranked_first_halves_precision():
    targets = [{"boxes": _boxes([0, 0, 10, 10]), "labels": torch.tensor([1])}]
    preds = [{"boxes": _boxes([30, 30, 40, 40], [0, 0, 10, 10]), "labels": torch.tensor([1, 1]),
              "scores": torch.tensor([0.9, 0.8])}]
    recall, precision = precision_recall(preds, targets, NAMES)["circle"]
    assert precision == pytest.approx(np.full(101, 0.5))  # recall 1 is reached at precision 1/2


def test_precision_recall_follows_the_iou_threshold_and_averages_to_ap(rng):
    targets = [{"boxes": _boxes([0, 0, 10, 10]), "labels": torch.tensor([0])}]
    preds = [{"boxes": _boxes([0, 0, 10, 6]), "labels": torch.tensor([0]), "scores": torch.tensor([0.9])}]
    assert (precision_recall(preds, targets, NAMES, iou=0.5)["background"][1] == 1.0).all()  # IoU 0.6
    assert (precision_recall(preds, targets, NAMES, iou=0.75)["background"][1] == 0.0).all()
    # on a random single-class case COCO's AP@0.5 is the mean of the 101 precisions
    boxes = torch.from_numpy(rng.uniform(0, 50, (8, 2))).float()
    boxes = torch.cat([boxes, boxes + 10], 1)
    targets = [{"boxes": boxes, "labels": torch.zeros(8, dtype=torch.long)}]
    noisy = boxes + torch.from_numpy(rng.normal(0, 2.5, (8, 4))).float()
    scores = torch.from_numpy(rng.random(8)).float()
    preds = [{"boxes": noisy, "labels": torch.zeros(8, dtype=torch.long), "scores": scores}]
    _, precision = precision_recall(preds, targets, NAMES)["background"]
    assert 0 < precision.mean() < 1
    assert math.isclose(precision.mean(), detection_map(preds, targets, NAMES)["map_50"], abs_tol=1e-6)


def test_the_miou_interval_pools_resampled_images_as_the_miou_pools_all():
    import torch

    from cnnlab.evaluate.segmentation import miou_ci, segmentation_iou

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (40, 12, 12), generator=g)
    noise = torch.randint(0, 4, (40, 12, 12), generator=g)
    pred = torch.where(torch.rand(40, 12, 12, generator=g) < 0.7, target, noise)
    ci = miou_ci(pred, target, 4, resamples=500)
    assert ci["estimate"] == pytest.approx(segmentation_iou(pred, target, list("abcd"))["miou"])
    assert ci["low"] < ci["estimate"] < ci["high"]
    assert miou_ci(target, target, 4, resamples=200) | {"level": 0} == {"estimate": 1.0, "low": 1.0,
                                                                     "high": 1.0, "level": 0}
    # one image's pixels: every resample is that image, so the interval is the point
    one = miou_ci(pred[:1], target[:1], 4, resamples=50)
    assert one["low"] == one["high"] == pytest.approx(one["estimate"])


def _half_found(n: int) -> tuple[list[dict], list[dict]]:
    """n images of one box each; the even ones found exactly, the odd ones missed."""
    box = _boxes([4, 4, 20, 20])
    targets = [{"boxes": box, "labels": torch.tensor([1])} for _ in range(n)]
    preds = [{"boxes": box[: 1 - i % 2], "labels": torch.tensor([1] * (1 - i % 2)).long(),
              "scores": torch.tensor([0.9] * (1 - i % 2))} for i in range(n)]
    return preds, targets


def test_the_map_interval_resamples_images_through_the_whole_coco_evaluation():
    from cnnlab.evaluate.detection import detection_map_ci

    preds, targets = _half_found(12)
    ci = detection_map_ci(preds, targets, resamples=60, seed=3)
    assert ci["estimate"] == pytest.approx(detection_map(preds, targets, NAMES)["map"])
    # the reference: the same draws, each resample scored by detection_map on its own images
    draws = np.random.default_rng(3).integers(0, 12, (60, 12))
    by_hand = [detection_map([preds[i] for i in d], [targets[i] for i in d], NAMES)["map"] for d in draws]
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.quantile(by_hand, [0.025, 0.975])))
    assert ci["low"] < ci["estimate"] < ci["high"]
    found = [p for p in preds[::2] for _ in range(2)]  # every image found: no spread at all
    assert detection_map_ci(found, targets, resamples=20) | {"level": 0} == {
        "estimate": 1.0, "low": 1.0, "high": 1.0, "level": 0}
    wide = detection_map_ci(*_half_found(48), resamples=60, seed=3)  # 4x the images: narrower
    assert wide["high"] - wide["low"] < ci["high"] - ci["low"]
