"""Pictures of detection, segmentation and pose: galleries, precision-recall curves and overlays
for the report (matplotlib), and ``draw_annotations`` for the files ``cnnlab detect predict``
writes (Pillow).

Detections are coloured by what they are, not by class: true positives green, false positives
red, missed ground truth orange and dashed. They are found by ``match_detections``, which matches
as COCO's evaluation does at one IoU threshold (per class, by descending score, each prediction
taking the unmatched ground truth of highest IoU). Elsewhere each class has one colour
(``class_colours``). Coordinates are continuous pixels as in ``scenes`` (pixel i covers
[i, i + 1]); matplotlib centres pixel i on i, hence the half-pixel shifts below.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.patheffects as pe
import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from PIL import Image, ImageDraw, ImageFont
from torchvision.ops import box_iou

from cnnlab.viz.plots import plt, show

SKELETON_KEYPOINTS = {"circle": 5, "square": 4, "triangle": 3, "star": 10}
"""Keypoints per class in ``scenes``: polygon vertices from the topmost clockwise; a circle's
centre, then its north, east, south and west points."""

TP, FP, MISSED = "#2ee84a", "#ff3b30", "#ff9500"
GT_KP, PRED_KP = "#34f5ff", "#ff2fd0"
_PALETTE = ["#1e90ff", "#ffd400", "#ff4fb8", "#00e0c0", "#a070ff", "#b0f000", "#ff8c1a", "#c08060"]
_OUTLINE = [pe.withStroke(linewidth=2.5, foreground="black")]
_HALF = 0.5  # continuous pixel coordinate -> matplotlib's pixel-centred one


def class_colours(n: int) -> list[str]:
    """``n`` distinct bright colours (hex), one per class, readable on dark and textured images."""
    extra = [plt.matplotlib.colors.to_hex(c) for c in plt.get_cmap("tab20").colors]
    return [(_PALETTE + extra)[i % (len(_PALETTE) + len(extra))] for i in range(n)]


def skeleton(name: str) -> list[tuple[int, int]]:
    """Edges between keypoint indices: polygons join consecutive vertices and close; a circle
    joins its centre to each compass point."""
    k = SKELETON_KEYPOINTS.get(name, 0)
    if name == "circle":
        return [(0, j) for j in range(1, k)]
    return [(j, (j + 1) % k) for j in range(k)] if k > 1 else []


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


# --- detection -------------------------------------------------------------------------------

def match_detections(pred: dict, true: dict, iou: float = 0.5, score_min: float = 0.3) -> dict:
    """Match one image's predictions to its ground truth.

    Predictions scoring at least ``score_min``, by descending score, each take the unmatched ground
    truth of their class with the highest IoU if that IoU is at least ``iou`` (COCO's greedy rule).

    Args:
        pred: ``boxes`` (P, 4) xyxy pixels, ``labels`` (P,), ``scores`` (P,).
        true: ``boxes`` (T, 4) xyxy pixels, ``labels`` (T,).

    Returns:
        int64 index arrays: ``tp`` (matched predictions), ``tp_true`` (the ground truth each
        matched), ``fp`` (unmatched predictions scoring >= score_min), ``missed`` (unmatched truth).
    """
    pb, tb = (torch.as_tensor(d["boxes"], dtype=torch.float32).reshape(-1, 4) for d in (pred, true))
    pl, tl = (torch.as_tensor(d["labels"]).reshape(-1) for d in (pred, true))
    scores = torch.as_tensor(pred["scores"], dtype=torch.float32).reshape(-1)
    overlap = box_iou(pb, tb) if len(pb) and len(tb) else torch.zeros(len(pb), len(tb))
    overlap[pl[:, None] != tl[None, :]] = -1.0
    taken = torch.zeros(len(tb), dtype=torch.bool)
    tp, tp_true, fp = [], [], []
    for p in torch.argsort(scores, descending=True, stable=True).tolist():
        if scores[p] < score_min:
            break
        candidates = overlap[p].masked_fill(taken, -1.0)
        t = int(candidates.argmax()) if len(tb) else -1
        if t >= 0 and candidates[t] >= iou:
            taken[t] = True
            tp.append(p)
            tp_true.append(t)
        else:
            fp.append(p)
    missed = torch.nonzero(~taken).reshape(-1).tolist()
    return {k: np.asarray(v, dtype=np.int64) for k, v in
            (("tp", tp), ("tp_true", tp_true), ("fp", fp), ("missed", missed))}


def pick_gallery(matches: Sequence[dict], n: int) -> list[int]:
    """Which images a gallery shows: a mix of mistakes and successes.

    Half of the ``n`` (rounded up) are the images with the most errors (false positives plus
    missed objects; ties by index), the rest are evenly spaced over the error-free images; when
    either group runs short the other fills in. Returns image indices, worst first.
    """
    errors = np.array([len(m["fp"]) + len(m["missed"]) for m in matches], dtype=int)
    bad = [int(i) for i in np.argsort(-errors, kind="stable") if errors[i] > 0]
    good = [i for i in range(len(matches)) if errors[i] == 0]
    n = min(n, len(matches))
    n_bad = min(len(bad), max((n + 1) // 2, n - len(good)))
    n_good = n - n_bad
    spread = np.linspace(0, len(good) - 1, n_good).round().astype(int) if n_good else []
    return bad[:n_bad] + [good[j] for j in spread]


def _panels(rows: int, cols: int, size: float, title_h: float = 0.3, header: float = 0.6):
    """A figure of ``rows`` x ``cols`` square image panels ``size`` inches wide, axes off, laid out
    exactly (no tight_layout), so label extents measured while drawing stay true."""
    gap = 0.08
    w, h = cols * size + (cols + 1) * gap, header + rows * (size + title_h) + gap
    fig, axes = plt.subplots(rows, cols, figsize=(w, h), squeeze=False)
    fig.subplots_adjust(left=gap / w, right=1 - gap / w, top=1 - (header + title_h) / h, bottom=gap / h,
                        wspace=gap / size, hspace=title_h / size)
    for ax in axes.ravel():
        ax.axis("off")
    return fig, axes


def _header(fig, title: str | None, handles: list, ncol: int) -> None:
    """A title line and a legend line above the panels (``_panels``' header)."""
    h = fig.get_figheight()
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.06 / h, va="top")
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - (0.26 if title else 0.04) / h),
               ncol=ncol, fontsize=9, frameon=False, handlelength=2.5)


