"""``cnnlab detect predict|eval``: a detection, segmentation or pose run on users' files.

predict: every image is resized to the model's input size, and what the model finds is
mapped back to the photo's own pixels; each image is written with its boxes (labels,
scores), class map or keypoints drawn on it, and all boxes go to one JSON file in COCO's
result format (``bbox`` as x, y, width, height in the original pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data.files import read_image
from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_write, atomic_write_json
from cnnlab.predict_files import list_images
from cnnlab.run import Run, load_run
from cnnlab.tasks.runs import coco_results, score_interval

DENSE = ("detect", "segment", "pose")


def dense_run(path: str, task: str = "") -> Run:
    """The run folder at ``path``, which cnnlab detect train wrote (of ``task``, when given)."""
    run = load_run(path)
    if run.config.task not in DENSE:
        use = {"classify": "use cnnlab predict, or ", "generate": "use cnnlab generate, or "}
        raise CnnlabError(f"{path} is a {run.config.task} run; {use.get(run.config.task, '')}give a "
                          f"run that cnnlab detect train wrote")
    if task and run.config.task != task:
        raise CnnlabError(f"{path} is a {run.config.task} run; --detector takes a detect run (cnnlab "
                          "detect train)")
    return run


def detector_for(run: Run, detector: str) -> Run | None:
    """The --detector run of a pose run, checked before any work: a detect run, for pose only."""
    if not detector:
        return None
    if run.config.task != "pose":
        raise CnnlabError(f"--detector applies to pose runs (keypoints on detected boxes); "
                          f"{run.path.name} is a {run.config.task} run")
    return dense_run(detector, "detect")


def check_threshold(value: float) -> None:
    """A detection score cut-off is a score: in [0, 1]."""
    if not 0 <= value <= 1:
        raise CnnlabError(f"--threshold is a detection score in [0, 1], not {value:g}")


def predict_files(run_path: str, path: str, out_dir: str, detector: str = "",
                  threshold: float = 0.3, coco: str = "") -> dict:
    """Annotated copies of the images in ``out_dir`` and predictions.json; returns a summary,
    with ``skipped``: (file, reason) for each file that is not a readable image. The JSON's
    image and category ids count from 0, or, with ``coco`` (the COCO file the images come
    from), are that file's, so COCO's evaluation can score the predictions against it."""
    check_threshold(threshold)
    run = dense_run(run_path)
    detector_run = detector_for(run, detector)
    size = input_side(run, detector_run)
    files = list_images(path)
    ids, categories = coco_ids(coco, files, path, run.classes)
    out, names = Path(out_dir), output_names(files, path)
    results, images, skipped = [], [], []
    for f, image_id, name in zip(files, ids, names, strict=True):
        try:
            original = read_image(f, None, "RGB")  # (H, W, 3) uint8: the photo's own pixels
        except CnnlabError as e:  # one unreadable file does not stop the others
            skipped.append((str(f), str(e)))
            continue
        h, w = original.shape[:2]
        x = torch.from_numpy(np.array(read_image(f, size, "RGB"))).permute(2, 0, 1)[None]
        found = predict_one(run, x, detector_run, threshold)
        scale = (w / size, h / size)
        if "boxes" in found:
            results += coco_results([found], [image_id], [scale], [c["id"] for c in categories],
                                    found.get("keypoints"))
        picture = draw(original, found, scale, run.classes)
        atomic_write(out / name, lambda tmp, p=picture: p.save(tmp, format="PNG"))
        images.append({"id": image_id, "file_name": str(f), "annotated": name})
    if not images:
        raise CnnlabError(f"none of the {len(files)} file(s) in {path} is a readable image; the "
                          f"first: {skipped[0][1]}")
    atomic_write_json(out / "predictions.json", {"images": images, "categories": categories,
                                                 "annotations": results})
    return {"images": len(images), "boxes": len(results), "out": str(out), "skipped": skipped}


def output_names(files: list[Path], root: str | Path) -> list[str]:
    """One PNG name per input, unique: the path under ``root`` with folders joined by "__"
    (sub/a.jpg -> sub__a.png), and the input's suffix kept where two would meet (a.jpg and
    a.png -> a.jpg.png, a.png.png)."""
    from collections import Counter

    root = Path(root)
    stems = ["__".join(f.relative_to(root).with_suffix("").parts) if root.is_dir() else f.stem
             for f in files]
    seen = Counter(stems)
    return [f"{s}{f.suffix.lower() if seen[s] > 1 else ''}.png" for s, f in zip(stems, files, strict=True)]


def coco_ids(coco: str, files: list[Path], root: str | Path, classes: list[str]
             ) -> tuple[list[int], list[dict]]:
    """Image ids and categories for predictions.json: counted from 0, or the ids of the COCO
    file ``coco`` (images matched by file name, classes by name)."""
    if not coco:
        return list(range(len(files))), [{"id": i, "name": c} for i, c in enumerate(classes)]
    import json

    try:
        data = json.loads(Path(coco).expanduser().read_text())
        by_name = {c["name"]: c["id"] for c in data["categories"]}
        by_file = {str(img["file_name"]): img["id"] for img in data["images"]}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CnnlabError(f"--coco {coco}: not a readable COCO file ({type(e).__name__}: {e}); give the "
                          f"instances JSON the images come from") from None
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise CnnlabError(f"--coco {coco}: no category named {', '.join(map(repr, missing))}; the run's "
                          f"classes must be among the file's categories")
    root, ids = Path(root), []
    for f in files:
        rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
        image_id = by_file.get(rel, by_file.get(f.name))
        if image_id is None:
            raise CnnlabError(f"--coco {coco}: {rel} is not among its images; predict on the images "
                              f"the file lists")
        ids.append(image_id)
    return ids, [{"id": by_name[c], "name": c} for c in classes]


def input_side(run: Run, detector: Run | None = None) -> int:
    """The side images are resized to: the model's input, or (pose) its detector's."""
    if run.config.task == "pose":
        if detector is None:
            raise CnnlabError("a pose run predicts keypoints on boxes: give --detector DETECT_RUN, a "
                              "run that cnnlab detect train wrote")
        return detector.meta["input_shape"][-1]
    return run.meta["input_shape"][-1]


def predict_one(run: Run, x: torch.Tensor, detector: Run | None, threshold: float) -> dict:
    """What the run's model finds in one image (1, 3, S, S) uint8: boxes, a class map, or
    (pose) keypoints on the boxes a detection run found."""
    model = run.cached_model()
    xf = x.float() / 255
    task = run.config.task
    if task == "detect":
        found = model.detect(xf, threshold=threshold)[0]
        return {k: v.cpu() for k, v in found.items()}
    if task == "segment":
        return {"class_map": model.segment(xf)[0].cpu()}
    from cnnlab.tasks.pose import pose_on_boxes

    input_side(run, detector)  # says what is missing when there is no detector
    found = predict_one(detector, x, None, threshold)
    kps, confs = pose_on_boxes(model, x, [found["boxes"]], run.meta["crop_size"])
    found["keypoints"], found["pose_scores"] = kps[0], confs[0]
    return found


def draw(image: np.ndarray, found: dict, scale: tuple[float, float], classes: list[str]):
    """The photo with what was found drawn on it, in its own pixels."""
    from cnnlab.viz.dense import draw_annotations

    sx, sy = scale
    boxes = found.get("boxes")
    kw = {}
    if boxes is not None:
        kw = dict(boxes=(boxes * torch.tensor([sx, sy, sx, sy])).numpy(), labels=found["labels"].numpy(),
                  scores=found["scores"].numpy(), classes=classes)
    if "keypoints" in found:
        kp = found["keypoints"].clone()
        kp[..., 0] *= sx
        kp[..., 1] *= sy
        kw["keypoints"] = kp.numpy()
    if "class_map" in found:
        h, w = image.shape[:2]
        cm = torch.nn.functional.interpolate(found["class_map"][None, None].float(), size=(h, w),
                                             mode="nearest")[0, 0].long()
        kw["masks"] = np.stack([(cm == k + 1).numpy() for k in range(len(classes))])
        kw["labels"], kw["classes"] = np.arange(len(classes)), classes
    return draw_annotations(image, **kw)


def evaluate_run(run_path: str, dataset: str | None = None, detector: str = "",
                 resamples: int = 200) -> dict:
    """The run's task metrics on its own evaluation split, or on all of ``dataset``'s test
    split (its training images if it has none); pose with ``detector``: keypoint AP and PCK on
    the boxes that detection run finds, beside those on ground-truth boxes. Detection's mAP and
    segmentation's mIoU get a bootstrap interval over the images, pose's PCK one over the
    objects (``score_ci``; ``resamples`` 0: none): each of detection's resamples is a whole COCO
    evaluation, about 0.04 s per 250 small images."""
    from cnnlab.data import RunData, data_for, load_dataset
    from cnnlab.data.dense import align_classes, is_dense
    from cnnlab.evaluate.predict import use_bf16
    from cnnlab.tasks import get_task

    if resamples < 0:
        raise CnnlabError(f"--resamples {resamples}: give 0 (no interval) or more, e.g. 200")
    run = dense_run(run_path)
    detector_run = detector_for(run, detector)  # a wrong one stops here, before the evaluation
    cfg, task = run.config, get_task(run.config.task)
    if dataset:
        splits = load_dataset(dataset, cfg.data_dir, cfg.image_size)
        ds = splits.test if splits.test is not None else splits.train
        if is_dense(ds):  # the classes matched by name, not by their place in the list
            ds = align_classes(ds, run.classes)
        raw = RunData(ds, ds, "test" if splits.test is not None else "train", splits.source)
    else:
        raw = data_for(cfg)
    data = task.prepare(raw)
    model = run.load_model()
    bf16 = use_bf16(cfg, "cpu")  # as the run evaluated itself
    full = task.evaluate(model, data.eval, torch.device("cpu"), bf16)
    result = {k: v for k, v in full.items() if k != "predictions"}
    if resamples and cfg.task in DENSE and full["score"] is not None:
        result["score_ci"] = score_interval(cfg.task, full["predictions"], data.eval, resamples, cfg.seed)
    if detector_run is not None:
        from cnnlab.tasks.pose import topdown_on_detections

        found = topdown_on_detections(model, detector_run.load_model(), raw.eval, run.meta["crop_size"])
        result |= {f"detected_{k}": v for k, v in found.items()}
    return result
