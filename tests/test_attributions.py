"""Attribution maps (Captum), their sanity check and faithfulness, and the analysis plug-in."""

import numpy as np
import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.analysis import run_analysis

pytest.importorskip("captum")

from cnnlab.errors import CnnlabError
from cnnlab.explain.attributions import (
    METHODS,
    attribute,
    faithfulness,
    grad_cam_by_hand,
    sanity_check,
)
from cnnlab.models import create_model

quiet = {"log": lambda s: None}


@pytest.fixture(scope="module")
def shapes_resnet(tmp_path_factory):
    """A small ResNet-20 trained on 16x16 shapes, and 12 of its evaluation images."""
    cfg = cnnlab.TrainConfig(dataset="shapes", image_size=16, limit_train=1500, epochs=4,
                             model="resnet20", lr=0.1, crop_padding=1,
                             out_dir=str(tmp_path_factory.mktemp("runs")), name="s")
    run = cnnlab.train(cfg, report=False, **quiet)
    val = run.data().eval.sample(12, 0)
    return run, val.x.float() / 255


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_non_negative_map_per_pixel(method):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=4).eval()
    x = torch.rand(3, 3, 16, 16)
    maps = attribute(model, x, torch.tensor([0, 1, 2]), method)
    assert maps.shape == (3, 16, 16) and (maps >= 0).all() and np.isfinite(maps).all()


def test_captums_grad_cam_equals_the_hand_computation():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=5).eval()
    x, target = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    ours = torch.from_numpy(attribute(model, x, target, "gradcam"))
    assert torch.allclose(ours, grad_cam_by_hand(model, x, target), atol=1e-5)


def test_full_randomization_destroys_saliency_and_grad_cam_maps(shapes_resnet):
    """Adebayo et al. 2018: maps that explain the model change when the model is destroyed."""
    run, x = shapes_resnet
    model = run.load_model()
    with torch.no_grad():
        target = model(x).argmax(1)
    methods = ["saliency", "gradcam"]
    maps = {m: attribute(model, x, target, m) for m in methods}
    result = sanity_check(model, x, target, methods, maps)
    assert result["full"]["saliency"] < 0.3 and result["full"]["gradcam"] < 0.3, result["full"]
    assert result["cascade"][-1]["layers_randomized"] == result["layers"]


class Patterned(nn.Module):
    """A linear model on the image (or its square) weighted by a fixed ramp: its saliency is
    |ramp * w| (or |2 x ramp * w|), so randomizing w leaves the ramp in both maps."""

    def __init__(self, square: bool):
        super().__init__()
        self.square = square
        self.register_buffer("ramp", torch.linspace(0.05, 4, 16 * 16).view(1, 1, 16, 16) ** 2)
        self.fc = nn.Linear(3 * 16 * 16, 2)

    def forward(self, x):
        return self.fc(((x * x if self.square else x) * self.ramp).flatten(1))


def test_the_sanity_check_discounts_a_pattern_shared_by_every_image():
    """Review defect: a raw rank correlation after randomization counts any fixed spatial
    pattern. A map that is the ramp times the weights (no image in it) must not be called
    'shows the image'; a map that carries the image (x * ramp * w) still must."""
    torch.manual_seed(1)
    x, target = torch.rand(12, 3, 16, 16), torch.ones(12, dtype=torch.long)
    fixed = Patterned(square=False)
    maps = {"saliency": attribute(fixed, x, target, "saliency")}
    res = sanity_check(fixed, x, target, ["saliency"], maps)
    assert res["full_raw"]["saliency"] > 0.3  # the old statistic flagged it
    assert abs(res["full_raw_other_image"]["saliency"] - res["full_raw"]["saliency"]) < 1e-6
    assert res["full_ci"]["saliency"]["high"] < 0.3 and abs(res["full"]["saliency"]) < 0.05
    image = Patterned(square=True)
    maps = {"saliency": attribute(image, x, target, "saliency")}
    res = sanity_check(image, x, target, ["saliency"], maps)
    assert res["full_ci"]["saliency"]["low"] > 0.3  # the image survives randomization


