"""The pictures of detection, segmentation and pose: detection matching on a hand-made case, and each
figure or image drawn from real scenes with what it should hold."""

import io

import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from cnnlab.data.scenes import make_scenes
from cnnlab.viz import dense
from cnnlab.viz.plots import plt


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(12, 64, seed=1)


def _predictions(scenes) -> list[dict]:
    """The ground truth made into predictions: boxes jittered, one object dropped from every third
    image, a false positive added to every fourth."""
    rng, out = np.random.default_rng(0), []
    for i, t in enumerate(scenes.targets):
        boxes = t["boxes"] + torch.tensor(rng.normal(0, 1.0, t["boxes"].shape), dtype=torch.float32)
        labels, scores = t["labels"].clone(), torch.tensor(rng.uniform(0.5, 1.0, len(boxes)))
        if i % 3 == 0 and len(boxes) > 1:
            boxes, labels, scores = boxes[1:], labels[1:], scores[1:]
        if i % 4 == 1:
            boxes = torch.cat([boxes, torch.tensor([[2.0, 40.0, 22.0, 60.0]])])
            labels, scores = torch.cat([labels, torch.tensor([2])]), torch.cat([scores, torch.tensor([0.6])])
        out.append({"boxes": boxes, "labels": labels, "scores": scores.float()})
    return out


def _png_size(fig) -> tuple[int, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from PIL import Image

    return Image.open(io.BytesIO(buf.getvalue())).size


# --- matching --------------------------------------------------------------------------------

def test_match_detections_on_a_hand_made_case():
    true = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30]]),
            "labels": torch.tensor([0, 0, 1])}
    pred = {"boxes": torch.tensor([[1.0, 1, 11, 11],   # 0: on truth 0, IoU 81/119; second by score
                                   [0, 0, 10, 10],     # 1: exactly truth 0, highest score: takes it
                                   [20, 0, 30, 10],    # 2: on truth 1 but the wrong class
                                   [0, 20, 10, 30],    # 3: exactly truth 2, score under score_min
                                   [21, 0, 31, 10]]),  # 4: on truth 1, IoU 9/11
            "labels": torch.tensor([0, 0, 1, 1, 0]),
            "scores": torch.tensor([0.8, 0.9, 0.7, 0.2, 0.5])}
    m = dense.match_detections(pred, true, iou=0.5, score_min=0.3)
    assert m["tp"].tolist() == [1, 4] and m["tp_true"].tolist() == [0, 1]
    assert m["fp"].tolist() == [0, 2]  # a duplicate of truth 0, and a wrong class
    assert m["missed"].tolist() == [2]  # its only prediction scored too low
    strict = dense.match_detections(pred, true, iou=0.85, score_min=0.1)  # 9/11 < 0.85
    assert strict["tp"].tolist() == [1, 3] and strict["missed"].tolist() == [1]


def test_a_prediction_takes_the_truth_it_overlaps_most():
    true = {"boxes": torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10]]), "labels": torch.tensor([0, 0])}
    pred = {"boxes": torch.tensor([[2.0, 0, 12, 10]]), "labels": torch.tensor([0]),
            "scores": torch.tensor([1.0])}
    m = dense.match_detections(pred, true)
    assert m["tp_true"].tolist() == [1] and m["missed"].tolist() == [0]


def test_match_detections_without_predictions_or_without_truth():
    none = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
    some = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([3]),
            "scores": torch.tensor([0.9])}
    assert dense.match_detections(none, some)["missed"].tolist() == [0]
    m = dense.match_detections(some, none)
    assert m["fp"].tolist() == [0] and m["tp"].size == 0 and m["missed"].size == 0


def test_the_gallery_shows_a_mix_of_mistakes_and_successes():
    matches = [{"fp": [0] * e, "missed": []} for e in (0, 3, 0, 1, 0, 0, 2, 0)]
    assert dense.pick_gallery(matches, 4) == [1, 6, 0, 7]  # two worst, then the clean ones spread out
    assert dense.pick_gallery(matches[:2], 4) == [1, 0]


# --- figures ---------------------------------------------------------------------------------

def test_detection_gallery_draws_every_box_of_the_chosen_images(scenes):
    preds = _predictions(scenes)
    fig = dense.detection_gallery(scenes.x, preds, scenes.targets, scenes.classes, n=6)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 12  # 6 images, prediction and truth each
    matches = [dense.match_detections(p, t) for p, t in zip(preds, scenes.targets, strict=True)]
    chosen = dense.pick_gallery(matches, 6)
    expected = 0
    for i in chosen:
        m = matches[i]
        expected += 2 * len(m["tp"]) + len(m["fp"]) + len(m["missed"])
    drawn = sum(isinstance(p, Rectangle) for ax in panels for p in ax.patches)
    assert drawn == expected
    assert any(t.get_text().startswith("triangle 0.60") for ax in panels for t in ax.texts)  # the added FP
    width, height = _png_size(fig)
    assert width > 900 and height > 700


def test_pr_curves_legend_gives_each_class_ap():
    recall = np.linspace(0, 1, 101)
    curves = {"circle": (recall, np.where(recall <= 0.5, 1.0, 0.0)), "star": (recall, np.full(101, 0.5))}
    fig = dense.pr_curves(curves)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["circle  (AP 0.50)", "star  (AP 0.50)"]
    fig = dense.pr_curves(curves, ap={"circle": 0.42, "star": 0.9})
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "circle  (AP 0.42)"
    assert _png_size(fig)[0] > 400