def _draw_box(ax, box, colour: str, text: str | None, taken: list, dashed: bool = False) -> None:
    """One box on an image axis, clipped to the image, and its label (``_place_label``)."""
    (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()  # y runs down
    x0, y0, x1, y1 = (float(v) - _HALF for v in box)
    x0, x1 = np.clip([x0, x1], left, right)
    y0, y1 = np.clip([y0, y1], top, bottom)
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.6,
                           linestyle=(0, (3, 2)) if dashed else "-", path_effects=_OUTLINE))
    if text:
        _place_label(ax, (x0, y0, x1, y1), text, colour, taken)


def _place_label(ax, corners: tuple, text: str, colour: str, taken: list) -> None:
    """White text on black at the first spot that stays inside the image and overlaps no label in
    ``taken``: above the box, below it, inside its top, inside its bottom; left-, then right-aligned.
    Failing that, the first spot inside the image."""
    x0, y0, x1, y1 = corners
    ax.apply_aspect()  # the axes' final place, which text extents depend on
    renderer, frame = ax.figure.canvas.get_renderer(), ax.get_window_extent()
    spots = [(x, y, ha, va) for y, va in ((y0, "bottom"), (y1, "top"), (y0, "top"), (y1, "bottom"))
             for x, ha in ((x0, "left"), (x1, "right"))]
    style = {"fontsize": 7.5, "color": "white", "clip_on": True,
             "bbox": {"boxstyle": "square,pad=0.15", "facecolor": "black", "alpha": 0.72,
                      "edgecolor": colour, "linewidth": 0.9}}
    fallback = None
    for x, y, ha, va in spots:
        t = ax.text(x, y, text, ha=ha, va=va, **style)
        extent = t.get_window_extent(renderer).expanded(1.08, 1.35)  # with the bbox's padding
        fits = (frame.x0 <= extent.x0 and extent.x1 <= frame.x1 and frame.y0 <= extent.y0
                and extent.y1 <= frame.y1)
        if fits and not any(extent.overlaps(o) for o in taken):
            if fallback is not None:
                fallback.remove()
            taken.append(extent)
            return
        if fits and fallback is None:
            fallback = t
        else:
            t.remove()
    if fallback is None:  # no spot inside the image: the first one, clipped
        x, y, ha, va = spots[0]
        fallback = ax.text(x, y, text, ha=ha, va=va, **style)
    taken.append(fallback.get_window_extent(renderer).expanded(1.08, 1.35))


