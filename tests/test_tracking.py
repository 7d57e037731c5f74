"""Tracking by detection against known answers: SORT / ByteTrack on made-up scenes whose
identities are known, and our wrapper of motmetrics on cases counted by hand."""

import numpy as np
import pytest
import torch

pytest.importorskip("filterpy")
pytest.importorskip("motmetrics")

from cnnlab.evaluate.tracking import mot_metrics  # noqa: E402
from cnnlab.tracking import KalmanBoxTracker, Tracker, box_iou, track_video  # noqa: E402


def moving_box(t: int, x0: float, y0: float, vx: float, vy: float, w: float = 20,
               h: float = 20) -> np.ndarray:
    """A box (x0, y0, x1, y1) moving at constant velocity, at frame ``t`` (from 0)."""
    x, y = x0 + vx * t, y0 + vy * t
    return np.array([x, y, x + w, y + h], dtype=float)


def scene(paths: list[tuple], frames: int, noise: float = 0.0, seed: int = 0):
    """Detections (boxes, scores 0.9) and MOTChallenge ground truth rows for objects moving along
    ``paths`` (x0, y0, vx, vy); object i has ground-truth id i + 1."""
    rng = np.random.default_rng(seed)
    dets, gt = [], []
    for t in range(frames):
        boxes = np.stack([moving_box(t, *p) for p in paths])
        dets.append((boxes + rng.normal(0, noise, boxes.shape), np.full(len(paths), 0.9)))
        gt += [[t + 1, i + 1, b[0], b[1], b[2] - b[0], b[3] - b[1]] for i, b in enumerate(boxes)]
    return dets, np.array(gt)


def ids_by_frame(hyp: np.ndarray, frames: int) -> list[set[int]]:
    return [set(hyp[hyp[:, 0] == f, 1].astype(int).tolist()) for f in range(1, frames + 1)]


def test_box_iou_agrees_with_torchvision():
    torch = pytest.importorskip("torch")
    from torchvision.ops import box_iou as tv_box_iou

    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 50, (7, 2)), rng.uniform(0, 50, (5, 2))
    a = np.concatenate([a, a + rng.uniform(1, 30, (7, 2))], axis=1)
    b = np.concatenate([b, b + rng.uniform(1, 30, (5, 2))], axis=1)
    expected = tv_box_iou(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), expected, atol=1e-12)


def test_kalman_predicts_a_constant_velocity_box_within_a_pixel():
    kf = KalmanBoxTracker(moving_box(0, 10, 50, 3, -2, w=30, h=20))
    for t in range(1, 8):
        kf.predict()
        kf.update(moving_box(t, 10, 50, 3, -2, w=30, h=20))
    assert np.abs(kf.predict() - moving_box(8, 10, 50, 3, -2, w=30, h=20)).max() < 1.0


def test_sort_keeps_identities_of_two_crossing_objects():
    # A moves right, B left, 8 px lower, 7 px a frame: their 20-px boxes overlap in frames 15-17
    # (IoU 0.43 in frame 16). Matching to last frame's boxes, without the motion model, switches.
    dets, gt = scene([(10, 50, 7, 0), (220, 58, -7, 0)], frames=30, noise=0.5)
    assert box_iou(dets[15][0][:1], dets[15][0][1:]).item() > 0.3
    m = mot_metrics(gt, track_video(dets, byte=False))
    assert (m["num_switches"], m["mota"], m["idf1"]) == (0, 1.0, 1.0)


def test_short_occlusion_is_bridged_by_the_prediction():
    dets, _ = scene([(10, 10, 4, 0), (10, 80, 4, 1)], frames=20)
    for t in (9, 10):  # object 2 unseen in frames 10 and 11
        dets[t] = (dets[t][0][:1], dets[t][1][:1])
    seen = ids_by_frame(track_video(dets, max_age=2), 20)
    assert seen[8] == seen[11] == seen[19] == {1, 2} and seen[9] == seen[10] == {1}
    # with max_age=1 the track dies in the gap, a new one is born and confirmed 3 frames later
    seen = ids_by_frame(track_video(dets, max_age=1), 20)
    assert seen[11] == seen[12] == {1} and seen[13] == seen[19] == {1, 3}


