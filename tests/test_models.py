import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, list_models, model_stats

SHAPES = [(1, 8, 8), (3, 32, 32)]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("shape", SHAPES, ids=["gray8", "rgb32"])
def test_every_model_forward_and_backward(name, shape):
    torch.manual_seed(0)
    if name in ("timm:convnext_atto", "timm:vgg11_bn") and shape[1] == 8:  # they downsample 32x
        with pytest.raises(CnnlabError, match="cannot read 8x8 images"):
            create_model(name, num_classes=7, in_channels=shape[0], image_size=shape[1])
        return
    if name.startswith("torchvision:") and (shape[0] == 1 or name == "torchvision:alexnet"):
        with pytest.raises(CnnlabError, match="reads RGB images" if shape[0] == 1 else "cannot read 32x32"):
            create_model(name, num_classes=7, in_channels=shape[0], image_size=shape[1])
        return
    model = create_model(name, num_classes=7, in_channels=shape[0], image_size=shape[1])
    x = torch.rand(4, *shape)
    model.eval()
    with torch.no_grad():
        fmap = model.forward_features(x)
        assert fmap.ndim == 4 and fmap.shape[0] == 4  # the unpooled map (B, C, h, w)
        assert torch.allclose(model.forward_head(fmap), model(x), atol=1e-5)
        emb = model.embed(x)
        assert emb.shape == (4, model.num_features)
        assert torch.allclose(model.get_classifier()(emb) * getattr(model, "scale", 1.0), model(x),
                              atol=1e-5)
    model.train()
    logits = model(x)
    assert logits.shape == (4, 7)
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    first = next(p for p in model.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0, "no gradient reaches layer 1"


def test_lenet5_has_the_papers_parameter_count():
    # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 (LeCun et al. 1998, 1-channel 32x32)
    model = create_model("lenet5", num_classes=10, in_channels=1, image_size=32)
    assert model_stats(model, (1, 32, 32)).params == 61_706


def test_lenet5_macs_match_a_hand_count():
    macs = model_stats(create_model("lenet5", in_channels=1, image_size=32), (1, 32, 32)).macs
    hand = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    assert macs == hand


def test_resnet_depths_follow_he_et_al():
    p20 = model_stats(create_model("resnet20"), (3, 32, 32)).params
    p56 = model_stats(create_model("resnet56"), (3, 32, 32)).params
    assert 0.26e6 < p20 < 0.28e6 and 0.84e6 < p56 < 0.86e6  # the paper's 0.27M and 0.85M


def test_mlp_first_layer_has_a_weight_per_pixel():
    stats = model_stats(create_model("mlp", in_channels=3, image_size=32, hidden=(100,)), (3, 32, 32))
    assert stats.first_layer_params == 3 * 32 * 32 * 100 + 100


def test_unknown_model_is_a_clear_error():
    with pytest.raises(CnnlabError, match="unknown model 'nope'; choose one of"):
        create_model("nope")
    from cnnlab.models import check_model_name

    with pytest.raises(CnnlabError, match="or timm:NAME .* or torchvision:NAME"):  # (probing)
        check_model_name("resnet999")


def test_fastnet_whitening_decorrelates_patches():
    torch.manual_seed(0)
    model = create_model("fastnet", num_classes=10)
    images = torch.rand(64, 3, 32, 32)
    images[:, 1] = images[:, 0] * 0.9 + 0.1 * images[:, 1]  # correlated channels
    model.init_from_data(images)
    out = model.whiten(model.normalize(images))[:, :12]  # (B, 12, 31, 31) whitened patches
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    cov = torch.cov(flat)
    off_diag = cov - torch.diag(torch.diag(cov))
    assert off_diag.abs().max() < 0.05 * torch.diag(cov).mean()


@pytest.mark.parametrize("name", list_models())
def test_reset_classifier_gives_a_new_head(name):
    torch.manual_seed(0)
    size = 64 if name == "torchvision:alexnet" else 32  # its published layout reads 64 or more
    model = create_model(name, num_classes=7, in_channels=3, image_size=size).eval()
    model.reset_classifier(3)
    assert model.num_classes == 3 and model.get_classifier().out_features == 3
    with torch.no_grad():
        assert model(torch.rand(2, 3, size, size)).shape == (2, 3)