def _detection_pair(axes, image, pred: dict, true: dict, m: dict, classes: list[str], index: int) -> None:
    """The prediction panel and the ground-truth panel of one image."""
    ax_p, ax_t = axes
    for ax in axes:
        show(ax, image)
    scores, plab, tlab = _np(pred["scores"]), _np(pred["labels"]), _np(true["labels"])
    pboxes, tboxes = _np(pred["boxes"]).reshape(-1, 4), _np(true["boxes"]).reshape(-1, 4)
    taken_p, taken_t = [], []
    for idx, colour in ((m["tp"], TP), (m["fp"], FP)):
        for p in idx:
            _draw_box(ax_p, pboxes[p], colour, f"{classes[int(plab[p])]} {scores[p]:.2f}", taken_p)
    for t in m["tp_true"]:
        _draw_box(ax_t, tboxes[t], TP, classes[int(tlab[t])], taken_t)
    for t in m["missed"]:
        _draw_box(ax_t, tboxes[t], MISSED, classes[int(tlab[t])], taken_t, dashed=True)
    ax_p.set_title(f"#{index} predicted: {len(m['tp'])} right, {len(m['fp'])} wrong", fontsize=9,
                   color="#c81e14" if len(m["fp"]) else "black")
    ax_t.set_title(f"ground truth: {len(m['missed'])} missed", fontsize=9,
                   color="#b35900" if len(m["missed"]) else "black")


