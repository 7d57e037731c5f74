"""What convolutions see: first-layer filters, feature maps for one image, receptive fields.

The algorithms are in explain/filters.py; this plug-in runs them on a run's model and shows
them. The receptive field is measured (gradient of a centre unit with respect to the input),
not derived from layer arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para

if TYPE_CHECKING:
    from cnnlab.run import Run


def filters(run: Run, *, index: int = 0, image: str = "", log: Log = print) -> dict:
    """Filters, feature maps for one image, and receptive fields of a run's model.

    Args:
        index: which evaluation image to show (0 .. number of evaluation images - 1).
        image: an image file to show instead of an evaluation image.
    """
    import torch

    from cnnlab.data.files import read_image
    from cnnlab.explain.filters import feature_maps, first_layer_filters, receptive_fields

    if image and index:
        raise CnnlabError(f"give --index {index} or --image {image}, not both: one image is shown")
    cfg, data, model = run.config, run.data(), run.load_model()
    if image:
        c, h, _ = run.meta["input_shape"]
        picture = torch.from_numpy(read_image(image, h, "L" if c == 1 else "RGB")).permute(2, 0, 1)
        label = None
    elif not 0 <= index < len(data.eval):
        raise CnnlabError(f"--index {index} is out of range: the run has {len(data.eval)} evaluation "
                          f"images (0 .. {len(data.eval) - 1})")
    else:
        picture, label = data.eval.x[index], int(data.eval.y[index])
    maps = feature_maps(model, picture.float() / 255)
    fields = receptive_fields(model, data.eval.sample(64, cfg.seed).x.float() / 255)
    arrays = {"filters": first_layer_filters(model), "image": picture.numpy()}
    arrays |= {f"map{i}": m for i, (_, m) in enumerate(maps)}
    arrays |= {f"rf{i}": f["heat"] for i, f in enumerate(fields)}
    first = model.first_layer()
    info = {"model": cfg.model, "filters_trained": bool(first.weight.requires_grad),
            "filters_channels": int(first.weight.shape[1]),
            "image": image or f"{data.eval_split} image #{index}",
            "label": run.classes[label] if label is not None else None,
            "maps": [{"layer": n, "shape": list(m.shape)} for n, m in maps],
            "fields": [{"layer": f["layer"], "size": list(f["size"]), "out_shape": list(f["out_shape"])}
                       for f in fields],
            "input_shape": run.meta["input_shape"], "arrays": arrays}
    for f in info["fields"]:
        log(f"receptive field of {f['layer']}: {f['size'][0]}x{f['size'][1]} input pixels")
    return info


def section(ctx: SectionContext) -> str | None:
    from cnnlab.viz import plots as P

    info, arrays = ctx.result, ctx.arrays
    if not arrays:
        return None
    filters = arrays["filters"]
    channels = info.get("filters_channels", filters.shape[-1])
    norm = f", the norm over {channels} channels" if channels not in (1, 3) else ""
    body = (f"<h3>First-layer filters of {esc(info['model'])} ({filters.shape[1]}x"
            f"{filters.shape[2]}, first {len(filters)}{norm})</h3>")
    if not info.get("filters_trained", True):
        body += para("These filters are not trained: they are fixed before training starts. "
                     "fastnet's whitening layer holds the eigenvectors of the covariance of 2x2 "
                     "patches of the training images (or of the run it started from), each with its "
                     "negative, scaled to whiten them. The trained convolutions come after it, in the "
                     "feature maps below.", note=True)
    body += img(P.save(_filters_figure(filters), ctx.plots_dir, "filters"), "first-layer filters",
                "900px")
    maps = [(m["layer"], arrays[f"map{i}"]) for i, m in enumerate(info["maps"])]
    if maps:
        body += (f"<h3>Feature maps for {esc(info['image'])}"
                 f"{', class ' + esc(info['label']) if info.get('label') else ''}</h3>")
        body += img(P.save(_maps_figure(arrays["image"], maps), ctx.plots_dir, "feature_maps"),
                    "feature maps", "900px")
    if info["fields"]:
        body += ("<h3>Receptive fields</h3><p>Which input pixels one unit at the centre of each "
                 "layer responds to: the mean |gradient| of that unit with respect to the input "
                 "(bright = strong). Deeper units see more of the image.</p>")
        side = info["input_shape"][-1]
        if info["model"] == "lenet5" and side != 32:
            body += para(f"The fields are counted in the dataset's own {side}x{side} pixels. "
                         f"LeNet-5 reads 32x32 images, so it first resizes these to 32x32: its "
                         f"{filters.shape[1]}x{filters.shape[2]} filters span about "
                         f"{filters.shape[1] * side / 32:.1f} x {filters.shape[2] * side / 32:.1f} of "
                         "the original pixels, which is why a 5x5 filter shows a smaller field here.",
                         note=True)
        fig = _fields_figure(info["fields"], arrays)
        body += img(P.save(fig, ctx.plots_dir, "receptive_fields"), "receptive fields", "900px")
    return body


def _filters_figure(filters):
    from cnnlab.viz.plots import plt

    n = len(filters)
    cols = min(n, 16)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.75, rows * 0.8), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            f = filters[i]
            ax.imshow(f[..., 0] if f.shape[-1] == 1 else f, cmap="gray", interpolation="nearest")
    fig.tight_layout()
    return fig


def _maps_figure(image, maps: list):
    from cnnlab.viz.plots import plt, show

    ch = max(len(m) for _, m in maps)
    fig, axes = plt.subplots(len(maps), ch + 1, figsize=((ch + 1) * 1.05, len(maps) * 1.15),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    show(axes[0, 0], image)
    axes[0, 0].set_title("input", fontsize=8)
    for r, (name, m) in enumerate(maps):
        axes[r, 1].set_title(f"{name} {m.shape[1]}x{m.shape[2]}", fontsize=8, loc="left")
        for c in range(len(m)):
            axes[r, c + 1].imshow(m[c], cmap="viridis")
    fig.tight_layout()
    return fig


def _fields_figure(fields: list[dict], arrays: dict):
    from cnnlab.viz.plots import plt

    fig, axes = plt.subplots(1, len(fields), figsize=(2.6 * len(fields), 2.9), squeeze=False)
    for ax, (i, f) in zip(axes[0], enumerate(fields), strict=True):
        ax.imshow(arrays[f"rf{i}"], cmap="magma")
        ax.set_title(f"{f['layer']}\nfield {f['size'][0]}x{f['size'][1]} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def claims(res: dict) -> list[Claim]:
    """A convolution is a small moving window, and stacking them widens what a unit sees."""
    sizes = [f["size"] for f in res["fields"]]
    said = ", ".join(f"{f['layer']} {f['size'][0]}x{f['size'][1]}" for f in res["fields"])
    return [Claim("A convolution looks at a small window; deeper layers see more of the image",
                  f"receptive fields in input pixels: {said} (exact)",
                  len(sizes) > 1 and all(b[0] > a[0] for a, b in zip(sizes, sizes[1:], strict=False)))]


ANALYSIS = register(Analysis(
    name="filters", title="What convolutions see", compute=filters, section=section, order=84,
    verb=("explain", "filters"),
    claims=claims,
    bounds={"index": (0, 1e9)},
))