@pytest.mark.parametrize("byte", [True, False])
def test_bytetrack_keeps_a_track_through_low_scores(byte):
    dets, _ = scene([(10, 10, 4, 2)], frames=20)
    for t in range(7, 13):  # six frames at score 0.3: low <= score < high
        dets[t] = (dets[t][0], np.array([0.3]))
    seen = ids_by_frame(track_video(dets, byte=byte, max_age=5), 20)
    if byte:
        assert all(s == {1} for s in seen)
    else:  # SORT drops the detections: a gap longer than max_age, then a new id
        assert seen[6] == {1} and all(s == set() for s in seen[7:15]) and seen[15:] == [{2}] * 5


def test_low_scores_never_start_tracks_and_empty_frames_are_fine():
    tracker = Tracker(byte=True)
    assert tracker.update(np.zeros((0, 4)), np.zeros(0)).shape == (0, 5)
    assert tracker.update(np.array([[0, 0, 10, 10.0]]), np.array([0.3])).shape == (0, 5)
    assert tracker.tracks == []


def test_min_hits_delays_birth_after_the_first_frames():
    dets, _ = scene([(10, 10, 4, 0)], frames=10)
    dets = [(np.zeros((0, 4)), np.zeros(0))] * 4 + dets  # the object appears in frame 5
    seen = ids_by_frame(track_video(dets, min_hits=3), 14)
    assert seen[:6] == [set()] * 6 and seen[6:] == [{1}] * 8  # reported from its 3rd detection


def gt_two_objects(frames: int = 10) -> np.ndarray:
    return np.array([[f, i, 10 + 60 * i, 10, 20, 20] for f in range(1, frames + 1) for i in (1, 2)],
                    dtype=float)


def test_mot_metrics_perfect_and_one_false_positive():
    gt = gt_two_objects()
    m = mot_metrics(gt, gt.copy())
    assert (m["mota"], m["idf1"], m["num_switches"], m["motp"]) == (1.0, 1.0, 0, 0.0)
    hyp = np.concatenate([gt, [[4, 9, 300, 300, 20, 20]]])
    m = mot_metrics(gt, hyp)
    assert m["num_false_positives"] == 1 and m["num_objects"] == len(gt) == 20
    assert m["mota"] == pytest.approx(1 - 1 / 20)


def test_mot_metrics_counts_a_switch_of_one_object():
    # one object, hypothesis id 1 for frames 1-7, id 2 for frames 8-10: 1 switch;
    # IDF1 maps gt 1 to hyp 1: IDTP 7, IDFP 3, IDFN 3 -> 2*7 / (2*7 + 3 + 3) = 0.7
    gt = gt_two_objects()[::2]
    hyp = gt.copy()
    hyp[7:, 1] = 2
    m = mot_metrics(gt, hyp)
    assert m["num_switches"] == 1 and m["idf1"] == pytest.approx(0.7)
    assert m["mota"] == pytest.approx(1 - 1 / 10)


def test_mot_metrics_counts_two_switches_when_ids_are_swapped():
    # two objects whose hypothesis ids swap from frame 6: both switch; IDF1 keeps the first
    # half of each: IDTP 10, IDFP 10, IDFN 10 -> 20 / 40
    gt = gt_two_objects()
    hyp = gt.copy()
    late = hyp[:, 0] >= 6
    hyp[late, 1] = 3 - hyp[late, 1]
    m = mot_metrics(gt, hyp)
    assert m["num_switches"] == 2 and m["idf1"] == pytest.approx(0.5)
    assert m["mota"] == pytest.approx(1 - 2 / 20)


def test_iou_below_the_threshold_is_a_miss_and_a_false_positive():
    gt = gt_two_objects()[:1]
    hyp = gt.copy()
    hyp[0, 2] += 10  # 20-px boxes shifted by 10: IoU 1/3
    assert mot_metrics(gt, hyp)["num_misses"] == 1
    assert mot_metrics(gt, hyp, iou_threshold=0.3)["motp"] == pytest.approx(2 / 3)


def test_clips_are_scored_as_one_sequence_with_ground_truth_detections():
    from cnnlab.data.videos import make_videos
    from cnnlab.tracking.clips import _stack, evaluate_tracking

    videos = make_videos(3, 64, 24, seed=1, max_objects=1)  # one object per clip, never occluded
    result = evaluate_tracking(videos)
    for name in ("SORT, ground-truth boxes", "ByteTrack, ground-truth boxes"):
        m = result[name]
        assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["num_switches"] == 0, name
        assert m["num_objects"] == 3 * 24 and m["num_frames"] == 3 * 24
    rows = _stack([np.asarray(t) for t in videos.tracks], 24)
    assert rows[:, 0].max() == 3 * 24 and len(np.unique(rows[:, 1])) == 3  # no frame or id shared