def detection_gallery(x, predictions: list[dict], targets: list[dict], classes: list[str], n: int = 8,
                      score_min: float = 0.3, iou: float = 0.5):
    """Predictions (left) beside ground truth (right) for ``n`` images chosen by ``pick_gallery``.

    Args:
        x: images (N, 3, H, W) uint8.
        predictions: per image ``boxes``, ``labels``, ``scores``; those below ``score_min`` are hidden.
        targets: per image ``boxes``, ``labels``.
        classes: class names, indexed by label.
    """
    x = _np(x)
    matches = [match_detections(p, t, iou, score_min) for p, t in zip(predictions, targets, strict=True)]
    chosen = pick_gallery(matches, n)
    per_row = 2 if len(chosen) > 1 else 1  # image pairs per row
    rows = max(1, (len(chosen) + per_row - 1) // per_row)
    fig, axes = _panels(rows, 2 * per_row, 2.7)
    for k, i in enumerate(chosen):
        pair = axes[k // per_row, 2 * (k % per_row): 2 * (k % per_row) + 2]
        _detection_pair(pair, x[i], predictions[i], targets[i], matches[i], classes, i)
    handles = [Line2D([], [], color=TP, lw=2.5, label="true positive / found object"),
               Line2D([], [], color=FP, lw=2.5, label="false positive"),
               Line2D([], [], color=MISSED, lw=2.5, ls=(0, (3, 2)), label="missed object")]
    _header(fig, f"Predictions (score ≥ {score_min:g}) beside ground truth; a prediction is right at "
                 f"IoU ≥ {iou:g} with an object of its class. Images with errors first.", handles, 3)
    return fig


def pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], ap: dict[str, float] | None = None):
    """Precision against recall per class at IoU 0.5 (``evaluate.detection.precision_recall``).

    ``ap`` gives each class's AP for the legend; without it the AP is the mean precision over the
    curve's recall points (COCO's 101-point AP when the curves come from ``precision_recall``).
    """
    fig, ax = plt.subplots(figsize=(5.4, 4.5))
    colours, styles = class_colours(len(curves)), ["-", "--", "-.", ":"]
    for k, (name, (recall, precision)) in enumerate(curves.items()):
        recall, precision = np.asarray(recall, float), np.asarray(precision, float)
        value = ap.get(name) if ap is not None else float(np.mean(precision))
        label = name if value is None else f"{name}  (AP {value:.2f})"
        reached = np.nonzero(precision > 0)[0]  # COCO's precision is 0 beyond the largest recall
        end = reached[-1] + 1 if len(reached) else 0
        # widths shrink class by class so curves lying on each other still show every colour
        ax.plot(recall[:end], precision[:end], color=colours[k], lw=max(1.2, 4 - 0.8 * k),
                ls=styles[k % len(styles)], drawstyle="steps-post", label=label)
        if end:
            ax.plot(recall[end - 1], precision[end - 1], "o", color=colours[k], mec="black", ms=6)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05),
           title="Precision-recall at IoU 0.5 (dot: the largest recall reached)")
    if curves:
        ax.legend(loc="lower left", fontsize=9)
    fig.tight_layout()
    return fig


# --- segmentation ----------------------------------------------------------------------------

def colour_classes(image: np.ndarray, class_map: np.ndarray, colours: list[str]) -> np.ndarray:
    """(H, W, 3) uint8: each class in its colour over a dark grey copy of the image (class 0,
    background, stays dark). ``colours`` are the classes' colours, without background."""
    grey = image.astype(np.float32).mean(0) if image.ndim == 3 else image.astype(np.float32)
    out = np.repeat((0.3 * grey)[..., None], 3, axis=-1)
    rgb = np.array([plt.matplotlib.colors.to_rgb(c) for c in colours]) * 255
    for c in range(len(colours)):
        out[class_map == c + 1] = rgb[c]
    return out.round().astype(np.uint8)


def _object_iou(pred: np.ndarray, true: np.ndarray, classes: list[str]) -> str:
    """One image's IoU averaged over the object classes in its truth or prediction (pixels right
    would hide a missed object: the background is most of the image)."""
    import torch

    from cnnlab.evaluate.segmentation import segmentation_iou

    r = segmentation_iou(torch.from_numpy(pred[None]), torch.from_numpy(true[None]), ["background", *classes])
    ious = [v for name, v in r["per_class"].items() if name != "background" and v is not None]
    if not ious:
        return f"{100 * r['pixel_accuracy']:.0f}% of pixels right (no objects)"
    return f"object IoU {np.mean(ious):.2f}"


