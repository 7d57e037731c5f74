"""videos: seeded clips whose tracks and action labels agree with the drawn pixels."""

import numpy as np
import pytest
import torch

from cnnlab.data.shapes import CLASSES
from cnnlab.data.videos import (
    ACTIONS,
    Mover,
    bounce_path,
    boxes_at,
    make_clip,
    make_videos,
    read_mot,
    render_clip,
    to_mot,
)
from cnnlab.errors import CnnlabError


def _main_rows(clip: dict) -> np.ndarray:
    tracks = clip["tracks"]
    return tracks[tracks[:, 1] == 1]


def _flat(size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), 0.5)


def _mover(track_id: int, label: int, colour, cx, cy, r: float) -> Mover:
    frames = len(cx)
    return Mover(track_id, label, np.array(colour, float), np.asarray(cx, float), np.asarray(cy, float),
                 np.full(frames, r), np.zeros(frames))


def test_videos_are_seeded_shaped_and_balanced():
    a, b = make_videos(18, frames=8, seed=3), make_videos(18, frames=8, seed=3)
    assert a.x.shape == (18, 8, 3, 64, 64) and a.x.dtype == torch.uint8
    assert torch.equal(a.x, b.x) and torch.equal(a.actions, b.actions)
    assert all(np.array_equal(s, t) for s, t in zip(a.tracks, b.tracks, strict=True))
    assert not torch.equal(a.x, make_videos(18, frames=8, seed=4).x)
    assert torch.bincount(a.actions, minlength=len(ACTIONS)).tolist() == [2] * len(ACTIONS)
    assert a.action_names == list(ACTIONS) and a.classes == CLASSES
    for tracks in a.tracks:
        assert tracks.shape[1] == 7 and tracks[:, 0].min() == 1 and tracks[:, 0].max() == 8
        assert (np.diff(tracks[:, 0]) >= 0).all()  # sorted by frame


def test_boxes_lie_in_the_frame_and_fit_the_drawn_object():
    rng = np.random.default_rng(0)
    for i in range(12):
        clip = make_clip(rng, size=64, frames=24, max_objects=4, action=ACTIONS[i % len(ACTIONS)])
        colours = {m.track_id: np.round(m.colour * 255) for m in clip["movers"]}
        labels = {m.track_id: m.label for m in clip["movers"]}
        for (f, tid, x, y, w, h, label), vis in zip(clip["tracks"], clip["visibility"], strict=True):
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= 64 and y + h <= 64
            assert label == labels[tid]
            ys, xs = np.nonzero(clip["id_map"][f - 1] == tid)
            assert [x, y, x + w, y + h] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            if vis == 1:  # unoccluded: the object's own colour fills its pixels and much of its box
                near = np.abs(clip["frames"][f - 1].astype(float) - colours[tid]).max(-1) <= 3
                assert near[ys, xs].mean() > 0.6 and near[y:y + h, x:x + w].mean() > 0.25
        main = _main_rows(clip)
        assert len(main) == 24 and (clip["visibility"][clip["tracks"][:, 1] == 1] == 1).all()


def test_ids_persist_and_boxes_move_at_most_the_objects_speed():
    rng = np.random.default_rng(1)
    for _ in range(10):
        clip = make_clip(rng, frames=32, max_objects=4)
        tracks, vis = clip["tracks"], clip["visibility"]
        assert set(tracks[:, 1]) <= {m.track_id for m in clip["movers"]}
        for m in clip["movers"]:
            # the farthest any point of the shape moves: its centre's step, growth and turn
            step = (np.hypot(np.diff(m.cx), np.diff(m.cy)) + np.abs(np.diff(m.r))
                    + m.r[1:] * np.abs(np.diff(m.theta)))
            seen = {int(r[0]) - 1: r[2:6] for r, v in zip(tracks, vis, strict=True) if r[1] == m.track_id
                    and v == 1 and r[2] > 0 and r[3] > 0 and r[2] + r[4] < 64 and r[3] + r[5] < 64}
            for t in seen.keys() & {t + 1 for t in seen}:
                x0, y0, w, h = seen[t]
                px0, py0, pw, ph = seen[t - 1]
                moved = np.abs([x0 - px0, y0 - py0, x0 + w - px0 - pw, y0 + h - py0 - ph])
                # + 2: edges are whole pixels, and a sharp tip shows only where it covers half a pixel
                assert moved.max() <= step[t - 1] + 2


@pytest.mark.parametrize("action, axis, sign",
                         [("right", 0, 1), ("left", 0, -1), ("down", 1, 1), ("up", 1, -1)])
def test_translation_moves_the_main_box_every_frame(action, axis, sign):
    rng = np.random.default_rng(2)
    for _ in range(5):
        main = _main_rows(make_clip(rng, frames=16, action=action))
        centre = main[:, 2 + axis] + main[:, 4 + axis] / 2
        assert (sign * np.diff(centre) > 0).all()
        clip = make_clip(rng, frames=48, action=action)  # slower: one pixel a frame or less
        centre = _main_rows(clip)[:, 2 + axis] + _main_rows(clip)[:, 4 + axis] / 2
        assert (sign * np.diff(centre) >= 0).all() and sign * (centre[-1] - centre[0]) > 10