class TopLeft(nn.Module):
    """Class 1's score is the brightness of the top-left 4x4 pixels; class 0's is constant."""

    def forward(self, x):
        s = x[:, :, :4, :4].mean((1, 2, 3)) * 20
        return torch.stack([torch.full_like(s, 15.0), s], 1)


def test_faithfulness_ranks_a_map_of_the_true_pixels_above_a_random_order():
    x = torch.full((4, 3, 16, 16), 0.2)
    x[:, :, :4, :4] = 1.0  # the bright corner is what class 1 reads
    truth = np.zeros((4, 16, 16), np.float32)
    truth[:, :4, :4] = 1.0
    result = faithfulness(TopLeft(), x, torch.ones(4, dtype=torch.long), {"truth": truth}, steps=16)
    assert result["truth"]["deletion_auc"] < result["random"]["deletion_auc"] - 0.2
    assert result["truth"]["insertion_auc"] > result["random"]["insertion_auc"] + 0.1


def test_the_attributions_analysis_stores_maps_checks_and_a_report_section(shapes_resnet):
    run, _ = shapes_resnet
    res = run_analysis(run, "attributions", methods=("saliency", "gradcam"), n=8, index=3, **quiet)
    assert [r["kind"] for r in res["gallery"]][-1] == "#3"
    assert set(res["sanity"]["full"]) == {"saliency", "gradcam"} and "random" in res["faithfulness"]
    assert any(v.startswith("Most faithful") for v in res["verdicts"])
    assert any(v.startswith("Faithfulness, insertion minus deletion AUC") and "95% CI" in v
               for v in res["verdicts"])
    html = cnnlab.render_report(run).read_text()
    assert "Which pixels: attribution maps" in html and "Cascading randomization" not in html.split(
        "Which pixels")[0]


def test_unknown_method_and_bad_index_are_one_line_errors(shapes_resnet):
    run, _ = shapes_resnet
    with pytest.raises(CnnlabError, match="unknown attribution method lime; choose from saliency"):
        run_analysis(run, "attributions", methods=("lime",), **quiet)
    with pytest.raises(CnnlabError, match="--index 5000 is out of range"):
        run_analysis(run, "attributions", index=5000, **quiet)


def test_the_plug_in_lists_the_librarys_methods():
    from cnnlab.analysis import attributions as plugin

    assert plugin.METHODS == METHODS


def test_the_claim_tests_every_method_at_a_bonferroni_level():
    """Either test passed by one of M methods would count, so each runs at 1 - 0.05 / M: a method
    that passes at 95% but not at that level does not carry the claim."""
    from cnnlab.analysis.attributions import claims
    from cnnlab.evaluate.stats import bootstrap_ci

    rng = np.random.default_rng(0)
    z = rng.normal(size=16)
    gain = 0.16 + 0.3 * (z - z.mean()) / z.std()  # beats the random order at 95%, not at 99%
    random = np.zeros(16)
    assert bootstrap_ci(gain).low > 0 > bootstrap_ci(gain, level=0.99).low
    methods = ["saliency", "occlusion", "smoothgrad", "integrated_gradients", "gradcam"]
    per_image = {m: list(rng.normal(0.0, 0.05, 16)) for m in methods}  # randomization: maps destroyed
    res = {"methods": methods, "n": 16,
           "sanity": {"full_per_image": per_image,
                      "full_ci": {m: bootstrap_ci(np.asarray(v)).to_dict() for m, v in per_image.items()}},
           "faithfulness": {m: {"gain_per_image": list(gain if m == "saliency" else random)} for m in methods}
           | {"random": {"gain_per_image": list(random)}}}
    (claim,) = claims(res)
    assert claim.holds is None and "99%" in claim.verdict
    res["faithfulness"]["saliency"]["gain_per_image"] = list(gain + 0.3)  # clearly better
    assert claims(res)[0].holds is True
