"""The task surface the trainer reads (see cnnlab.tasks) and the model builders tasks share."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.config import TASK_HEADS, TrainConfig
from cnnlab.errors import CnnlabError


class Task:
    """The base: a task's name, its validation score and the data it needs."""

    name = ""
    score_name = ""
    """What ``evaluate(...)["score"]`` measures, e.g. mAP@0.5:0.95."""

    def prepare(self, data):
        """The data this task trains on; checks the data carries the annotations it needs."""
        from cnnlab.data.dense import is_dense

        if not is_dense(data.train):
            raise CnnlabError(f"task {self.name} needs annotated data (scenes, yolo:PATH, coco:PATH, "
                              f"voc:PATH); {data.train.name or 'this dataset'} has labels only")
        return data

    def build(self, cfg: TrainConfig, data) -> nn.Module:
        raise NotImplementedError

    def targets(self, ds, idx: torch.Tensor, device: torch.device) -> Any:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, ds, device: torch.device, bf16: bool = False) -> dict:
        raise NotImplementedError


def head_of(cfg_or_meta) -> str:
    """The head a config (or a saved meta.json's config) names, its task's default if empty."""
    task, head = (cfg_or_meta.task, cfg_or_meta.head) if isinstance(cfg_or_meta, TrainConfig) else (
        cfg_or_meta.get("task", "classify"), cfg_or_meta.get("head", ""))
    return head or (TASK_HEADS[task][0] if TASK_HEADS[task] else "")


def input_stats(cfg: TrainConfig, train) -> tuple[list[float], list[float]]:
    """The per-channel mean and std the model normalizes with: its training images', or, for a
    timm model started from a weights file, ImageNet's, which those weights expect."""
    if cfg.pretrained and cfg.model.startswith("timm:") and train.image_shape[0] == 3:
        from cnnlab.models.timm_model import IMAGENET_MEAN, IMAGENET_STD

        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return train.mean_std()


def backbone(cfg: TrainConfig, data, num_classes: int):
    """The registered model ``cfg.model`` as a backbone (seeded), with the kwargs to rebuild it."""
    from cnnlab.models import create_model

    c, h, _ = data.train.image_shape
    mean, std = input_stats(cfg, data.train)
    kwargs = dict(num_classes=num_classes, in_channels=c, image_size=h, mean=mean, std=std,
                  **cfg.model_kwargs)
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, **kwargs), kwargs


def feature_shape(net: nn.Module, in_channels: int, size: int) -> tuple[int, int]:
    """(channels, stride) of a backbone's ``forward_features`` map on ``size`` x ``size`` images."""
    was = net.training
    net.eval()
    with torch.no_grad():
        f = net.forward_features(torch.zeros(1, in_channels, size, size))
    net.train(was)
    return f.shape[1], size // f.shape[-1]


def build_task_model(task: str, head: str, backbone_name: str, backbone_kwargs: dict,
                     num_classes: int, num_keypoints: int = 0) -> nn.Module:
    """The task model with freshly initialised weights: the same call builds it for training and
    rebuilds it from weights/meta.json."""
    from cnnlab.models import create_model

    if task == "generate":  # a GAN or a diffusion model: no registered backbone
        from cnnlab.config import is_diffusion

        if is_diffusion(head):
            from cnnlab.models.diffusion import Diffusion

            return Diffusion(**backbone_kwargs)
        from cnnlab.models.gan import GAN

        return GAN(**backbone_kwargs)
    net = create_model(backbone_name, **backbone_kwargs)
    c, size = backbone_kwargs["in_channels"], backbone_kwargs["image_size"]
    if task == "detect":  # the classifier is unused (and DDP refuses parameters without gradients)
        parent, _, attr = net.classifier_name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, attr, nn.Identity())
    if task == "detect" and head in ("centernet", "centernet-fine"):
        from cnnlab.models.centernet import Detector

        channels, stride = feature_shape(net, c, size)
        return Detector(net, channels, num_classes, stride, fine=head == "centernet-fine")
    if task == "detect" and head == "fcos":
        from cnnlab.models.tv_detectors import TorchvisionFCOS

        return TorchvisionFCOS(net, num_classes, size)
    if task == "segment":
        from cnnlab.models.segment import Segmenter

        return Segmenter(net, num_classes + 1)
    if task == "pose":
        from cnnlab.models.pose import PoseHeatmap, PoseRegressor

        return (PoseRegressor if head == "regression" else PoseHeatmap)(net, num_keypoints)
    raise CnnlabError(f"no head {head!r} for task {task}")


def unwrap(model: nn.Module) -> nn.Module:
    """The task model inside DDP and torch.compile wrappers (whose ``loss`` the trainer calls)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)

