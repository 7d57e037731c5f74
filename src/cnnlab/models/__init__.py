"""Models: one registry, ``create_model(name, **kwargs)``, ``list_models()``, ``model_stats``.

Every builder takes ``num_classes``, ``in_channels``, ``image_size`` and the normalization
``mean``/``std``, so any model adapts to any dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.models.base import ImageClassifier
from cnnlab.models.fastnet import FastNet
from cnnlab.models.lenet import LeNet5
from cnnlab.models.mlp import MLP
from cnnlab.models.resnet import CifarResNet, ResNet18
from cnnlab.registry import Registry

MODELS: Registry[Callable[..., ImageClassifier]] = Registry("model")

DESCRIPTIONS = {
    "mlp": "multi-layer perceptron (2 hidden layers), the locality-blind baseline",
    "lenet5": "LeNet-5 (LeCun et al. 1998), reads 32x32",
    "alexnet": "AlexNet (Krizhevsky et al. 2012), CIFAR-sized: 5 convolutions, ReLU, dropout MLP head",
    "vgg11": "VGG-11 with BatchNorm (Simonyan and Zisserman 2014), CIFAR-sized: only 3x3 convolutions",
    "inception": "Inception blocks (Szegedy et al. 2014, GoogLeNet): 1x1, 3x3, 5x5 and pooled paths "
                 "side by side",
    "resnet20": "CIFAR ResNet-20 (He et al. 2016), option-A shortcuts",
    "resnet56": "CIFAR ResNet-56 (He et al. 2016), option-A shortcuts",
    "resnet18": "ResNet-18 with a CIFAR stem (torchvision layers)",
    "fastnet": "airbench-style fast CIFAR net: whitening stem, 3 conv groups, no residuals",
    "framepool": "clips (frames as 3T channels): a per-frame CNN averaged over time (action baseline)",
    "r2plus1d": "clips (frames as 3T channels): (2+1)D convolutions that see motion (Tran et al. 2018)",
}


@MODELS.register("mlp")
def mlp(**kw) -> ImageClassifier:
    return MLP(**kw)


@MODELS.register("lenet5")
def lenet5(**kw) -> ImageClassifier:
    return LeNet5(**kw)


@MODELS.register("alexnet")
def alexnet(**kw) -> ImageClassifier:
    from cnnlab.models.milestones import AlexNet

    return AlexNet(**kw)


@MODELS.register("vgg11")
def vgg11(**kw) -> ImageClassifier:
    from cnnlab.models.milestones import VGG

    return VGG(**kw)


@MODELS.register("inception")
def inception(**kw) -> ImageClassifier:
    from cnnlab.models.milestones import Inception

    return Inception(**kw)


@MODELS.register("resnet20")
def resnet20(**kw) -> ImageClassifier:
    return CifarResNet(depth=20, **kw)


@MODELS.register("resnet56")
def resnet56(**kw) -> ImageClassifier:
    return CifarResNet(depth=56, **kw)


@MODELS.register("resnet18")
def resnet18(**kw) -> ImageClassifier:
    return ResNet18(**kw)


@MODELS.register("fastnet")
def fastnet(**kw) -> ImageClassifier:
    return FastNet(**kw)


@MODELS.register("framepool")
def framepool(**kw) -> ImageClassifier:
    from cnnlab.models.video import FramePool

    return FramePool(**kw)


@MODELS.register("r2plus1d")
def r2plus1d(**kw) -> ImageClassifier:
    from cnnlab.models.video import R2Plus1D

    return R2Plus1D(**kw)


def to_channels_last(model: nn.Module) -> nn.Module:
    """The model in the channels_last memory format (faster 2D convolutions with oneDNN and
    cuDNN); a model with 3D convolutions (5-D weights, which channels_last cannot hold) stays."""
    if any(p.dim() == 5 for p in model.parameters()):
        return model
    return model.to(memory_format=torch.channels_last)


def list_models() -> list[str]:
    """cnnlab's own models, torchvision's milestones (``torchvision:NAME``), then the timm
    architectures it lists (``timm:NAME``) where timm is installed."""
    import importlib.util

    from cnnlab.models import timm_model, torchvision_model

    timm = importlib.util.find_spec("timm") is not None
    return (MODELS.names() + [f"torchvision:{name}" for name in torchvision_model.SUPPORTED]
            + [f"timm:{name}" for name in timm_model.SUPPORTED if timm])


def check_model_name(name: str) -> None:
    """Raise the one-line error for a model name cnnlab cannot build (before any work)."""
    if name.startswith("torchvision:"):
        from cnnlab.models.torchvision_model import SUPPORTED

        if name[12:] not in SUPPORTED:
            raise CnnlabError(f"unknown model {name}: cnnlab's torchvision models are "
                              f"{', '.join('torchvision:' + n for n in SUPPORTED)}")
        return
    if not name.startswith("timm:"):
        if name not in MODELS:  # the registry's list, and the two families of outside models
            raise CnnlabError(f"unknown model {name!r}; choose one of: {', '.join(MODELS.names())}; or "
                              f"timm:NAME (e.g. timm:resnet18) or torchvision:NAME (cnnlab models lists "
                              f"them)")
        return
    try:
        import timm
    except ImportError:
        raise CnnlabError(f"model {name} needs timm: pip install 'cnnlab[transfer]'") from None
    if not timm.is_model(name[5:]):
        raise CnnlabError(f"timm has no model {name[5:]!r}; `cnnlab models` lists the tested ones, "
                          "timm.list_models() all of timm's")


def describe(name: str) -> str:
    from cnnlab.models import torchvision_model
    from cnnlab.models.timm_model import SUPPORTED

    if name.startswith("torchvision:"):
        return "torchvision: " + torchvision_model.SUPPORTED.get(name[12:], "")
    if name.startswith("timm:"):
        return "timm: " + SUPPORTED.get(name[5:], "an architecture of timm (not among the tested ones)")
    return DESCRIPTIONS.get(name, "")


def create_model(name: str, **kwargs) -> ImageClassifier:
    """Build a registered model, e.g. ``create_model("resnet20", num_classes=100)``, or a timm
    architecture, ``create_model("timm:resnet18", num_classes=5)``, or torchvision's,
    ``create_model("torchvision:alexnet", num_classes=5, image_size=64)``. Arguments that build
    no model, or one with a layer of no weights (a width of 0), get one line."""
    if name.startswith("torchvision:"):
        from cnnlab.models.torchvision_model import TorchvisionClassifier

        build, hint = (lambda: TorchvisionClassifier(name[12:], **kwargs)), ""
    elif name.startswith("timm:"):
        from cnnlab.models.timm_model import TimmClassifier

        build, hint = (lambda: TimmClassifier(name[5:], **kwargs)), ""
    else:
        builder = MODELS.get(name)
        build, hint = (lambda: builder(**kwargs)), "; see its builder's signature"
    try:
        model = build()
    except (TypeError, ValueError, IndexError, RuntimeError) as e:
        raise CnnlabError(f"model {name}: bad arguments ({e}){hint}") from None
    empty = next((n for n, p in model.named_parameters() if p.numel() == 0), None)
    if empty is not None:
        raise CnnlabError(f"model {name}: these arguments leave {empty} with no weights (a size "
                          f"of 0); give every width and size at least 1")
    return model


@dataclass
class ModelStats:
    params: int
    """Trainable and frozen parameters in total."""
    first_layer_params: int
    macs: int
    """Multiply-accumulates for one image (forward pass), counted by torch's FLOP counter."""


def model_stats(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelStats:
    """Parameter counts and multiply-accumulates per image of shape (C, H, W)."""
    params = sum(p.numel() for p in model.parameters())
    first = model.first_layer() if isinstance(model, ImageClassifier) else None
    first_params = sum(p.numel() for p in first.parameters()) if first is not None else 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # two images: GroupNorm on a 1x1 map needs more than one
        model(torch.zeros(2, *input_shape, device=device))
    model.train(was_training)
    return ModelStats(params, first_params, counter.get_total_flops() // 4)


__all__ = ["MODELS", "ImageClassifier", "ModelStats", "check_model_name", "create_model", "list_models",
           "model_stats"]