class _ScriptedDetector:
    """Each frame's true boxes at score 0.5 and one false box at 0.35, frame after frame of the
    clips in order: a detector whose confident boxes are right and whose doubtful ones are not."""

    def __init__(self, videos):
        from cnnlab.data.videos import boxes_at

        self.frames = [boxes_at(t, f) for t in videos.tracks for f in range(1, videos.x.shape[1] + 1)]
        self.i = 0

    def eval(self):
        return self

    def detect(self, x, threshold=0.05):
        out = []
        for _ in range(len(x)):
            boxes, _, _ = self.frames[self.i % len(self.frames)]
            self.i += 1
            boxes = torch.cat([torch.from_numpy(boxes), torch.tensor([[2.0, 2.0, 14.0, 14.0]])])
            scores = torch.tensor([0.5] * (len(boxes) - 1) + [0.35])
            keep = scores >= threshold
            out.append({"boxes": boxes[keep], "scores": scores[keep]})
        return out


def test_the_tracker_threshold_is_chosen_where_it_keeps_true_boxes_and_drops_false_ones():
    from cnnlab.data.videos import make_videos
    from cnnlab.tracking.clips import detector_detections, evaluate_tracking, tune_tracker

    videos = make_videos(2, 64, 16, seed=1, max_objects=1)
    scripted = _ScriptedDetector(videos)
    chosen = tune_tracker(videos, [detector_detections(scripted, clip) for clip in videos.x], byte=False)
    assert chosen["high"] == 0.45  # 0.3 keeps the false box, 0.6 drops the true ones
    tuned = evaluate_tracking(videos, _ScriptedDetector(videos), tuned={"SORT": chosen})
    low = evaluate_tracking(videos, _ScriptedDetector(videos), tuned={"SORT": {"high": 0.3}})
    assert tuned["SORT, detector"]["mota"] > 0.9 > low["SORT, detector"]["mota"]
    assert tuned["SORT, ground-truth boxes"] == low["SORT, ground-truth boxes"]  # set apart


class _TwoClassDetector:
    """One shape per frame seen as two classes (the same box, scores 0.5 and 0.4), and a second
    shape elsewhere: what a per-class NMS returns for an object it cannot classify. Every third
    frame finds nothing."""

    def __init__(self):
        self.i = 0

    def eval(self):
        return self

    def detect(self, x, threshold=0.05):
        boxes = torch.tensor([[10.0, 10.0, 20.0, 20.0], [11.0, 10.0, 21.0, 20.0], [40.0, 40.0, 50.0, 50.0]])
        scores, labels = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0, 1, 0])
        out = []
        for _ in range(len(x)):
            empty = self.i % 3 == 2
            self.i += 1
            out.append({"boxes": boxes[:0] if empty else boxes, "scores": scores[:0] if empty else scores,
                        "labels": labels[:0] if empty else labels})
        return out


def test_tracking_takes_one_box_per_object_whatever_its_class():
    from cnnlab.tracking.clips import detector_detections

    frames = torch.zeros(6, 3, 64, 64, dtype=torch.uint8)
    found = detector_detections(_TwoClassDetector(), frames)
    assert len(found) == 6
    for t, (boxes, scores) in enumerate(found):
        if t % 3 == 2:  # nothing found: empty arrays of the right shape
            assert boxes.shape == (0, 4) and scores.shape == (0,)
            continue
        np.testing.assert_allclose(scores, [0.5, 0.3])  # the circle-or-square is one box, its higher score
        np.testing.assert_allclose(boxes, [[10, 10, 20, 20], [40, 40, 50, 50]])
    per_class = detector_detections(_TwoClassDetector(), frames, agnostic=False)
    assert [len(s) for _, s in per_class] == [3, 3, 0, 3, 3, 0]  # the detector's own output, kept


def test_a_stored_video_result_without_tuned_trackers_still_reads():
    from cnnlab.analysis.video import _byte_words, _tuned_words

    sort = {"mota": 0.7, "num_misses": 10, "num_false_positives": 5}
    byte = {"mota": 0.8, "num_misses": 4, "num_false_positives": 9}
    words = _byte_words({"SORT, detector": sort, "ByteTrack, detector": byte}, None)
    assert words.startswith("ByteTrack's second association") and "6 fewer misses and 4 more" in words
    assert "published settings" in _tuned_words({"tracking": {}})


