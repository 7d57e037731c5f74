"""timm's architectures as cnnlab models: ``timm:resnet18``, ``timm:convnext_atto``, ...

timm (PyTorch Image Models) is the library of architectures with published weights; a
``timm:NAME`` model is ``timm.create_model(NAME)`` inside cnnlab's surface (pixels in [0, 1],
normalized inside, ``forward_features`` / ``forward_head``), so every tool of cnnlab works on
it and ``--pretrained FILE`` loads the weights users already have (timm's and Hugging Face's
safetensors, torchvision's ResNet ``.pth``: the same tensor names). Nothing is downloaded: the
network is built with ``pretrained=False``.

``SUPPORTED`` are the families tested here: convolutional networks whose features end in a
(B, C, h, w) map.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.base import ImageClassifier

SUPPORTED = {
    "resnet18": "ResNet-18 (He et al. 2016); torchvision's resnet18-*.pth fits it",
    "resnet34": "ResNet-34; torchvision's resnet34-*.pth fits it",
    "resnet50": "ResNet-50; torchvision's resnet50-*.pth fits it",
    "resnet10t": "a small ResNet-10 (timm's)",
    "mobilenetv3_small_100": "MobileNetV3-Small (Howard et al. 2019)",
    "efficientnet_b0": "EfficientNet-B0 (Tan and Le 2019)",
    "convnext_atto": "ConvNeXt-Atto, the smallest ConvNeXt (Liu et al. 2022)",
    "regnety_002": "RegNetY-200MF (Radosavovic et al. 2020)",
    "vgg11_bn": "VGG-11 with BatchNorm (Simonyan and Zisserman 2014); torchvision's vgg11_bn-*.pth "
                "fills its convolutions (its classifier differs)",
}
"""timm architectures cnnlab lists (``cnnlab models``); other timm CNNs usually work too."""

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TimmClassifier(ImageClassifier):
    """A timm network (``net``) behind cnnlab's surface; its head is timm's classifier."""

    def __init__(self, arch: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 mean=None, std=None, **timm_kwargs):
        try:
            import timm
        except ImportError:
            raise CnnlabError("timm models need timm: pip install 'cnnlab[transfer]'") from None
        if in_channels == 3 and mean is None:  # what weights trained on ImageNet expect
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        super().__init__(num_classes, in_channels, image_size, mean, std)
        try:
            self.net = timm.create_model(arch, pretrained=False, num_classes=num_classes,
                                         in_chans=in_channels, **timm_kwargs)
        except RuntimeError as e:  # timm's unknown-model error
            raise CnnlabError(f"timm:{arch}: {e}; `cnnlab models` lists the tested ones") from None
        self.arch = arch
        self._check_size(in_channels, image_size)
        # the embedding forward_head(pre_logits=True) gives (MobileNetV3: after its conv head)
        self.num_features = getattr(self.net, "head_hidden_size", None) or self.net.num_features
        self.classifier_name = "net." + self.net.default_cfg.get("classifier", "fc")

    def _check_size(self, in_channels: int, size: int) -> None:
        """One line, not a RuntimeError deep in a layer, when the images are too small."""
        was = self.net.training
        try:
            with torch.no_grad():
                self.net.eval().forward_features(torch.zeros(1, in_channels, size, size))
        except RuntimeError:
            raise CnnlabError(f"timm:{self.arch} cannot read {size}x{size} images (its downsampling "
                              "needs larger ones); give --image-size 32 or more") from None
        finally:
            self.net.train(was)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.net.forward_features(self.normalize(x))
        if features.dim() != 4:
            raise CnnlabError(f"timm:{self.arch} ends in a {features.dim()}-D feature map, not "
                              "(B, C, h, w); choose a convolutional architecture")
        return features

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.net.forward_head(features, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        self.net.reset_classifier(num_classes)
        self.num_classes = num_classes

    def first_layer(self) -> nn.Module:
        return next(m for m in self.net.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def head_names(model: TimmClassifier) -> tuple[str, ...]:
    """Name prefixes of the classifier's tensors, as in a timm weights file (no ``net.``)."""
    name = model.net.default_cfg.get("classifier", "fc")
    return tuple(n + "." for n in ([name] if isinstance(name, str) else name))