def test_segmentation_overlays_colour_each_class(scenes):
    true = scenes.class_map.long()
    pred = true.clone()
    pred[:, :8] = 0
    fig = dense.segmentation_overlays(scenes.x, pred, true, scenes.classes, n=4)
    assert sum(bool(ax.images) for ax in fig.axes) == 12
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:4] == scenes.classes
    painted = dense.colour_classes(scenes.x[0].numpy(), true[0].numpy(), dense.class_colours(4))
    c = int(true[0].max())
    colour = np.round(np.array(plt.matplotlib.colors.to_rgb(dense.class_colours(4)[c - 1])) * 255)
    assert (painted[true[0].numpy() == c] == colour).all()
    assert painted[true[0].numpy() == 0].max() <= 0.3 * 255 + 1  # background dimmed
    assert _png_size(fig)[1] > 4 * 150


def test_keypoint_overlays_draw_only_labelled_keypoints():
    crops = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)
    true = torch.zeros(3, 10, 3)
    true[0, :5] = torch.tensor([[16.0, 16, 2], [16, 6, 2], [26, 16, 1], [16, 26, 2], [6, 16, 0]])  # circle
    true[1, :3] = torch.tensor([[16.0, 4, 2], [28, 26, 2], [4, 26, 2]])  # triangle
    true[2, :10, :2] = torch.rand(10, 2) * 32  # star, every keypoint labelled
    true[2, :, 2] = 2
    pred = true[..., :2] + 1.0
    labels = torch.tensor([0, 2, 3])
    fig = dense.keypoint_overlays(crops, pred, true, labels, ["circle", "square", "triangle", "star"])
    axes = [ax for ax in fig.axes if ax.images]
    assert [len(ax.collections) for ax in axes] == [2, 2, 2]  # truth and prediction
    assert [len(ax.collections[1].get_offsets()) for ax in axes] == [4, 3, 10]
    assert [len(ax.lines) for ax in axes] == [2 * 3, 2 * 3, 2 * 10]  # circle: the spoke to W is unlabelled
    assert axes[0].get_title() == "circle: 1.4 px off"
    assert _png_size(fig)[0] > 300


def test_skeletons_close_polygons_and_join_a_circle_to_its_centre():
    assert dense.skeleton("triangle") == [(0, 1), (1, 2), (2, 0)]
    assert dense.skeleton("circle") == [(0, 1), (0, 2), (0, 3), (0, 4)]
    assert len(dense.skeleton("star")) == dense.SKELETON_KEYPOINTS["star"] == 10


# --- annotated images ------------------------------------------------------------------------

def test_draw_annotations_marks_the_box_outline_and_nothing_far_away():
    image = np.full((64, 64, 3), 128, np.uint8)
    out = np.asarray(dense.draw_annotations(image, boxes=[[20, 30, 40, 50]], labels=[1], scores=[0.87],
                                            classes=["circle", "square"], scale=4))
    assert out.shape == (256, 256, 3)
    changed = (out != 128).any(-1)
    assert changed[120:200, 80].all() and changed[120, 80:160].all()  # the outline, all round
    assert not changed[130:190, 90:150].any()  # the inside of the box
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 120 - 30 and rows.max() <= 200 + 4  # the label sits just above the box
    assert cols.min() >= 80 - 4 and cols.max() <= 160 + 60


def test_labels_of_neighbouring_boxes_do_not_cover_each_other():
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (200, 120))
    draw, font, taken = ImageDraw.Draw(img), dense._font(14), []
    for box in [(10, 40, 60, 90), (30, 42, 80, 92), (50, 44, 100, 94)]:  # three overlapping boxes
        dense._label(draw, img.size, box, "triangle 0.97", (200, 30, 30), font, 14, taken)
    assert len(taken) == 3
    for i, a in enumerate(taken):  # every label inside the image, none over another
        assert 0 <= a[0] and a[2] <= 200 and 0 <= a[1] and a[3] <= 120
        for b in taken[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    assert taken[0][3] == 40  # the first where a single label goes: just above its box
    dense._label(draw, (40, 20), (0, 0, 40, 20), "a label wider than the image", (0, 0, 0), font, 14, taken)
    assert taken[-1][:2] == (0, 0)  # nowhere fits: it starts at the corner, running off the right
    taken = []
    for _ in range(2):  # a box larger than the image: its labels inside it, apart
        dense._label(draw, img.size, (-50, -50, 300, 200), "star", (0, 0, 0), font, 14, taken)
    a, b = taken
    assert a[:2] == (0, 0) and (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])
    assert all(0 <= t[0] and t[2] <= 200 and 0 <= t[1] and t[3] <= 120 for t in taken)


def test_draw_annotations_on_a_scene_and_on_a_full_size_photo(scenes):
    t = scenes.targets[5]
    image = scenes.x[5].permute(1, 2, 0).numpy()
    out = dense.draw_annotations(image, t["boxes"], t["labels"], torch.rand(len(t["boxes"])), scenes.classes,
                                 masks=t["masks"], keypoints=t["keypoints"], scale=8)
    assert out.size == (512, 512)
    mask = t["masks"][0].numpy().repeat(8, 0).repeat(8, 1)
    big = image.repeat(8, 0).repeat(8, 1)
    assert (np.asarray(out)[mask] != big[mask]).any(-1).mean() > 0.5  # the mask is tinted
    photo = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    out = dense.draw_annotations(photo, torch.tensor([[100.0, 120, 300, 400]]), torch.tensor([0]),
                                 classes=["cat"])
    assert out.size == (640, 480)
    assert (np.asarray(out) != photo).any(-1)[:, 320:].sum() == 0  # nothing right of the box's label
