"""Action recognition: clips as images of stacked frames, through the classifier's trainer."""

import torch

import cnnlab
from cnnlab.data import prepare_data
from cnnlab.models import create_model


def test_videos_load_as_stacked_frames_with_their_action_labels():
    data = prepare_data("videos:n=20", "", 0, 0, seed=0)
    assert data.train.image_shape == (24, 32, 32) and not data.flip_ok  # a mirror swaps left and right
    assert data.train.classes[0] == "left" and len(data.train.classes) == 9


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
