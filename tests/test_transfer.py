"""--init-from RUN: a trained body starts another model (a classifier's layers, a detector's
backbone), heads start fresh, and one line says what moved."""

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.training.transfer import body_tensors, init_from


def quiet(line: str) -> None:
    pass


def test_a_detectors_backbone_starts_a_segmenter_and_its_head_starts_fresh(tmp_path):
    scenes = dict(dataset="scenes:n=24,objects=2", image_size=48, model="resnet20",
                  model_kwargs={"width": 4}, epochs=1, batch_size=8, optimizer="adamw", lr=0.003,
                  out_dir=str(tmp_path))
    det = cnnlab.train(cnnlab.TrainConfig(task="detect", name="det", **scenes), log=quiet, report=False)
    lines = []
    seg = cnnlab.train(cnnlab.TrainConfig(task="segment", name="seg", epochs=1, init_from=str(det.path),
                                          **{k: v for k, v in scenes.items() if k != "epochs"}),
                       log=lines.append, report=False)
    said = next(s for s in lines if s.startswith("init from"))
    assert "kept" in said and "start fresh" in said
    # the backbone the segmenter started from is the detector's (before its own training moved it)
    det_body = body_tensors(det.load_model().state_dict())
    fresh = cnnlab.load_run(seg.path).load_model()
    moved = init_from(fresh, det.path, quiet)
    assert moved["kept"] == len([k for k in det_body if f"backbone.{k}" in fresh.state_dict()])
    assert torch.equal(fresh.state_dict()["backbone.conv1.weight"], det_body["conv1.weight"])


def test_a_classifier_body_starts_another_classifier_and_a_mismatch_is_one_line(tmp_path):
    base = cnnlab.train(cnnlab.TrainConfig(model="lenet5", epochs=1, limit_train=200, out_dir=str(tmp_path),
                                           name="a"), log=quiet, report=False)
    model = cnnlab.create_model("lenet5", num_classes=3, in_channels=1, image_size=8)
    moved = init_from(model, base.path, quiet)
    assert moved["kept"] > 0 and torch.equal(model.state_dict()["conv1.weight"],
                                             base.load_model().state_dict()["conv1.weight"])
    assert model.fc.weight.shape[0] == 3  # the head: fresh, for its own classes
    with pytest.raises(CnnlabError, match="none of its tensors fit this model"):
        init_from(cnnlab.create_model("mlp", num_classes=3, in_channels=1, image_size=8), base.path, quiet)
    with pytest.raises(CnnlabError, match="no trained weights there"):
        init_from(model, tmp_path / "nowhere", quiet)