def test_mota_and_idf1_intervals_resample_clips_whose_counts_sum_to_the_pooled_scores():
    """Identities never cross clips, so the pooled scores are those of the clips' summed counts
    (the intervals' estimates), and a resample of clips is a sum of their counts."""
    from cnnlab.data.videos import make_videos
    from cnnlab.evaluate.tracking import clip_intervals
    from cnnlab.tracking.clips import evaluate_tracking

    videos = make_videos(4, 64, 16, seed=2, max_objects=2)
    result = evaluate_tracking(videos, _ScriptedDetector(videos), tuned={"SORT": {"high": 0.3}})
    m = result["SORT, detector"]  # the false box tracked too: errors in every clip
    assert m["mota_ci"]["estimate"] == pytest.approx(m["mota"]) and m["mota"] < 0.9
    assert m["idf1_ci"]["estimate"] == pytest.approx(m["idf1"]) and m["idf1"] < 0.9
    assert m["mota_ci"]["low"] <= m["mota"] <= m["mota_ci"]["high"]
    # eight clips, the even ones perfect and the odd ones with 4 of 8 boxes missed: a resample's
    # MOTA is 1 - (its odd clips) / 16; the same draws give the quantiles by hand
    perfect = {"num_misses": 0, "num_false_positives": 0, "num_switches": 0, "num_objects": 8,
               "idtp": 8, "idfp": 0, "idfn": 0}
    half = perfect | {"num_misses": 4, "idtp": 4, "idfn": 4}
    ci = clip_intervals([perfect, half] * 4, resamples=400, seed=5)
    draws = np.random.default_rng(5).integers(0, 8, (400, 8))
    by_hand = 1 - (draws % 2).sum(1) / 16
    expected = tuple(np.quantile(by_hand, [0.025, 0.975]))
    assert (ci["mota"]["low"], ci["mota"]["high"]) == pytest.approx(expected)
    assert ci["mota"]["estimate"] == 0.75 and ci["idf1"]["estimate"] == pytest.approx(2 * 48 / (2 * 48 + 16))
    from cnnlab.evaluate.tracking import MIN_CLIPS, mota_difference

    d = mota_difference([perfect] * 8, [perfect, half] * 4, resamples=400, seed=5)
    assert d["estimate"] == -0.25 and (d["low"], d["high"]) == pytest.approx(tuple(e - 1 for e in expected))
    # too few clips for a bootstrap to say anything: no interval (one clip would give width zero)
    few = clip_intervals([perfect, half] * (MIN_CLIPS // 2 - 1))
    assert few["mota"]["estimate"] == 0.75 and np.isinf(few["mota"]["low"]) and np.isinf(few["idf1"]["high"])
    assert np.isinf(mota_difference([perfect], [half])["low"])


def test_the_tracking_claim_needs_the_lower_ends_of_both_intervals_above_the_bar():
    from cnnlab.analysis.video import claims

    def system(mota: tuple, idf1: tuple) -> dict:
        ci = {name: {"estimate": sum(v) / 2, "low": v[0], "high": v[1], "level": 0.95}
              for name, v in (("mota", mota), ("idf1", idf1))}
        return {"mota": ci["mota"]["estimate"], "idf1": ci["idf1"]["estimate"],
                "mota_ci": ci["mota"], "idf1_ci": ci["idf1"]}

    def verdict(mota: tuple, idf1: tuple, sort: dict | None = None):
        tracking = {"ByteTrack, detector": system(mota, idf1)} | ({"SORT, detector": sort} if sort else {})
        (claim,) = claims({"tracking": tracking, "clips": 16, "frames": 32})
        return claim.holds

    assert verdict((0.72, 0.9), (0.8, 0.95)) is True
    assert verdict((0.65, 0.9), (0.8, 0.95)) is None  # its estimate, 0.775, alone would have passed
    assert verdict((0.5, 0.68), (0.8, 0.95)) is False
    # the claim tests ByteTrack, fixed in advance: SORT's better luck does not count
    assert verdict((0.65, 0.9), (0.8, 0.95), sort=system((0.75, 0.9), (0.8, 0.95))) is None


def test_too_few_clips_give_no_interval_and_no_verdict_and_say_so():
    import math

    from cnnlab.analysis.video import claims
    from cnnlab.data.videos import make_videos
    from cnnlab.tracking.clips import evaluate_tracking

    videos = make_videos(3, 48, 16, seed=1, max_objects=2)
    result = evaluate_tracking(videos, _ScriptedDetector(videos))
    assert math.isinf(result["ByteTrack, detector"]["mota_ci"]["low"])
    (claim,) = claims({"tracking": result, "clips": 3, "frames": 16})
    assert claim.holds is None and "too few clips" in claim.verdict
    assert "intervals over clips" not in claim.verdict
