"""scenes: exact annotations by construction; detection mAP wired to the COCO evaluation."""

import numpy as np
import pytest
import torch

from cnnlab.data.scenes import MAX_KEYPOINTS, MIN_VISIBLE, _keypoints, make_scenes
from cnnlab.errors import CnnlabError


def test_scenes_are_seeded_and_their_annotations_agree_with_each_other():
    a, b = make_scenes(20, 64, seed=3), make_scenes(20, 64, seed=3)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, make_scenes(20, 64, seed=4).x)
    for i, t in enumerate(a.targets):
        masks, boxes = t["masks"], t["boxes"]
        assert len(masks) == len(boxes) == len(t["labels"]) >= 1
        for m, box, label in zip(masks, boxes, t["labels"], strict=True):
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # box of the mask
            assert (a.class_map[i][m] == label + 1).all()  # class map = masks' classes
        assert (a.class_map[i] > 0).sum() == masks.sum()  # masks do not overlap, cover the map
        assert t["keypoints"].shape == (len(boxes), MAX_KEYPOINTS, 3)


def test_keypoints_start_at_the_top_and_go_clockwise():
    square = _keypoints("square", 10, 10, 5, 0.3)
    assert np.argmin(square[:, 1]) == 0  # the topmost first
    angles = np.unwrap(np.arctan2(square[:, 1] - 10, square[:, 0] - 10))
    assert (np.diff(angles) > 0).all()  # increasing angle with y down: clockwise on screen
    circle = _keypoints("circle", 10, 10, 4, 0.0)
    assert circle.tolist() == [[10, 10], [10, 6], [14, 10], [10, 14], [6, 10]]
    assert MIN_VISIBLE > 0


def test_map_wiring_on_hand_made_boxes():
    pytest.importorskip("torchmetrics")
    pytest.importorskip("faster_coco_eval")
    from cnnlab.evaluate.detection import detection_map

    targets = [{"boxes": [[10, 10, 30, 30], [40, 40, 60, 60]], "labels": [0, 1]}]
    perfect = [{"boxes": [[10, 10, 30, 30], [40, 40, 60, 60]], "scores": [0.9, 0.8], "labels": [0, 1]}]
    r = detection_map(perfect, targets, ["a", "b"])
    assert r["map"] == pytest.approx(1.0) and r["per_class"] == {"a": 1.0, "b": 1.0}
    # class b found with IoU 400 / 510 = 0.784: a match at the thresholds 0.50, 0.55, ..., 0.75
    # (6 of COCO's 10), none from 0.80 on: AP@0.5:0.95 = 0.6
    shifted = [{"boxes": [[10, 10, 30, 30], [40, 40, 60, 65.5]], "scores": [0.9, 0.8], "labels": [0, 1]}]
    r = detection_map(shifted, targets, ["a", "b"])
    assert r["map_50"] == pytest.approx(1.0) and r["per_class"]["b"] == pytest.approx(0.6, abs=1e-6)
    missed = [{"boxes": [[10, 10, 30, 30]], "scores": [0.9], "labels": [0]}]
    assert detection_map(missed, targets, ["a", "b"])["map"] == pytest.approx(0.5)


def test_scenes_take_a_most_objects_setting_and_refuse_a_bad_one():
    from cnnlab.data import load_dataset

    splits = load_dataset("scenes:n=20,objects=1", "", 48)
    counts = (splits.train.extras["labels"] >= 0).sum(1)
    assert splits.train.x.shape[-1] == 48 and (counts == 1).all()
    with pytest.raises(CnnlabError, match="objects between 1 and 8"):
        load_dataset("scenes:n=20,objects=9", "", 48)
    with pytest.raises(CnnlabError, match=r"scenes:n=COUNT\[,objects=K\]"):
        load_dataset("scenes:size=3", "", 48)


def test_pose_heads_are_compared_per_object_not_per_keypoint():
    """Review defect: McNemar over keypoints treats one object's keypoints as independent.
    Two of ten objects entirely better: 20 keypoints agree (keypoint McNemar p = 2e-6), but
    two objects of ten are no evidence."""
    from cnnlab.analysis.scenes import compare_pose
    from cnnlab.evaluate.stats import mcnemar

    labelled = np.ones((10, 10), bool)
    a = np.zeros((10, 10), bool)
    b = a.copy()
    b[:2] = True
    assert mcnemar(a.ravel(), b.ravel()).p_value < 1e-5  # what the old test said
    res = compare_pose((a, labelled), (b, labelled))
    assert not res["significant"] and res["objects"] == 10
    b[:9] = True  # nine objects of ten: that is evidence
    assert compare_pose((a, labelled), (b, labelled))["significant"]


def test_each_pose_heads_pck_interval_is_drawn_over_objects():
    """Keypoints of one object move together: five of ten objects wholly right is PCK 0.5 over 100
    keypoints, but ten objects' worth of evidence (a Wilson interval over keypoints says 0.40-0.60)."""
    from cnnlab.analysis.scenes import compare_pose
    from cnnlab.evaluate.stats import proportion_ci

    labelled = np.ones((10, 10), bool)
    a = np.zeros((10, 10), bool)
    a[:5] = True
    ci = compare_pose((a, labelled), (a, labelled))["pck_ci"]["regression"]
    wilson = proportion_ci(50, 100)
    assert ci["estimate"] == pytest.approx(0.5)
    assert ci["low"] < wilson.low - 0.05 and ci["high"] > wilson.high + 0.05
