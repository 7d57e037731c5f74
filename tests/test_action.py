"""Action recognition: clips as images of stacked frames, through the classifier's trainer."""

import pytest
import torch

import cnnlab
from cnnlab import CnnlabError
from cnnlab.data import prepare_data
from cnnlab.models import create_model


def test_videos_load_as_stacked_frames_with_their_action_labels():
    data = prepare_data("videos:n=20", "", 0, 0, seed=0)
    assert data.train.image_shape == (24, 32, 32) and not data.flip_ok  # a mirror swaps left and right
    assert data.train.classes[0] == "left" and len(data.train.classes) == 9


def test_action_clips_can_hold_the_acting_shape_alone():
    from cnnlab.data.videos import make_videos

    alone = prepare_data("videos:n=20,objects=1", "", 16, 0, seed=0)
    assert alone.train.image_shape == (24, 16, 16) and "no other object" in alone.source
    clips = make_videos(20, 16, frames=16, seed=0, max_objects=1)
    assert {int(t[:, 1].max()) for t in clips.tracks} == {1}  # one track id in every clip
    assert torch.equal(alone.train.x, clips.x[:, ::2].reshape(20, 24, 16, 16))
    with pytest.raises(CnnlabError, match=r"videos:n=COUNT\[,objects=K\]"):
        prepare_data("videos:n=20,crowd=2", "", 0, 0, seed=0)


def test_the_frame_average_forgets_order_and_the_2plus1d_model_does_not():
    clip = torch.rand(1, 24, 32, 32)
    backwards = clip.reshape(1, 8, 3, 32, 32).flip(1).reshape(1, 24, 32, 32)
    for name, same in (("framepool", True), ("r2plus1d", False)):
        torch.manual_seed(0)
        model = create_model(name, num_classes=9, in_channels=24, image_size=32).eval()
        with torch.no_grad():
            assert torch.allclose(model(clip), model(backwards), atol=1e-5) == same, name


def test_both_clip_models_train_and_report(tmp_path):
    for name in ("framepool", "r2plus1d"):
        run = cnnlab.train(cnnlab.TrainConfig(dataset="videos:n=27", model=name, epochs=1, batch_size=9,
                                              out_dir=str(tmp_path), name=name), log=lambda s: None)
        assert 0 <= run.metrics["accuracy"] <= 1 and (run.path / "report.html").is_file()


def _gif(path, frames: int = 16):
    from PIL import Image

    from cnnlab.data.videos import make_videos

    clip = make_videos(1, 64, frames, seed=7).x[0]
    images = [Image.fromarray(f.permute(1, 2, 0).numpy()).resize((96, 80)) for f in clip]
    images[0].save(path, save_all=True, append_images=images[1:], duration=80, loop=0)


def test_track_and_action_on_a_video_file_and_bad_files_get_one_line(tmp_path, capsys):
    from cnnlab.cli import main

    _gif(tmp_path / "clip.gif")
    base = dict(model_kwargs={"width": 4}, epochs=1, batch_size=8, out_dir=str(tmp_path), optimizer="adamw",
                lr=0.003)
    det = cnnlab.train(cnnlab.TrainConfig(task="detect", dataset="scenes:n=16", model="resnet20", name="det",
                                          **base), log=lambda s: None, report=False)
    assert main(["track", str(det.path), str(tmp_path / "clip.gif"), "--out", str(tmp_path / "t.mp4")]) == 0
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "t.mp4", index=None).shape[0] == 16  # every frame, drawn
    assert (tmp_path / "t.txt").is_file()
    assert main(["track", str(det.path), str(tmp_path / "clip.gif"), "--out", str(tmp_path / "p.gif"),
                 "--per-class-nms"]) == 0  # the detector's boxes as they come (tested in test_tracking)
    assert (tmp_path / "p.gif").is_file() and (tmp_path / "p.txt").is_file()
    cfg = cnnlab.TrainConfig(dataset="videos:n=18", model="r2plus1d", epochs=1, batch_size=9,
                             out_dir=str(tmp_path), name="act")
    act = cnnlab.train(cfg, log=lambda s: None, report=False)
    capsys.readouterr()
    assert main(["action", str(act.path), str(tmp_path / "clip.gif")]) == 0
    said = capsys.readouterr()
    assert said.out.split("\t")[0] in act.classes and "frames were repeated" not in said.err
    _gif(tmp_path / "short.gif", frames=2)  # fewer frames than the model reads (probing)
    assert main(["action", str(act.path), str(tmp_path / "short.gif")]) == 0
    assert "the clip has 2 frames" in capsys.readouterr().err
    (tmp_path / "bad.mp4").write_text("not a video")
    assert main(["track", str(det.path), str(tmp_path / "bad.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not be decoded as a video" in err[0]
    assert main(["action", str(det.path), str(tmp_path / "clip.gif")]) == 2
    assert "is not an action run" in capsys.readouterr().err


def test_the_video_analysis_tracks_and_compares_the_action_models(tmp_path):
    from cnnlab.analysis import run_analysis

    run = cnnlab.train(cnnlab.TrainConfig(epochs=1, out_dir=str(tmp_path), name="base"), log=lambda s: None,
                       report=False)
    res = run_analysis(run, "video", log=lambda s: None, clips=2, frames=16, n_train=40, epochs=1, width=4,
                       tune_clips=2, action_clips=45, action_epochs=1)
    assert set(res["tracking"]) == {"SORT, ground-truth boxes", "ByteTrack, ground-truth boxes",
                                    "SORT, detector", "ByteTrack, detector"}
    assert set(res["tuned"]) == {"SORT", "ByteTrack"} and res["tune_clips"] == 2
    cms = res["action"]["confusion"]
    assert sum(map(sum, cms["r2plus1d"])) == res["action"]["n_test"] == 100  # every test clip once
    html = (cnnlab.render_report(run)).read_text()
    assert "One clip, tracked" in html and "Confusion matrix: r2plus1d" in html
