"""torchvision's milestone classifiers as cnnlab models: ``torchvision:alexnet``, ...

The course's story from LeNet to ResNet passes through AlexNet, VGG and GoogLeNet. cnnlab's
own ``alexnet``, ``vgg11`` and ``inception`` are CIFAR-sized variants to train from scratch;
these are torchvision's ImageNet networks, layer for layer, so the published weights files
users have (``alexnet-owt-7be5be79.pth``, ``vgg11-8a719046.pth``, ``googlenet-1378be20.pth``)
load through ``--pretrained`` with every tensor in place but the last classifier layer. timm
has ResNets and VGG-BN but neither AlexNet nor GoogLeNet, hence this second family. Nothing is
downloaded: the network is built with ``weights=None``.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.base import ImageClassifier
from cnnlab.models.timm_model import IMAGENET_MEAN, IMAGENET_STD

SUPPORTED = {
    "alexnet": "AlexNet (Krizhevsky et al. 2012) as torchvision has it; alexnet-owt-*.pth fits it; "
               "reads 64x64 or larger",
    "vgg11": "VGG-11 (Simonyan and Zisserman 2014), torchvision's; vgg11-*.pth fits it",
    "googlenet": "GoogLeNet (Szegedy et al. 2014), nine Inception blocks, torchvision's; "
                 "googlenet-*.pth fits it",
}
"""torchvision architectures cnnlab lists (``cnnlab models``)."""


class TorchvisionClassifier(ImageClassifier):
    """A torchvision network (``net``) behind cnnlab's surface (pixels in [0, 1], normalized
    inside); the hidden layers of AlexNet's and VGG's classifier belong to the head, so they
    keep their published weights and only the last linear layer starts fresh."""

    def __init__(self, arch: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 mean=None, std=None):
        import torchvision

        if arch not in SUPPORTED:
            raise CnnlabError(f"torchvision:{arch} is not among cnnlab's torchvision models "
                              f"({', '.join(SUPPORTED)}); `cnnlab models` lists them")
        if in_channels != 3:
            raise CnnlabError(f"torchvision:{arch} reads RGB images; give a 3-channel dataset "
                              "(or cnnlab's own CIFAR-sized milestones for grayscale)")
        if mean is None:
            # GoogLeNet's published weights expect (x - 0.5) / 0.5: torchvision's transform_input
            imagenet = arch != "googlenet"
            mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else ((0.5,) * 3, (0.5,) * 3)
        super().__init__(num_classes, in_channels, image_size, mean, std)
        extra = {"aux_logits": False, "init_weights": True} if arch == "googlenet" else {}
        self.net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **extra)
        self.arch = arch
        self.classifier_name = "net.fc" if arch == "googlenet" else "net.classifier.6"
        self.num_features = self.get_classifier().in_features
        self._check_size(image_size)

    def _check_size(self, size: int) -> None:
        """One line, not an error deep in a layer, when the images are too small."""
        was = self.net.training
        try:
            with torch.no_grad():
                self.net.eval()
                self.forward_features(torch.zeros(1, 3, size, size))
        except RuntimeError:
            raise CnnlabError(f"torchvision:{self.arch} cannot read {size}x{size} images (its "
                              "strided stem and pooling need larger ones); give --image-size 64 "
                              "or more") from None
        finally:
            self.net.train(was)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.arch != "googlenet":
            return self.net.features(x)
        net = self.net
        for name in ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                     "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
                     "inception4e", "maxpool4", "inception5a", "inception5b"):
            x = getattr(net, name)(x)
        return x

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.net.avgpool(features), 1)
        if self.arch == "googlenet":
            x = self.net.dropout(x)
            return x if pre_logits else self.net.fc(x)
        hidden = self.net.classifier[:-1](x)  # dropout, fc6, ReLU, dropout, fc7, ReLU
        return hidden if pre_logits else self.net.classifier[-1](hidden)

    def first_layer(self) -> nn.Module:
        return next(m for m in self.net.modules() if isinstance(m, nn.Conv2d))
