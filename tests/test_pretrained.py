"""--pretrained FILE: weights files users have (torchvision .pth, timm safetensors, cnnlab's),
built here in those layouts; nothing is downloaded."""

import hashlib
import pickle

import pytest
import torch
from safetensors.torch import save_file

import cnnlab
from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.models import create_model, list_models
from cnnlab.training.transfer import pretrained

pytest.importorskip("timm")


def torchvision_file(folder, model) -> str:
    """A state dict saved as torchvision publishes it: NAME-<first sha256 digits>.pth."""
    tmp = folder / "w.pth"
    torch.save(model.state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = folder / f"resnet18-{digest}.pth"
    tmp.rename(path)
    return str(path)


def test_torchvision_resnet18_weights_start_timm_resnet18_and_compute_the_same_features(tmp_path):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=1000).eval()
    path = torchvision_file(tmp_path, reference)
    model = create_model("timm:resnet18", num_classes=5, in_channels=3, image_size=64).eval()
    lines = []
    moved = pretrained(model, path, lines.append)
    assert moved["kept"] == len(reference.state_dict()) - 2  # all but fc.weight, fc.bias
    assert "fc" in lines[0] and moved["reshaped"] == []
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # the body is torchvision's, layer for layer (normalization inside)
        r = reference.layer4(reference.layer3(reference.layer2(reference.layer1(reference.maxpool(
            reference.relu(reference.bn1(reference.conv1(model.normalize(x)))))))))
        assert torch.allclose(model.forward_features(x), r, atol=1e-5)
        assert model(x).shape == (2, 5)


def test_a_damaged_or_renamed_torchvision_file_fails_its_hash(tmp_path):
    path = torchvision_file(tmp_path, torch.nn.Linear(3, 2))
    with open(path, "ab") as f:
        f.write(b"\0")
    model = create_model("timm:resnet10t", num_classes=2, in_channels=3, image_size=32)
    with pytest.raises(CnnlabError, match="SHA-256 starts .* not .* as its name says"):
        pretrained(model, path, print)


class Evil:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_pickle_that_is_not_plain_tensors_is_refused_without_running(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": Evil()}, f, protocol=2)
    model = create_model("timm:resnet10t", num_classes=2, in_channels=3, image_size=32)
    with pytest.raises(CnnlabError, match="not a plain file of tensors") as e:
        pretrained(model, path, print)
    assert "this ran" not in capsys.readouterr().out
    # found by probing: torch's message came cut mid-word with a terminal escape in it, and torch's
    # warning printed before it; the line says what to save instead
    assert "\x1b" not in str(e.value) and "save model.state_dict()" in str(e.value)


def test_timm_safetensors_layout_loads_by_name_and_the_classifier_starts_fresh(tmp_path):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("convnext_atto", num_classes=1000)
    save_file(source.state_dict(), tmp_path / "model.safetensors")
    torch.manual_seed(2)
    model = create_model("timm:convnext_atto", num_classes=3, in_channels=3, image_size=32)
    fresh_fc = model.net.head.fc.weight.clone()
    moved = pretrained(model, tmp_path / "model.safetensors", print)
    assert torch.equal(model.net.stem[0].weight, source.stem[0].weight)
    assert torch.equal(model.net.head.norm.weight, source.head.norm.weight)  # head.norm is body-side
    assert torch.equal(model.net.head.fc.weight, fresh_fc)  # the classifier: fresh
    assert moved["fresh"] == 4  # head.fc weight and bias; mean and std: the model's own


def test_a_file_of_another_architecture_or_format_gets_one_line(tmp_path):
    model = create_model("timm:resnet10t", num_classes=2, in_channels=3, image_size=32)
    save_file({"encoder.weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(CnnlabError, match="none of its 1 tensors fit this model"):
        pretrained(model, tmp_path / "other.safetensors", print)
    # timm's resnet18 into a ResNet-20: its BatchNorm step counters fit anywhere, nothing else does
    resnet18 = create_model("timm:resnet18", num_classes=2, in_channels=3, image_size=32)
    save_file(resnet18.state_dict(), tmp_path / "r18.safetensors")
    with pytest.raises(CnnlabError, match="none of its .* tensors fit this model"):
        pretrained(create_model("resnet20", num_classes=2, in_channels=3, image_size=32),
                   tmp_path / "r18.safetensors", print)
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(CnnlabError, match="not a weights format"):
        pretrained(model, tmp_path / "w.bin", print)
    with pytest.raises(CnnlabError, match="no such file"):
        pretrained(model, tmp_path / "missing.pth", print)


def test_timm_models_are_listed_train_and_reload_from_the_cli(tmp_path, capsys):
    import timm

    assert "timm:resnet18" in list_models()
    torch.manual_seed(0)
    save_file(timm.create_model("resnet10t", num_classes=1000).state_dict(), tmp_path / "r10.safetensors")
    code = main(["train", "--dataset", "shapes", "--limit-train", "64", "--image-size", "32",
                 "--model", "timm:resnet10t", "--pretrained", str(tmp_path / "r10.safetensors"),
                 "--epochs", "1", "--batch-size", "32", "--out-dir", str(tmp_path), "--name", "t"])
    assert code == 0
    assert "pretrained r10.safetensors: kept" in capsys.readouterr().out
    run = cnnlab.load_run(tmp_path / "t")
    assert run.predict(run.data().eval.x[:3]).shape == (3, 4)  # rebuilt from meta.json
    assert run.load_model().mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_a_detector_backbone_starts_from_a_weights_file(tmp_path):
    from cnnlab.tasks.base import build_task_model

    torch.manual_seed(0)
    body = create_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    save_file(body.state_dict(), tmp_path / "r20.safetensors")
    kw = dict(num_classes=10, in_channels=3, image_size=64)
    detector = build_task_model("detect", "centernet", "resnet20", kw, 4)
    moved = pretrained(detector, tmp_path / "r20.safetensors", print)
    assert torch.equal(detector.backbone.conv1.weight, body.conv1.weight)
    assert moved["kept"] >= len(body.state_dict()) - 4  # all but the classifier (and mean/std)


def test_init_from_and_pretrained_together_are_refused():
    with pytest.raises(CnnlabError, match="not both"):
        cnnlab.TrainConfig(init_from="runs/x", pretrained="w.safetensors")


def test_a_pth_name_ending_in_a_date_is_not_read_as_a_hash(tmp_path):
    import timm

    path = tmp_path / "model-20240101.pth"
    torch.save(timm.create_model("resnet10t", num_classes=1000).state_dict(), path)
    model = create_model("timm:resnet10t", num_classes=2, in_channels=3, image_size=32)
    lines = []
    assert pretrained(model, path, lines.append)["kept"] > 0
    assert "no hash in its name" in lines[0]
