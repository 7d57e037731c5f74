"""Which pixels made this prediction: attribution maps through Captum, and how far to trust them.

Methods (``METHODS``), each a map of non-negative importance per pixel, (N, H, W):
- ``saliency``: |d score / d pixel| (Simonyan, Vedaldi & Zisserman 2014).
- ``integrated_gradients``: the gradient integrated along a path from a black image
  (Sundararajan, Taly & Yan 2017), |attribution| summed over channels.
- ``smoothgrad``: saliency averaged over noisy copies of the image (Smilkov et al. 2017).
- ``gradcam``: the last convolutional map weighted by its pooled gradients, ReLU, upsampled
  (Selvaraju et al. 2017). It reads ``forward_features``, the unpooled map every model has.
- ``occlusion``: how much the score falls when a grey square hides each region (Zeiler &
  Fergus 2014).

How far to trust them:
- ``sanity_check``: cascading randomization (Adebayo et al. 2018). The model's weighted layers
  are re-initialised from the top down; after each cut, the Spearman rank correlation between
  a method's maps on the trained and on the randomized model. A map that barely changes when
  the model is destroyed explains the image (edges), not the model. Raw correlations also
  count any spatial pattern both models draw on every image, so each model's mean map is
  divided out and the correlation is taken against a different-image baseline.
- ``faithfulness``: deletion and insertion curves (Petsiuk, Das & Saenko 2018): pixels are
  removed from (or revealed in) a blurred copy in order of importance, and the probability of
  the predicted class is tracked; the area under each curve, against a random order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import ImageClassifier

METHODS = ("saliency", "integrated_gradients", "smoothgrad", "gradcam", "occlusion")


def _captum():
    try:
        import captum.attr
    except ImportError:
        raise CnnlabError("attributions need Captum: pip install 'cnnlab[explain]' "
                          "(or pip install captum)") from None
    return captum.attr


class FeatureMap(nn.Module):
    """The model's first half as a module, so that Captum can hook the last feature map."""

    def __init__(self, model: ImageClassifier):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def _gradcam(model: ImageClassifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    A = _captum()
    features = FeatureMap(model)
    cam = A.LayerGradCam(lambda inp: model.forward_head(features(inp)), features).attribute(
        x, target=target, relu_attributions=True)  # (N, 1, h, w)
    return A.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")[:, 0]


def _occlusion(model: ImageClassifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    c, h, _ = x.shape[1:]
    window = max(2, h // 8)  # squares of 1/8 the side, side by side: 64 forward passes an image
    attr = _captum().Occlusion(model).attribute(
        x, sliding_window_shapes=(c, window, window), strides=(c, window, window),
        baselines=0.5, target=target, perturbations_per_eval=64)
    return attr.sum(1).clamp_min(0)


ATTRIBUTE: dict[str, Callable[[ImageClassifier, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "saliency": lambda m, x, t: _captum().Saliency(m).attribute(x, target=t, abs=True).sum(1),
    "integrated_gradients": lambda m, x, t: _captum().IntegratedGradients(m).attribute(
        x, baselines=torch.zeros_like(x), target=t, n_steps=32, internal_batch_size=256).abs().sum(1),
    "smoothgrad": lambda m, x, t: _captum().NoiseTunnel(_captum().Saliency(m)).attribute(
        x, nt_type="smoothgrad", nt_samples=16, nt_samples_batch_size=16, stdevs=0.15, target=t,
        abs=True).sum(1),
    "gradcam": _gradcam,
    "occlusion": _occlusion,
}


def check_methods(methods: tuple[str, ...] | list[str]) -> None:
    unknown = [m for m in methods if m not in ATTRIBUTE]
    if unknown or not methods:
        raise CnnlabError(f"unknown attribution method {', '.join(unknown) or '(none given)'}; "
                          f"choose from {', '.join(METHODS)}")


def attribute(model: ImageClassifier, x: torch.Tensor, target: torch.Tensor, method: str) -> np.ndarray:
    """The method's importance map (N, H, W) for images ``x`` in [0, 1] and classes ``target``."""
    check_methods([method])
    model.eval()
    maps = ATTRIBUTE[method](model, x.float().clone().requires_grad_(True), target)
    return maps.detach().float().cpu().numpy()


def weighted_layers(model: nn.Module) -> list[str]:
    """Names of the modules with their own weights, input to output."""
    return [n for n, m in model.named_modules()
            if n and any(p is not None for p in (getattr(m, "weight", None),))
            and not any(True for _ in m.children())]


def randomize(model: nn.Module, names: list[str], seed: int = 0) -> nn.Module:
    """A copy of the model whose named layers are re-initialised (weights and biases)."""
    torch.manual_seed(seed)
    out = copy.deepcopy(model)
    for name in names:
        layer = out.get_submodule(name)
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
        else:  # a parameter-holding module without a reset: Gaussian weights
            for p in layer.parameters(recurse=False):
                nn.init.normal_(p, std=0.1)
    return out.eval()


def rank_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of two maps (N, H, W), image by image: (N,)."""
    from scipy.stats import spearmanr

    values = []
    for x, y in zip(a.reshape(len(a), -1), b.reshape(len(b), -1), strict=True):
        if x.std() == 0 or y.std() == 0:
            values.append(0.0)  # a constant map keeps no ranking of the original
        else:
            values.append(float(spearmanr(x, y).statistic))
    return np.asarray(values)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the Spearman rank correlation of two maps (N, H, W)."""
    return float(rank_correlations(a, b).mean())


def without_mean_map(maps: np.ndarray) -> np.ndarray:
    """Each map divided by the model's mean map over the images: what is left is what this
    image adds to the pattern the model draws on every image (borders, centre, padding)."""
    mean = maps.mean(0, keepdims=True)
    return maps / (mean + 1e-6 * float(mean.max()) + 1e-12)


def image_specific_similarity(trained: np.ndarray, random: np.ndarray) -> dict:
    """How much of the trained model's map of an image survives randomization, beyond a fixed
    spatial pattern. Raw rank correlations are inflated by any pattern both models draw on
    every image: the trained map of image i correlates with the random map of a *different*
    image as well. So both sets of maps lose their mean map, and the same-image correlation
    is compared with the different-image one (image i against image i+1); per image,
    ``excess`` = same - different, with a bootstrap interval over images."""
    from cnnlab.evaluate.stats import bootstrap_ci

    other = np.roll(np.arange(len(trained)), 1)  # a derangement: every image meets another
    t, r = without_mean_map(trained), without_mean_map(random)
    excess = rank_correlations(t, r) - rank_correlations(t, r[other])
    return {"raw": rank_correlation(trained, random),
            "raw_other_image": rank_correlation(trained, random[other]),
            "excess": float(excess.mean()), "excess_ci": bootstrap_ci(excess).to_dict(),
            "excess_per_image": excess.tolist()}


def sanity_check(model: ImageClassifier, x: torch.Tensor, target: torch.Tensor,
                 methods: list[str], maps: dict[str, np.ndarray], cuts: int = 3) -> dict:
    """Cascading randomization from the top (Adebayo et al. 2018): for ``cuts`` depths (the
    last one: every layer), how much of each method's maps on the trained model survive,
    image by image, beyond the different-image baseline (``image_specific_similarity``).
    ``row[method]`` is that excess; ``full_raw`` keeps the uncorrected correlation."""
    if len(x) < 2:
        raise CnnlabError("the sanity check needs at least 2 images (one is the other's baseline)")
    layers = weighted_layers(model)[::-1]  # top (classifier) first
    depths = sorted({max(1, round(len(layers) * (i + 1) / cuts)) for i in range(cuts)})
    rows, detail = [], {}
    for depth in depths:
        random_model = randomize(model, layers[:depth])
        row = {"layers_randomized": depth, "down_to": layers[depth - 1]}
        for method in methods:
            detail[method] = image_specific_similarity(maps[method],
                                                       attribute(random_model, x, target, method))
            row[method] = detail[method]["excess"]
        rows.append(row)
    return {"layers": len(layers), "cascade": rows, "full": {m: rows[-1][m] for m in methods},
            "full_ci": {m: detail[m]["excess_ci"] for m in methods},
            "full_per_image": {m: detail[m]["excess_per_image"] for m in methods},
            "full_raw": {m: detail[m]["raw"] for m in methods},
            "full_raw_other_image": {m: detail[m]["raw_other_image"] for m in methods}}


def _blur(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    sigma = max(1.0, x.shape[-1] / 8)
    k = 2 * int(2 * sigma) + 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


@torch.no_grad()
def _curve(model, x, target, order: torch.Tensor, steps: int, insert: bool) -> np.ndarray:
    """Probability of ``target`` as pixels are deleted (or inserted) in ``order``: (N, steps+1)."""
    n, c, h, w = x.shape
    blurred = _blur(x)
    probs = []
    for k in np.linspace(0, h * w, steps + 1).round().astype(int):
        keep = torch.zeros(n, h * w, dtype=torch.bool)
        keep.scatter_(1, order[:, :k], True)  # the k most important pixels
        keep = keep.view(n, 1, h, w)
        image = torch.where(keep, x, blurred) if insert else torch.where(keep, blurred, x)
        probs.append(model(image).softmax(1).gather(1, target[:, None])[:, 0])
    return torch.stack(probs, 1).numpy()


def faithfulness(model: ImageClassifier, x: torch.Tensor, target: torch.Tensor,
                 maps: dict[str, np.ndarray], steps: int = 16, seed: int = 0) -> dict:
    """Deletion and insertion AUC per method (and for a random order): a faithful map makes the
    probability fall fast when its top pixels go (low deletion AUC) and rise fast when they
    come back (high insertion AUC)."""
    model.eval()
    n, _, h, w = x.shape
    orders = {m: torch.from_numpy(np.argsort(-v.reshape(n, -1), axis=1, kind="stable").copy())
              for m, v in maps.items()}
    gen = torch.Generator().manual_seed(seed)
    orders["random"] = torch.stack([torch.randperm(h * w, generator=gen) for _ in range(n)])
    out = {}
    for method, order in orders.items():
        deletion = _curve(model, x, target, order, steps, insert=False)
        insertion = _curve(model, x, target, order, steps, insert=True)
        d_auc = np.trapezoid(deletion, dx=1 / steps, axis=1)
        i_auc = np.trapezoid(insertion, dx=1 / steps, axis=1)
        out[method] = {"deletion_auc": float(d_auc.mean()), "insertion_auc": float(i_auc.mean()),
                       "gain_per_image": (i_auc - d_auc).tolist(),
                       "deletion": deletion.mean(0).tolist(), "insertion": insertion.mean(0).tolist()}
    return out


def compare_faithfulness(faithful: dict, methods: list[str], level: float = 0.95,
                         resamples: int = 2000) -> dict:
    """Each method's gain (insertion minus deletion AUC) over a random order (intervals at
    ``level``), and the best method against the runner-up, as paired bootstrap intervals over
    the same images."""
    from cnnlab.evaluate.stats import bootstrap_ci

    gain = {m: np.asarray(faithful[m]["gain_per_image"]) for m in [*methods, "random"]}
    over_random = {m: bootstrap_ci(gain[m] - gain["random"], level=level, resamples=resamples).to_dict()
                   for m in methods}
    ranked = sorted(methods, key=lambda m: gain[m].mean(), reverse=True)
    out = {"over_random": over_random, "ranked": ranked}
    if len(ranked) > 1:
        out["best_minus_next"] = bootstrap_ci(gain[ranked[0]] - gain[ranked[1]]).to_dict()
    return out


def grad_cam_by_hand(model: ImageClassifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM written out (for the test against Captum's): weights = pooled gradients of the
    target score with respect to the last map; ReLU of the weighted sum; bilinear upsampling."""
    fmap = model.forward_features(x).detach().requires_grad_(True)
    score = model.forward_head(fmap).gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(score, fmap)
    cam = F.relu((grad.mean((2, 3), keepdim=True) * fmap).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()