def segmentation_overlays(x, pred, true, classes: list[str], n: int = 6):
    """Rows of image | ground truth | prediction for the first ``n`` images.

    Args:
        x: images (N, 3, H, W) uint8.
        pred, true: class maps (N, H, W), 0 background, 1 + class.
        classes: class names without background.
    """
    x, pred, true = _np(x), _np(pred), _np(true)
    n = min(n, len(x))
    colours = class_colours(len(classes))
    fig, axes = _panels(max(n, 1), 3, 2.4, header=0.35)
    for i in range(n):
        show(axes[i, 0], x[i])
        for ax, m in ((axes[i, 1], true[i]), (axes[i, 2], pred[i])):
            show(ax, colour_classes(x[i], m, colours).transpose(2, 0, 1))
        axes[i, 0].set_title(f"image #{i}", fontsize=9)
        axes[i, 1].set_title("ground truth", fontsize=9)
        axes[i, 2].set_title(f"prediction: {_object_iou(pred[i], true[i], classes)}", fontsize=9)
    handles = [Patch(facecolor=c, edgecolor="black", label=name) for name, c in zip(classes, colours,
                                                                                    strict=True)]
    handles.append(Patch(facecolor="#303030", edgecolor="black", label="background (image dimmed)"))
    _header(fig, None, handles, min(len(handles), 5))
    return fig


# --- pose ------------------------------------------------------------------------------------

def _keypoint_set(ax, kp: np.ndarray, shown: np.ndarray, edges, colour: str, filled: bool) -> None:
    """Keypoints (K, 2) where ``shown``, joined by ``edges``, hollow circles or filled dots."""
    xy = kp[:, :2] - _HALF
    for a, b in edges:
        if shown[a] and shown[b]:
            ax.plot(xy[[a, b], 0], xy[[a, b], 1], color=colour, lw=1.3, ls="-" if filled else (0, (2, 1.5)),
                    path_effects=_OUTLINE, solid_capstyle="round")
    style = {"facecolor": colour, "edgecolor": "black", "s": 26, "linewidths": 0.8} if filled else \
        {"facecolor": "none", "edgecolor": colour, "s": 60, "linewidths": 1.6, "path_effects": _OUTLINE}
    ax.scatter(xy[shown, 0], xy[shown, 1], zorder=3, **style)


