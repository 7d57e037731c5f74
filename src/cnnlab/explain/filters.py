"""What convolutions see: first-layer filters, feature maps per depth, receptive fields.

The receptive field of a unit is the set of input pixels that can change it. We measure it
(rather than derive it from layer arithmetic) as the gradient of one unit at the centre of a
layer's output with respect to the input, averaged in magnitude over images: the non-zero
region is the receptive field; where the gradient is large is the *effective* receptive
field (Luo et al. 2016), typically much smaller and roughly Gaussian.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnlab.models import ImageClassifier


def probe_layers(model: nn.Module, most: int = 4) -> list[tuple[str, nn.Module]]:
    """Up to ``most`` convolution (or linear, for an MLP) layers spread from first to last."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)
             and m.weight.requires_grad]
    if not convs:
        return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][:1]
    if len(convs) <= most:
        return convs
    picks = np.linspace(0, len(convs) - 1, most).round().astype(int)
    return [convs[i] for i in picks]


def first_layer_filters(model: ImageClassifier, most: int = 32) -> np.ndarray:
    """First-layer weights as images (K, H, W, C) in [0, 1]: a conv's kernels, or for an MLP
    each hidden unit's weights laid out as a whole image. The layer is the one that reads the
    image (``first_layer``: fastnet's whitening, frozen, before its first trained convolution,
    whose 24 input channels no picture shows). Kernels over other than 1 or 3 channels show
    each position's weight norm over the channels (C = 1)."""
    layer = model.first_layer()
    w = layer.weight.detach().float().cpu()
    if isinstance(layer, nn.Linear):
        c, s = model.in_channels, model.image_size
        w = w[:most].view(-1, c, s, s)
    w = w[:most]
    if w.shape[1] not in (1, 3):
        w = w.norm(dim=1, keepdim=True)
    lo = w.flatten(1).min(1).values[:, None, None, None]
    hi = w.flatten(1).max(1).values[:, None, None, None]
    return ((w - lo) / (hi - lo).clamp_min(1e-8)).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def feature_maps(model: nn.Module, image: torch.Tensor, most: int = 4, channels: int = 8
                 ) -> list[tuple[str, np.ndarray]]:
    """Outputs of the probe layers for one image (C, H, W) in [0, 1]: (name, (channels, h, w))."""
    model.eval()
    outs: list[tuple[str, np.ndarray]] = []
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=name: outs.append((name, out[0, :channels].float().cpu().numpy())))
        for name, m in probe_layers(model, most)]
    try:
        model(image[None].float())
    finally:
        for h in hooks:
            h.remove()
    return [(n, o) for n, o in outs if o.ndim == 3]


def receptive_fields(model: nn.Module, images: torch.Tensor, most: int = 4
                     ) -> list[dict]:
    """For each probe layer: mean |d unit / d input| of the centre unit, and the field's size."""
    model.eval()
    x = images.float().clone().requires_grad_(True)
    results = []
    for name, layer in probe_layers(model, most):
        store: dict[str, torch.Tensor] = {}
        hook = layer.register_forward_hook(lambda mod, inp, out, store=store: store.setdefault("out", out))
        try:
            model(x)
        finally:
            hook.remove()
        out = store["out"]
        if out.ndim != 4:
            continue
        h, w = out.shape[-2:]
        unit = out[:, :, h // 2, w // 2].sum()
        (grad,) = torch.autograd.grad(unit, x)
        heat = grad.abs().sum(1).mean(0).cpu().numpy()  # (H, W)
        rows, cols = np.nonzero(heat > heat.max() * 1e-6)
        size = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)) if len(rows) else (0, 0)
        results.append({"layer": name, "heat": heat, "size": size, "out_shape": tuple(out.shape[1:])})
    return results
