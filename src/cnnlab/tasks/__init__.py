"""Tasks beyond classification: detection, segmentation, pose and generation, driven by the one
trainer.

Classification is the trainer's own path (a label per image, cross-entropy, accuracy). A
dense task tells the trainer the four things that differ, and nothing else:

    prepare(data)                        -> the data it trains on (pose: object crops)
    build(cfg, data)                     -> the model: a registered backbone with the task's head
    targets(ds, idx, device)             -> the batch's targets, fetched by image index
    evaluate(model, ds, device, bf16)    -> {"score": ..., metrics..., predictions}

Every task model shares one surface: ``forward(x)`` (pixels in [0, 1]; with the targets too
when ``takes_targets``, as torchvision's detectors want), ``loss(outputs, targets)`` ->
(loss, parts), and a prediction method. So the trainer's loop, checkpoints, resume, EMA,
bf16 and DDP are the classifier's, unchanged.
"""

from __future__ import annotations

from cnnlab.config import TASK_HEADS
from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Task, backbone, build_task_model, head_of, unwrap


def get_task(name: str) -> Task | None:
    """The task object for ``cfg.task`` (None for classify, the trainer's own path)."""
    if name == "classify":
        return None
    if name == "detect":
        from cnnlab.tasks.detect import DetectTask

        return DetectTask()
    if name == "segment":
        from cnnlab.tasks.segment import SegmentTask

        return SegmentTask()
    if name == "pose":
        from cnnlab.tasks.pose import PoseTask

        return PoseTask()
    if name == "generate":
        from cnnlab.tasks.generate import GenerateTask

        return GenerateTask()
    raise CnnlabError(f"unknown task {name!r}; choose one of {', '.join(TASK_HEADS)}")



__all__ = ["Task", "backbone", "build_task_model", "get_task", "head_of", "unwrap"]