@pytest.mark.parametrize("action, sign", [("rotate_cw", 1), ("rotate_ccw", -1)])
def test_rotation_turns_the_main_objects_vertices_the_right_way(action, sign):
    rng = np.random.default_rng(3)
    for _ in range(6):
        clip = make_clip(rng, frames=24, action=action)
        main = clip["movers"][0]
        assert CLASSES[main.label] != "circle"
        kp = clip["keypoints"]  # (T, K, 2), vertices in a fixed order
        angle = np.unwrap(np.arctan2(kp[:, 0, 1] - main.cy, kp[:, 0, 0] - main.cx))
        # y points down, so a growing angle turns clockwise as seen on screen
        assert (sign * np.diff(angle) > 0).all()
        inner = (0.8 * kp + 0.2 * np.stack([main.cx, main.cy], 1)[:, None]).astype(int)  # just inside
        t = np.arange(len(kp))[:, None]
        assert (clip["id_map"][t, inner[..., 1], inner[..., 0]] == 1).all()  # the vertices are drawn
        boxes = _main_rows(clip)[:, 2:6]
        centre = boxes[:, :2] + boxes[:, 2:] / 2
        # in place: a triangle's box centre lies up to r / 4 from its centre
        assert np.abs(centre - [main.cx[0], main.cy[0]]).max() <= main.r[0] / 4 + 1
        assert np.ptp(main.cx) == np.ptp(main.cy) == 0


def test_grow_shrink_and_mover():
    rng = np.random.default_rng(4)
    for _ in range(4):
        grow = _main_rows(make_clip(rng, action="grow"))
        area = grow[:, 4] * grow[:, 5]
        assert (np.diff(area) >= 0).all() and area[-1] > 2 * area[0]
        shrink = _main_rows(make_clip(rng, action="shrink"))
        area = shrink[:, 4] * shrink[:, 5]
        assert (np.diff(area) <= 0).all() and area[0] > 2 * area[-1]
        still = _main_rows(make_clip(rng, action="still"))
        assert (still[:, 2:6] == still[0, 2:6]).all()


def test_an_object_that_leaves_the_frame_has_no_rows_and_returns_with_its_id():
    r = 6.0
    path = bounce_path(np.array([32.0, 32.0]), np.array([3.0, 0.0]), np.zeros(2), 50, -20.0, 64 + 20.0)
    leaver = _mover(2, 0, (1, 0, 0), path[:, 0], path[:, 1], r)
    main = _mover(1, 1, (0, 0, 1), np.full(50, 10.0), np.full(50, 10.0), r)
    tracks = render_clip(_flat(), [leaver, main])["tracks"]
    frames = set(tracks[tracks[:, 1] == 2, 0] - 1)
    outside = np.flatnonzero(path[:, 0] - r > 64)
    inside = np.flatnonzero((path[:, 0] - r > 0) & (path[:, 0] + r < 64))
    assert len(outside) > 5 and not frames & set(outside)
    assert set(inside) <= frames and inside.max() > outside.max()  # back, with id 2
    assert len(tracks[tracks[:, 1] == 1]) == 50


def test_random_clips_have_objects_that_leave_and_return():
    gaps = 0
    for tracks in make_videos(27, frames=48, seed=5, max_objects=4).tracks:
        for tid in np.unique(tracks[:, 1]):
            seen = tracks[tracks[:, 1] == tid, 0]
            gaps += len(seen) < seen.max() - seen.min() + 1
    assert gaps >= 3


def test_a_hidden_object_has_no_row_and_the_top_one_wins():
    frames = 3
    small = _mover(2, 1, (1, 0, 0), np.full(frames, 30.0), np.full(frames, 30.0), 4.0)
    big = _mover(1, 0, (0, 1, 0), np.full(frames, 30.0), np.full(frames, 30.0), 12.0)
    clip = render_clip(_flat(), [small, big])
    assert clip["tracks"][:, 1].tolist() == [1, 1, 1]  # the small square is wholly behind the circle
    assert clip["frames"][0, 30, 30].tolist() == [0, 255, 0]
    clip = render_clip(_flat(), [big, small])
    assert clip["tracks"][:, 1].tolist() == [1, 2] * frames
    assert clip["frames"][0, 30, 30].tolist() == [255, 0, 0] and (clip["visibility"] < 1).any()


def test_mot_text_round_trip_and_boxes_at():
    tracks = make_clip(np.random.default_rng(6), frames=6, max_objects=3)["tracks"]
    text = to_mot(tracks)
    f, tid, x, y, w, h, label = tracks[0]
    assert text.splitlines()[0] == f"{f},{tid},{x},{y},{w},{h},1,{label},1.0"
    assert np.array_equal(read_mot(text), tracks)
    odd = np.array([[3, 7, 1.25, 2.5, 10.125, 4.0, 2]])
    assert np.array_equal(read_mot(to_mot(odd)), odd)
    assert read_mot("1,2,3,4,5,6,0.9,-1,-1,-1\n")[0, -1] == -1  # a tracker's result line
    boxes, ids, labels = boxes_at(tracks, 1)
    first = tracks[tracks[:, 0] == 1]
    assert boxes.dtype == np.float32 and boxes.shape == (len(first), 4)
    assert np.array_equal(boxes[:, 2:] - boxes[:, :2], first[:, 4:6])
    assert ids.tolist() == first[:, 1].tolist() and labels.tolist() == first[:, 6].tolist()
    assert boxes_at(tracks, 99)[0].shape == (0, 4)


def test_bad_arguments_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(CnnlabError, match="unknown action"):
        make_clip(rng, action="jump")
    with pytest.raises(CnnlabError, match="frames"):
        make_clip(rng, frames=1)


def test_a_folder_of_frames_is_read_in_frame_order(tmp_path):
    """Found by probing: frame0, frame1, frame10, ..., frame2 (ffmpeg's unpadded frame%d names)
    were read as text sorts them, and tracking counted 6 objects where there were 2."""
    from PIL import Image

    from cnnlab.video_files import read_video

    for t in range(12):
        Image.new("RGB", (8, 8), (t * 20, 0, 0)).save(tmp_path / f"frame{t}.png")
    frames = read_video(tmp_path)
    assert frames[:, 0, 0, 0].tolist() == [t * 20 for t in range(12)]
