"""torchvision's milestones (torchvision:alexnet, vgg11, googlenet) take the weights files that
torchvision publishes, built here in that layout (nothing is downloaded), and compute what
torchvision's own network computes from them."""

import hashlib

import pytest
import torch
import torchvision

from cnnlab import CnnlabError
from cnnlab.models import check_model_name, create_model, describe, list_models
from cnnlab.models.timm_model import IMAGENET_MEAN, IMAGENET_STD
from cnnlab.training.transfer import pretrained


def published(folder, model, stem: str) -> str:
    """A state dict saved as torchvision names its files: STEM-<first sha256 digits>.pth."""
    tmp = folder / "w.pth"
    torch.save(model.state_dict(), tmp)
    path = folder / f"{stem}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(path)
    return str(path)


def imagenet(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_alexnet_keeps_every_published_tensor_but_the_last_layer_and_computes_torchvisions_features(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(num_classes=1000).eval()
    path = published(tmp_path, reference, "alexnet-owt")
    model = create_model("torchvision:alexnet", num_classes=5, in_channels=3, image_size=64).eval()
    lines = []
    moved = pretrained(model, path, lines.append)
    assert moved["kept"] == len(reference.state_dict()) - 2  # classifier.6 weight and bias start fresh
    assert "classifier" in lines[0]
    assert torch.equal(model.net.classifier[4].weight, reference.classifier[4].weight)  # fc7 kept
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), reference.features(imagenet(x)), atol=1e-5)
        pooled = torch.flatten(reference.avgpool(reference.features(imagenet(x))), 1)
        hidden = reference.classifier[:-1](pooled)
        assert torch.allclose(model.embed(x), hidden, atol=1e-5)
        assert model(x).shape == (2, 5)


def test_googlenet_from_the_published_file_matches_torchvision_with_its_input_transform(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.googlenet(num_classes=1000, aux_logits=True, init_weights=True)
    path = published(tmp_path, source, "googlenet")  # the published file has the auxiliary heads
    reference = torchvision.models.googlenet(num_classes=1000, aux_logits=False, transform_input=True,
                                             init_weights=True)
    reference.load_state_dict(source.state_dict(), strict=False)
    reference.eval()
    model = create_model("torchvision:googlenet", num_classes=1000, in_channels=3, image_size=64)
    moved = pretrained(model, path, print)
    assert moved["unused"] > 0  # aux1, aux2: not in the model
    model.net.fc.load_state_dict(reference.fc.state_dict())  # the classifier starts fresh: copy it
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # torchvision expects ImageNet-normalized input and transforms it back
        assert torch.allclose(model.eval()(x), reference(imagenet(x)), atol=1e-4)


def test_torchvision_models_are_listed_described_and_refuse_what_they_cannot_read():
    assert {"torchvision:alexnet", "torchvision:vgg11", "torchvision:googlenet"} <= set(list_models())
    assert "alexnet-owt" in describe("torchvision:alexnet")
    with pytest.raises(CnnlabError, match="unknown model torchvision:resnet18.*torchvision:alexnet"):
        check_model_name("torchvision:resnet18")
    with pytest.raises(CnnlabError, match="give --image-size 64"):
        create_model("torchvision:alexnet", num_classes=3, in_channels=3, image_size=32)
    with pytest.raises(CnnlabError, match="reads RGB"):
        create_model("torchvision:googlenet", num_classes=3, in_channels=1, image_size=64)
