"""Detection, segmentation and pose through the one trainer: run folders, resume, reports,
evaluation and prediction on files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.training import checkpoint as ckpt


def dense(tmp_path, task="detect", **kw) -> TrainConfig:
    base = dict(task=task, dataset="scenes:n=48", model="resnet20", model_kwargs={"width": 8},
                epochs=2, batch_size=16, optimizer="adamw", lr=0.003, out_dir=str(tmp_path / "runs"),
                name=task)
    return TrainConfig(**(base | kw))


def quiet(line: str) -> None:
    pass


def test_detection_run_trains_saves_and_reloads(tmp_path):
    run = cnnlab.train(dense(tmp_path, epochs=3), log=quiet)
    rows = [r for r in open(run.path / "results.csv")][1:]
    assert float(rows[-1].split(",")[2]) < float(rows[0].split(",")[2])  # train loss falls
    m = run.metrics
    assert m["score_name"] == "mAP@0.5:0.95" and 0 <= m["map"] <= m["map_50"] <= 1
    assert set(m["per_class"]) == {"circle", "square", "triangle", "star"}
    detections = json.loads((run.path / "detections.json").read_text())
    assert all(set(d) == {"image_id", "category_id", "bbox", "score"} for d in detections)
    assert run.meta["task"] == "detect" and run.meta["head"] == "centernet"
    from cnnlab.dense_files import evaluate_run

    evaluated = evaluate_run(str(run.path), resamples=50)
    assert evaluated["map"] == pytest.approx(m["map"], abs=1e-9)  # reloaded = trained
    ci = evaluated["score_ci"]  # over the evaluation images, around the same mAP
    assert ci["estimate"] == pytest.approx(m["map"], abs=1e-9) and ci["low"] <= ci["estimate"] <= ci["high"]
    assert "score_ci" not in evaluate_run(str(run.path), resamples=0)
    html = (run.path / "report.html").read_text()
    assert "Object detection" in html and "Precision against recall" in html
    assert "Scenes are procedural" in html  # on the procedural scenes: said in the limitations
    kept = run.metrics["score_ci"]  # the run keeps its score's interval, and the report shows it
    assert kept["estimate"] == pytest.approx(m["map"], abs=1e-9) and kept["low"] <= kept["high"]
    assert "95% CI over images" in html and f"{kept['low']:.3f}-{kept['high']:.3f}" in html


def test_an_interrupted_detection_run_resumes_to_the_same_weights(tmp_path):
    full = cnnlab.train(dense(tmp_path, name="full", epochs=3), log=quiet, report=False)

    def interrupt_after_epoch_2(line: str) -> None:
        if line.startswith("epoch   2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cnnlab.train(dense(tmp_path, name="cut", epochs=3), log=interrupt_after_epoch_2, report=False)
    resumed = cnnlab.train(dense(tmp_path, name="cut", epochs=3), resume=True, log=quiet, report=False)
    a, _ = ckpt.load_tensors(full.path / "weights" / "last.safetensors")
    b, _ = ckpt.load_tensors(resumed.path / "weights" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("task,head,score", [("segment", "", "mIoU"), ("pose", "regression", "PCK@0.1"),
                                              ("pose", "heatmap", "PCK@0.1")])
def test_segmentation_and_pose_runs(tmp_path, capsys, task, head, score):
    run = cnnlab.train(dense(tmp_path, task, head=head), log=quiet)
    assert run.metrics["score_name"] == score and 0 <= run.metrics["score"] <= 1
    html = (run.path / "report.html").read_text()
    assert ("Segmentation" if task == "segment" else "Pose (keypoints)") in html
    if task == "pose":  # trained on crops: one per object, half the image side
        assert run.meta["crop_size"] == 32 and run.metrics["n_objects"] > run.metrics["n"] / 10
    from cnnlab.cli import main

    assert main(["detect", "eval", str(run.path), "--resamples", "50"]) == 0
    said = capsys.readouterr().out
    assert "CI of the score" in said  # mIoU's interval over the images, PCK's over the objects
    assert ("over the objects" in said) == (task == "pose")
    from cnnlab.dense_files import evaluate_run

    ci = evaluate_run(str(run.path), resamples=50)["score_ci"]  # around the run's own score
    assert ci["estimate"] == pytest.approx(run.metrics["score"], abs=1e-9) and ci["low"] <= ci["high"]


def test_dense_tasks_need_annotations_and_refuse_classification_flags(tmp_path):
    with pytest.raises(CnnlabError, match="needs annotated data"):
        cnnlab.train(dense(tmp_path, dataset="digits"), log=quiet)
    with pytest.raises(CnnlabError, match="apply to task classify only"):
        dense(tmp_path, adv="pgd")
    with pytest.raises(CnnlabError, match="does not fit task detect"):
        dense(tmp_path, head="heatmap")


def test_detect_predict_writes_annotated_images_and_coco_boxes_in_original_pixels(tmp_path, capsys):
    run = cnnlab.train(dense(tmp_path, epochs=1), log=quiet, report=False)
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(160, 90), (64, 64)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    out = tmp_path / "out"
    assert main(["detect", "predict", str(run.path), str(folder), "--out", str(out),
                 "--threshold", "0.0"]) == 0
    result = json.loads((out / "predictions.json").read_text())
    assert [Path_name(i["file_name"]) for i in result["images"]] == ["p0.png", "p1.png"]
    assert Image.open(out / "p0.png").size == (160, 90)  # drawn on the photo's own pixels
    for a in result["annotations"]:
        x, y, w, h = a["bbox"]
        width, height = (160, 90) if a["image_id"] == 0 else (64, 64)
        assert -1 <= x and x + w <= width + 1 and -1 <= y and y + h <= height + 1
    assert "annotated images" in capsys.readouterr().out

    # Found by probing users' data: one unreadable file stopped the folder, a.jpg, a.png and
    # sub/a.png overwrote each other's pictures, and the ids could not be scored against the
    # user's COCO file (0-based, where the file's start elsewhere)
    (folder / "p0.jpg").write_bytes((folder / "p1.png").read_bytes())
    (folder / "sub").mkdir()
    Image.new("RGB", (20, 20)).save(folder / "sub" / "p0.png")
    (folder / "broken.png").write_text("not an image")
    coco = tmp_path / "instances.json"
    images = ["broken.png", "p0.jpg", "p0.png", "p1.png", "sub/p0.png"]
    coco.write_text(json.dumps({"images": [{"id": 10 + i, "file_name": f} for i, f in enumerate(images)],
                                "categories": [{"id": 7 + k, "name": c} for k, c in enumerate(run.classes)],
                                "annotations": []}))
    assert main(["detect", "predict", str(run.path), str(folder), "--out", str(tmp_path / "more"),
                 "--threshold", "0.0", "--coco", str(coco)]) == 0
    result = json.loads((tmp_path / "more" / "predictions.json").read_text())
    assert sorted(p.name for p in (tmp_path / "more").glob("*.png")) == [
        "p0.jpg.png", "p0.png.png", "p1.png", "sub__p0.png"]
    assert [i["id"] for i in result["images"]] == [11, 12, 13, 14]  # broken.png (10): skipped
    assert [c["id"] for c in result["categories"]] == [7 + k for k in range(len(run.classes))]
    assert result["annotations"] and {a["category_id"] for a in result["annotations"]} <= {
        7 + k for k in range(len(run.classes))}
    assert "skipped" in capsys.readouterr().err
    coco.write_text(json.dumps({"images": [], "categories": [], "annotations": []}))
    assert main(["detect", "predict", str(run.path), str(folder), "--coco", str(coco)]) == 2
    assert "no category named" in capsys.readouterr().err


def Path_name(p: str) -> str:
    from pathlib import Path

    return Path(p).name


def test_detect_train_on_a_yolo_folder_names_bad_files_and_skip_bad_lists_them(tmp_path, capsys):
    from cnnlab.data.scenes import CLASSES, make_scenes

    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    scenes = make_scenes(12, 64, seed=3)
    for i, (x, t) in enumerate(zip(scenes.x, scenes.targets, strict=True)):
        Image.fromarray(x.permute(1, 2, 0).numpy()).resize((96, 80)).save(root / "images" / f"s{i}.png")
        lines = [f"{int(k)} {(b[0] + b[2]) / 128:.5f} {(b[1] + b[3]) / 128:.5f} {(b[2] - b[0]) / 64:.5f} "
                 f"{(b[3] - b[1]) / 64:.5f}" for b, k in zip(t["boxes"].tolist(), t["labels"], strict=True)]
        (root / "labels" / f"s{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "labels" / "s5.txt").write_text("9 0.5 0.5 0.2 0.2\n")  # an unknown class
    args = ["detect", "train", "--dataset", f"yolo:{root}", "--model-kwargs", "{width: 4}", "--epochs", "1",
            "--batch-size", "4", "--out-dir", str(tmp_path / "runs"), "--name", "y"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s5.txt line 1" in err[0] and "class id 9 is unknown" in err[0]
    assert main(args + ["--skip-bad"]) == 0
    skipped = json.loads((tmp_path / "runs" / "y" / "skipped.json").read_text())
    assert [Path_name(s["file"]) for s in skipped] == ["s5.png"]
    html = (tmp_path / "runs" / "y" / "report.html").read_text()
    assert "Images left out" in html and "s5.png" in html
    assert "Scenes are procedural" not in html  # the user's own images are not drawn (probing found it)


class HalfRight(torch.nn.Module):
    """A pose 'model' that is exact on even crops and far off on odd ones, and knows which:
    its confidence is high where it is right. (Crops are told apart by a pixel we mark.)"""

    def __init__(self, truth):
        super().__init__()
        self.truth = truth

    def _index(self, x):
        return (x[:, 0, 0, 0] * 255).round().long()

    def keypoints(self, x):
        i = self._index(x)
        kp = self.truth[i, :, :2].clone()
        kp[i % 2 == 1] = (1 - kp[i % 2 == 1]).clamp(0, 1)  # mirrored: wrong
        return kp

    def confidence(self, x):
        return torch.where(self._index(x) % 2 == 0, 0.9, 0.1)


def test_pose_keypoint_ap_ranks_each_pose_by_its_own_confidence():
    """Review defect: with every pose scored 1, COCO's ranking is arbitrary. Half the poses
    right with high confidence and half wrong with low: ranked by confidence, AP must beat the
    same poses with constant scores."""
    from cnnlab.data import prepare_data
    from cnnlab.models.pose import from_crop
    from cnnlab.tasks import get_task
    from cnnlab.tasks.pose import crop_dataset, score_keypoints

    ds = crop_dataset(prepare_data("scenes:n=40", "", 0, 0.0, 0).eval, 32)
    ds.x = ds.x.clone()
    ds.x[:, 0, 0, 0] = torch.arange(len(ds)).to(torch.uint8)  # the crop's index, for HalfRight
    truth = ds.extras["keypoints"]
    ranked = get_task("pose").evaluate(HalfRight(truth), ds, torch.device("cpu"))
    boxes = ds.extras["crop_boxes"]
    pred = from_crop(HalfRight(truth).keypoints(ds.x.float() / 255), boxes)
    flat = score_keypoints(pred, torch.cat([from_crop(truth[..., :2], boxes), truth[..., 2:]], -1), ds)
    assert ranked["pck"] == pytest.approx(flat["pck"])  # the same poses
    assert ranked["ap"] > flat["ap"] + 0.05, (ranked["ap"], flat["ap"])


def test_a_users_voc_photos_train_a_detector_from_a_weights_file_and_predict(tmp_path, capsys):
    """The small-data path end to end: a few dozen annotated photos in VOC layout, a backbone
    from a weights file (the classifier's tensors in safetensors), train, report, predict."""
    from safetensors.torch import save_file

    from cnnlab.data.scenes import CLASSES, make_scenes
    from cnnlab.models import create_model

    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    scenes = make_scenes(24, 64, seed=5)
    for i, (x, t) in enumerate(zip(scenes.x, scenes.targets, strict=True)):
        Image.fromarray(x.permute(1, 2, 0).numpy()).resize((128, 96)).save(root / "JPEGImages" / f"p{i}.png")
        boxes = (t["boxes"] * torch.tensor([2, 1.5, 2, 1.5])).clamp(min=1).clamp(max=torch.tensor(
            [128, 96, 128, 96]))  # in the 128x96 photo, 1-based as VOC writes pixels
        objects = "".join(
            f"<object><name>{CLASSES[int(k)]}</name><bndbox><xmin>{b[0]:.1f}</xmin><ymin>{b[1]:.1f}"
            f"</ymin><xmax>{b[2]:.1f}</xmax><ymax>{b[3]:.1f}</ymax></bndbox></object>"
            for b, k in zip(boxes.tolist(), t["labels"], strict=True))
        (root / "Annotations" / f"p{i}.xml").write_text(
            f"<annotation><filename>p{i}.png</filename>{objects}</annotation>")
    torch.manual_seed(0)
    body = create_model("resnet20", num_classes=10, in_channels=3, image_size=64, width=4)
    save_file(body.state_dict(), tmp_path / "body.safetensors")
    assert main(["detect", "train", "--dataset", f"voc:{root}", "--model-kwargs", "{width: 4}",
                 "--pretrained", str(tmp_path / "body.safetensors"), "--epochs", "1", "--batch-size", "8",
                 "--out-dir", str(tmp_path / "runs"), "--name", "v"]) == 0
    assert "pretrained body.safetensors: kept" in capsys.readouterr().out
    run = cnnlab.load_run(tmp_path / "runs" / "v")
    assert torch.equal(run.load_model().backbone.conv1.weight, body.conv1.weight) is False  # it trained
    html = (run.path / "report.html").read_text()
    assert "data:image/png;base64," in html and "mAP" in html
    out = tmp_path / "out"
    assert main(["detect", "predict", str(run.path), str(root / "JPEGImages"), "--out", str(out),
                 "--threshold", "0.0"]) == 0
    assert Image.open(out / "p0.png").size == (128, 96)
