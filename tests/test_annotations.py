"""Users' detection data: YOLO, COCO and VOC read to the same boxes; bad files named."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.data.annotations import load_detection
from cnnlab.errors import CnnlabError


def _images(folder, names=("a.png", "b.png")):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (40, 20), (90, 20, 200)).save(folder / n)


def _yolo(root, lines_a="0 0.25 0.5 0.5 1.0\n1 0.75 0.5 0.2 0.4\n"):
    _images(root / "images")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(lines_a)
    (root / "labels" / "b.txt").write_text("")
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def test_the_three_formats_give_the_same_boxes(tmp_path):
    expected = torch.tensor([[0.0, 0.0, 20.0, 20.0], [26.0, 6.0, 34.0, 14.0]])  # in the 40x20 photo
    scale = torch.tensor([20 / 40, 20 / 20, 20 / 40, 20 / 20])  # resized to 20 x 20
    yolo, skipped = load_detection(f"yolo:{_yolo(tmp_path / 'y')}", size=20)
    assert yolo.classes == ["cat", "dog"] and not skipped and yolo.x.shape == (2, 3, 20, 20)
    assert torch.allclose(yolo.targets[0]["boxes"], expected * scale, atol=1e-4)
    assert yolo.targets[0]["orig_size"] == (40, 20) and len(yolo.targets[1]["boxes"]) == 0

    coco_dir = tmp_path / "c"
    _images(coco_dir / "images")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 20},
                       {"id": 2, "file_name": "b.png", "width": 40, "height": 20}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [0, 0, 20, 20]},
                            {"id": 8, "image_id": 1, "category_id": 5, "bbox": [26, 6, 8, 8]}],
            "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}]}
    (coco_dir / "instances.json").write_text(json.dumps(coco))
    c, _ = load_detection(f"coco:{coco_dir / 'instances.json'}", size=20)
    assert c.classes == ["cat", "dog"] and torch.allclose(c.targets[0]["boxes"], expected * scale)
    assert c.targets[0]["labels"].tolist() == [0, 1]
    # review defect: a crowd region (iscrowd 1) is not an object; COCO's evaluation ignores it
    coco["annotations"].append({"id": 9, "image_id": 2, "category_id": 3, "bbox": [0, 0, 40, 20],
                                "iscrowd": 1})
    (coco_dir / "instances.json").write_text(json.dumps(coco))
    c, _ = load_detection(f"coco:{coco_dir / 'instances.json'}", size=20)
    assert len(c.targets[1]["boxes"]) == 0 and len(c.targets[0]["boxes"]) == 2

    voc = tmp_path / "v"
    _images(voc / "JPEGImages", ["a.png"])
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>"
        "<object><name>dog</name><bndbox><xmin>27</xmin><ymin>7</ymin><xmax>34</xmax><ymax>14</ymax></bndbox></object>"
        "</annotation>")
    v, _ = load_detection(f"voc:{voc}", size=20)
    assert v.classes == ["cat", "dog"] and torch.allclose(v.targets[0]["boxes"], expected * scale)


@pytest.mark.parametrize("line, words", [
    ("0 0.9 0.5 0.5 0.5\n", "lies outside the 40x20 image"),
    ("0 0.5 0.5 -0.1 0.5\n", "zero or negative size"),
    ("7 0.5 0.5 0.1 0.1\n", "class id 7 is unknown"),
    ("0 0.5 0.5\n", "expected 'class cx cy w h'"),
])
def test_a_bad_yolo_line_is_named_and_skip_bad_lists_it(tmp_path, line, words):
    root = _yolo(tmp_path / "y", line)
    (root / "labels" / "b.txt").write_text("1 0.5 0.5 0.2 0.2\n")  # so what is kept has an object
    with pytest.raises(CnnlabError, match=words) as e:
        load_detection(f"yolo:{root}", size=20)
    assert "a.txt line 1" in str(e.value)
    kept, skipped = load_detection(f"yolo:{root}", size=20, skip_bad=True)
    assert len(kept) == 1 and skipped[0][0].endswith("a.png") and words in skipped[0][1]


def test_missing_images_broken_xml_and_json_are_one_line_errors(tmp_path):
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "gone.png"}], "annotations": [],
                                "categories": [{"id": 1, "name": "cat"}]}))
    with pytest.raises(CnnlabError, match="gone.png: the image file is missing"):
        load_detection(f"coco:{coco}")
    coco.write_text("{not json")
    with pytest.raises(CnnlabError, match="is not a COCO instances file"):
        load_detection(f"coco:{coco}")
    (tmp_path / "v" / "Annotations").mkdir(parents=True)
    (tmp_path / "v" / "Annotations" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(CnnlabError, match="a.xml is not valid XML"):
        load_detection(f"voc:{tmp_path / 'v'}")
    with pytest.raises(CnnlabError, match="write yolo:PATH, coco:PATH or voc:PATH"):
        load_detection("kitti:somewhere")


def test_coco_polygons_rle_and_keypoints_become_class_maps_and_keypoints(tmp_path):
    from faster_coco_eval.core import mask as mask_utils

    folder = tmp_path / "c"
    _images(folder / "images", ["a.png"])
    square = [[2, 2, 12, 2, 12, 12, 2, 12]]  # a polygon: x from 2 to 12, y from 2 to 12
    rle_mask = torch.zeros(20, 40, dtype=torch.uint8)
    rle_mask[4:8, 30:36] = 1
    rle = mask_utils.encode(rle_mask.numpy().astype("uint8", order="F"))
    rle["counts"] = rle["counts"].decode()
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 20}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "segmentation": square,
                 "keypoints": [2, 2, 2, 12, 12, 1, 0, 0, 0]},
                {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 4, 6, 4], "segmentation": rle}],
            "categories": [{"id": 1, "name": "box", "keypoints": ["a", "b", "c"]}, {"id": 2, "name": "bar"}]}
    (folder / "instances.json").write_text(json.dumps(coco))
    ds, _ = load_detection(f"coco:{folder / 'instances.json'}", size=40)  # 40 x 20 -> 40 x 40
    class_map = ds.class_map[0]
    assert class_map[10, 10] == 1 and class_map[12, 32] == 2 and class_map[30, 20] == 0
    assert (class_map == 2).sum() == 6 * 4 * 2  # the RLE's 6 x 4 pixels, twice as tall
    kp = ds.targets[0]["keypoints"]
    assert kp.shape == (2, 3, 3) and kp[0, 1].tolist() == [12.0, 24.0, 1.0]  # y scaled by 2
    assert kp[1].abs().sum() == 0  # an object without keypoints: all absent
    coco["annotations"][0]["segmentation"] = {"size": [20, 40], "counts": 17}
    (folder / "instances.json").write_text(json.dumps(coco))
    with pytest.raises(CnnlabError, match="annotation id 1: the segmentation is neither"):
        load_detection(f"coco:{folder / 'instances.json'}", size=40)


def _voc_xml(objects: str) -> str:
    return f"<annotation><filename>a.png</filename>{objects}</annotation>"


def _voc_object(name: str, box=(1, 1, 20, 20), difficult: int = 0) -> str:
    x0, y0, x1, y1 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def test_users_data_as_labelling_tools_write_it(tmp_path):
    """Found by probing users' data: VOC's difficult objects were counted as misses, a broken XML
    stopped --skip-bad, a COCO image without file_name and a missing labels/ folder ended in
    tracebacks, COCO's own layout (annotations/ beside train2017/) found no image, and a YOLO
    class written as 0.0 was refused."""
    voc = tmp_path / "v"
    _images(voc / "JPEGImages", ["a.png"])
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "a.xml").write_text(_voc_xml(
        _voc_object("cat") + _voc_object("dog", (27, 7, 34, 14), difficult=1)))
    (voc / "Annotations" / "b.xml").write_text("<annotation><object>")
    with pytest.raises(CnnlabError, match="b.xml is not valid XML"):
        load_detection(f"voc:{voc}", size=20)
    v, skipped = load_detection(f"voc:{voc}", size=20, skip_bad=True)
    assert v.classes == ["cat"] and v.targets[0]["labels"].tolist() == [0]  # the difficult dog: left out
    assert [Path(f).name for f, _ in skipped] == ["b.xml"]
    (voc / "Annotations" / "b.xml").unlink()
    (voc / "Annotations" / "a.xml").write_text(_voc_xml(_voc_object("")))
    with pytest.raises(CnnlabError, match="object 1: the object has no <name>"):
        load_detection(f"voc:{voc}", size=20)

    coco_root = tmp_path / "coco"
    _images(coco_root / "train2017", ["a.png"])
    (coco_root / "annotations").mkdir()
    spec = coco_root / "annotations" / "instances_train2017.json"
    coco = {"images": [{"id": 4, "file_name": "a.png"}, {"id": 5}],
            "annotations": [{"id": 1, "image_id": 4, "category_id": 2, "bbox": [0, 0, 20, 20]}],
            "categories": [{"id": 2, "name": "cat"}]}
    spec.write_text(json.dumps(coco))
    with pytest.raises(CnnlabError, match="image id 5: no file_name"):
        load_detection(f"coco:{spec}", size=20)
    c, skipped = load_detection(f"coco:{spec}", size=20, skip_bad=True)
    assert len(c) == 1 and c.targets[0]["labels"].tolist() == [0] and len(skipped) == 1
    with pytest.raises(CnnlabError, match="is a folder; give its instances JSON file"):
        load_detection(f"coco:{coco_root}", size=20)

    root = _yolo(tmp_path / "y", "0.0 0.25 0.5 0.5 1.0\n")
    y, _ = load_detection(f"yolo:{root}", size=20)
    assert y.targets[0]["labels"].tolist() == [0]
    for f in (root / "labels").iterdir():
        f.write_text("")
    with pytest.raises(CnnlabError, match="none of its 2 images has an annotated object"):
        load_detection(f"yolo:{root}", size=20)
    import shutil

    shutil.rmtree(root / "labels")
    with pytest.raises(CnnlabError, match="labels not found: YOLO keeps one .txt per image"):
        load_detection(f"yolo:{root}", size=20)


def test_another_set_is_scored_by_class_name_not_by_place(tmp_path):
    """Found by probing: `detect eval --dataset` on a COCO file whose category ids ran the other
    way scored 0.0004 instead of 0.594, and a VOC set with one of the two classes crashed."""
    from cnnlab.data.dense import align_classes, to_image_dataset
    from cnnlab.data.scenes import DetectionSet

    targets = [{"boxes": torch.tensor([[0.0, 0, 4, 4], [5, 5, 9, 9]]), "labels": torch.tensor([0, 1])},
               {"boxes": torch.tensor([[1.0, 1, 3, 3]]), "labels": torch.tensor([1])}]
    class_map = torch.zeros(2, 10, 10, dtype=torch.uint8)
    class_map[0, :4, :4], class_map[0, 5:9, 5:9], class_map[1, 1:3, 1:3] = 1, 2, 2
    ds = to_image_dataset(DetectionSet(torch.zeros(2, 3, 10, 10, dtype=torch.uint8), targets,
                                       ["dog", "cat"], "theirs", class_map))
    aligned = align_classes(ds, ["cat", "dog", "bird"])
    assert aligned.classes == ["cat", "dog", "bird"]
    assert aligned.extras["labels"].tolist() == [[1, 0], [0, -1]]  # the padding stays -1
    assert aligned.extras["class_map"][0, 0, 0] == 2 and aligned.extras["class_map"][0, 6, 6] == 1
    assert aligned.extras["class_map"][1, 0, 0] == 0 and aligned.y.tolist() == [1, 0]
    assert align_classes(ds, ["dog", "cat"]) is ds
    with pytest.raises(CnnlabError, match="the class 'dog' is not among the run's"):
        align_classes(ds, ["cat", "bird"])


def test_a_yolo_data_yaml_with_train_and_val_folders_keeps_that_split(tmp_path):
    """Found by probing: images/train and images/val named in data.yaml were pooled, and a
    random 10% held out instead of the user's validation images."""
    from cnnlab.data import load_dataset

    root = tmp_path / "y"
    for split, names in (("train", ["a.png", "b.png", "c.png"]), ("val", ["d.png"])):
        _images(root / "images" / split, names)
        (root / "labels" / split).mkdir(parents=True)
        for n in names:
            (root / "labels" / split / n.replace(".png", ".txt")).write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat]\n")
    splits = load_dataset(f"yolo:{root}", image_size=16)
    assert len(splits.train) == 3 and len(splits.test) == 1
    assert "data.yaml: train train, val val" in splits.source
    (root / "data.yaml").write_text("names: [cat]\n")  # no split named: one set, as before
    whole = load_dataset(f"yolo:{root}", image_size=16)
    assert len(whole.train) == 4 and whole.test is None


def test_a_segmenter_refused_for_missing_masks_says_how_many_images_lack_one(tmp_path):
    """Found by probing: one annotation of many without a segmentation gave "has boxes only"."""
    from types import SimpleNamespace

    from cnnlab.data.dense import to_image_dataset
    from cnnlab.tasks.segment import SegmentTask

    folder = tmp_path / "c"
    _images(folder / "images", ["a.png", "b.png"])
    square = [[2, 2, 12, 2, 12, 12, 2, 12]]
    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10],
                             "segmentation": square},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [2, 2, 10, 10]}],
            "categories": [{"id": 1, "name": "box"}]}
    (folder / "instances.json").write_text(json.dumps(coco))
    ds, _ = load_detection(f"coco:{folder / 'instances.json'}", size=20)
    assert ds.class_map is None and ds.mapped.tolist() == [True, False]
    data = SimpleNamespace(train=to_image_dataset(ds))
    with pytest.raises(CnnlabError, match="1 of 2 training images .* have an object without one"):
        SegmentTask().prepare(data)