def keypoint_overlays(crops, pred, true, labels, classes: list[str], n: int = 12, per_row: int = 6):
    """The first ``n`` crops with their true keypoints (hollow circles, dashed skeleton) and the
    predicted ones (filled dots, solid skeleton), where the truth's visibility > 0.

    Args:
        crops: (M, 3, S, S) uint8.
        pred: (M, K, 2) or (M, K, 3) predicted keypoints, crop pixels.
        true: (M, K, 3) as (x, y, visibility), crop pixels.
        labels: (M,) class of each crop.
    """
    crops, pred, true, labels = _np(crops), _np(pred), _np(true), _np(labels)
    n = min(n, len(crops))
    per_row = max(1, min(per_row, n))
    rows = max(1, (n + per_row - 1) // per_row)
    fig, axes = _panels(rows, per_row, 2.0, header=0.35)
    for i in range(n):
        ax, name = axes.ravel()[i], classes[int(labels[i])]
        k = SKELETON_KEYPOINTS.get(name, true.shape[1])
        shown = true[i, :, 2] > 0
        shown[k:] = False
        show(ax, crops[i])
        ax.set_xlim(-0.5, crops.shape[-1] - 0.5)
        ax.set_ylim(crops.shape[-2] - 0.5, -0.5)
        _keypoint_set(ax, true[i], shown, skeleton(name), GT_KP, filled=False)
        _keypoint_set(ax, pred[i], shown, skeleton(name), PRED_KP, filled=True)
        err = np.linalg.norm(pred[i, shown, :2] - true[i, shown, :2], axis=1)
        ax.set_title(f"{name}: {err.mean():.1f} px off" if shown.any() else name, fontsize=9)
    handles = [Line2D([], [], color=GT_KP, marker="o", mfc="none", mec=GT_KP, ls=(0, (2, 1.5)), ms=8, mew=1.6,
                      label="ground truth"),
               Line2D([], [], color=PRED_KP, marker="o", mfc=PRED_KP, mec="black", ms=6, label="prediction")]
    _header(fig, None, handles, 2)
    return fig


# --- annotated images (Pillow) ---------------------------------------------------------------

def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: scalable
    except TypeError:
        return ImageFont.load_default()


def _blend_masks(img: Image.Image, masks: np.ndarray, colours: list[tuple]) -> Image.Image:
    """Each mask (M, h, w; bool or probability > 0.5) painted over ``img`` in its colour at 45%."""
    masks = masks.reshape(len(masks), *masks.shape[-2:])
    rgb = np.asarray(img, dtype=np.float32)
    for m, colour in zip(masks, colours, strict=True):
        up = Image.fromarray(((m > 0.5) * 255).astype(np.uint8)).resize(img.size, Image.NEAREST)
        on = np.asarray(up) > 0
        rgb[on] = 0.55 * rgb[on] + 0.45 * np.array(colour, dtype=np.float32)
    return Image.fromarray(rgb.round().astype(np.uint8))


def _label(draw: ImageDraw.ImageDraw, size: tuple[int, int], box: tuple, text: str, colour: tuple,
           font, text_h: int, taken: list[tuple]) -> None:
    """``text`` on a patch of ``colour`` at the first spot that stays inside the image and overlaps
    no label in ``taken`` (the rule of the report's ``_place_label``): above the box, below it,
    inside its top, inside its bottom; left-, then right-aligned. Failing that, the first spot
    inside the image. ``size``: the image's (width, height); the patch drawn joins ``taken``."""
    (width, height), (x0, y0, x1, y1) = size, box
    x0, x1 = min(max(x0, 0), width), min(max(x1, 0), width)  # the part of the box in the image
    y0, y1 = min(max(y0, 0), height), min(max(y1, 0), height)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(1, text_h // 8)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad  # the patch: [x, x + w) x [y, y + h)
    spots = [(x, y) for y in (y0 - h, y1, y0, y1 - h) for x in (x0, x1 - w)]
    inside = [(x, y) for x, y in spots if 0 <= x <= width - w and 0 <= y <= height - h]
    if not inside:  # no spot fits the image: each pulled in as far as it goes
        inside = [(min(max(0, x), max(0, width - w)), min(max(0, y), max(0, height - h))) for x, y in spots]

    def free(x: float, y: float) -> bool:
        return all(x + w <= a or x >= c or y + h <= b or y >= d for a, b, c, d in taken)

    x, y = next(((x, y) for x, y in inside if free(x, y)), inside[0])
    taken.append((x, y, x + w, y + h))
    draw.rectangle((x, y, x + w - 1, y + h - 1), fill=colour, outline=(0, 0, 0))  # PIL: both ends in
    ink = (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140 else (255, 255, 255)
    draw.text((x + pad - left, y + pad - top), text, fill=ink, font=font)


def _keypoints_pil(draw, kp: np.ndarray, edges, colour: tuple, scale: float, lw: int) -> None:
    """Keypoints (K, 2 or 3) with a dark outline, joined by ``edges``; visibility 0 left out."""
    shown = kp[:, 2] > 0 if kp.shape[1] > 2 else np.ones(len(kp), bool)
    xy = kp[:, :2] * scale
    for a, b in edges:
        if a < len(kp) and b < len(kp) and shown[a] and shown[b]:
            line = [tuple(xy[a]), tuple(xy[b])]
            draw.line(line, fill=(0, 0, 0), width=lw + 2)
            draw.line(line, fill=colour, width=lw)
    r = lw + 1.5
    for (x, y), s in zip(xy, shown, strict=True):
        if s:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(0, 0, 0), width=1)


def draw_annotations(image: np.ndarray, boxes=None, labels=None, scores=None,
                     classes: list[str] | None = None, masks=None, keypoints=None,
                     scale: int = 1) -> Image.Image:
    """An image (H, W, 3) uint8 with boxes labelled "class score", translucent masks, and keypoints
    joined by their class's skeleton, each object in its class's colour.

    ``scale`` first enlarges the image (nearest neighbour) so small images get crisp lines and
    text; all coordinates are in the original image's pixels. Masks are (M, H, W); keypoints
    (M, K, 2 or 3), those past their class's count (``SKELETON_KEYPOINTS``) or of visibility 0 left out.
    """
    img = Image.fromarray(_np(image).astype(np.uint8)).convert("RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    count = next((len(a) for a in (boxes, masks, keypoints) if a is not None), 0)
    known = labels is not None
    labels = _np(labels).astype(int) if known else np.zeros(count, int)
    palette = class_colours(int(labels.max(initial=0)) + 1)
    colours = [tuple(int(palette[c][i:i + 2], 16) for i in (1, 3, 5)) for c in labels]
    if masks is not None:
        img = _blend_masks(img, _np(masks), colours[:len(masks)])
    draw = ImageDraw.Draw(img)
    side = min(img.size)
    lw, text_h = max(2, round(side / 200)), int(np.clip(side / 30, 12, 36))
    font = _font(text_h)
    if keypoints is not None:
        for kp, c, colour in zip(_np(keypoints), labels, colours, strict=False):
            name = classes[c] if classes is not None and known else ""  # no class, no skeleton
            kp = kp[:SKELETON_KEYPOINTS.get(name, len(kp))]
            _keypoints_pil(draw, kp, skeleton(name), colour, scale, lw)
    scaled = _np(boxes).reshape(-1, 4) * scale if boxes is not None else np.zeros((0, 4))
    for box, colour in zip(scaled, colours, strict=False):
        draw.rectangle(tuple(box), outline=(0, 0, 0), width=lw + 2)
        draw.rectangle(tuple(box + [1, 1, -1, -1]), outline=colour, width=lw)
    taken: list[tuple] = []  # labels after every box, so no later box's line crosses a label
    scores = None if scores is None else _np(scores)
    for i, box in enumerate(scaled):
        name = classes[labels[i]] if classes is not None else str(labels[i])
        text = name if scores is None else f"{name} {float(scores[i]):.2f}"
        _label(draw, img.size, tuple(float(v) for v in box), text, colours[i], font, text_h, taken)
    return img


def per_image(ex: dict, side: str, n: int) -> list[dict]:
    """The flattened boxes of a run's detect_examples.npz (``pred_*`` or ``true_*`` with the
    image each belongs to) back as one dict per image."""
    keys = ("boxes", "scores", "labels") if side == "pred" else ("boxes", "labels")
    where = ex[f"{side}_image"]
    return [{k: ex[f"{side}_{k}"][where == i] for k in keys} for i in range(n)]


def draw_tracks(frames: np.ndarray, rows: np.ndarray, trail: int = 12) -> list[np.ndarray]:
    """Each frame with its tracks' boxes, ids and the last ``trail`` centres of each track."""
    from PIL import Image, ImageDraw, ImageFont

    colours = class_colours(32)
    out = []
    for t, frame in enumerate(frames, start=1):
        scale = max(1, 256 // max(frame.shape[:2]))
        image = Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale),
                                              Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=max(11, image.height // 16))
        for r in rows[rows[:, 0] == t]:
            colour = colours[int(r[1]) % len(colours)]  # hex, as PIL takes it
            x, y, bw, bh = r[2:6] * scale
            draw.rectangle([x, y, x + bw, y + bh], outline=colour, width=2)
            draw.text((x + 2, y + 1), f"id {int(r[1])}", fill=colour, font=font, stroke_width=2,
                      stroke_fill="black")
            past = rows[(rows[:, 1] == r[1]) & (rows[:, 0] <= t) & (rows[:, 0] > t - trail)]
            centres = [((p[2] + p[4] / 2) * scale, (p[3] + p[5] / 2) * scale) for p in past]
            if len(centres) > 1:
                draw.line(centres, fill=colour, width=2)
        out.append(np.asarray(image))
    return out
