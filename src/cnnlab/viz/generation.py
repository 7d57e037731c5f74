"""Pictures of a generator: sample grids, its training (losses and FID against the floor), the
class histogram, the samples nearest to a training image, and the snapshots as a GIF; and the
HTML bodies that a GAN run's report and the generation analysis both show (``*_html``), read
from the generator's run folder."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np

from cnnlab.io import load_npz
from cnnlab.viz import plots as P
from cnnlab.viz.html import esc, img, kpis, para, table
from cnnlab.viz.plots import plt, show

DOMAIN = ("Domain FID: Fréchet distance between the embeddings that the judge (a cnnlab classifier "
          "trained on the same data) gives the samples and the evaluation images; it ranks "
          "generators on this data and is not comparable with the Inception FIDs that papers publish.")


def picture(images: np.ndarray, columns: int = 8, title: str = "", scale: float = 0.55):
    """uint8 images (N, C, H, W) as one grid without gaps between rows of labels."""
    import torch

    from cnnlab.tasks.generate import grid

    g = grid(torch.from_numpy(np.ascontiguousarray(images)), columns)
    rows = g.shape[0] / g.shape[1] * columns
    fig, ax = plt.subplots(figsize=(columns * scale + 0.4, rows * scale + (0.5 if title else 0.1)))
    ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def class_rows(images: np.ndarray, classes: list[str], per_class: int = 8):
    """The conditional GAN's samples, one row per class asked for, the class written left."""
    k = len(classes)
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.55 + 1.2, k * 0.6))
    axes = np.atleast_2d(axes)
    for c in range(k):
        for j in range(per_class):
            show(axes[c, j], images[c * per_class + j])
        axes[c, 0].set_ylabel(classes[c][:10], rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.15)
    return fig


def training(history: list[dict], floor: float | None):
    """A GAN's D and G losses per epoch (a diffusion model's denoising loss), and the domain FID
    at each evaluation against the floor."""
    gan = any(r.get("g_loss") not in (None, "") for r in history)
    rows = [r for r in history if r.get("g_loss" if gan else "train_loss") not in (None, "")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    e = [r["epoch"] for r in rows]
    if gan:
        axes[0].plot(e, [r["d_loss"] for r in rows], label="discriminator", marker=".")
        axes[0].plot(e, [r["g_loss"] for r in rows], label="generator", marker=".")
        axes[0].set(title="Losses (a game: neither should win)", xlabel="epoch", ylabel="loss")
        axes[0].legend()
    else:
        axes[0].plot(e, [r["train_loss"] for r in rows], marker=".")
        axes[0].set(title="Denoising loss (one regression: it should fall)", xlabel="epoch",
                    ylabel="mean squared error of the noise")
    fid = [(r["epoch"], r["val_score"]) for r in history if r.get("val_score") not in (None, "")]
    if fid:
        axes[1].plot([a for a, _ in fid], [b for _, b in fid], marker="o", label="generated")
    if floor is not None:
        axes[1].axhline(floor, color="grey", ls="--", label="real-data floor (final, same n)")
    axes[1].set(title="Domain FID on the evaluation images (lower is better)", xlabel="epoch",
                ylabel="domain FID")
    axes[1].set_yscale("log")
    axes[1].legend()
    fig.tight_layout()
    return fig


def label_bars(fake: list[float], real: list[float], classes: list[str]):
    """The judge's class shares of the samples beside those of real images."""
    k = len(classes)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * k + 2), 3.2))
    ax.bar(x - 0.2, real, 0.4, label="real (held-out images)", color="#999")
    ax.bar(x + 0.2, fake, 0.4, label="generated", color="#1f77b4")
    ax.set_xticks(x, [c[:10] for c in classes], rotation=45 if k > 10 else 0,
                  ha="right" if k > 10 else "center")
    ax.set(ylabel="share of images", title="Which classes the generator makes (the judge's labels)")
    ax.set_ylim(0, 1.35 * max(max(fake), max(real), 1e-9))  # room above the bars for the legend
    ax.legend(loc="upper right", ncol=2)
    fig.tight_layout()
    return fig


def closest_pairs(samples: np.ndarray, train: np.ndarray, distance: np.ndarray):
    """Top row: the samples nearest to a training image (pixels); bottom row: that image."""
    n = len(samples)
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n + 0.8, 2.8))
    axes = np.atleast_2d(axes).reshape(2, n)
    for j in range(n):
        show(axes[0, j], samples[j])
        show(axes[1, j], train[j])
        axes[0, j].set_title(f"{distance[j]:.2f}", fontsize=8)
    axes[0, 0].set_ylabel("sample", rotation=0, ha="right", va="center")
    axes[1, 0].set_ylabel("nearest\ntraining", rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.08, hspace=0.15, left=0.12)
    return fig


def snapshots_gif(folder: Path, out: Path, max_side: int = 320) -> str | None:
    """``snapshots/epoch-NNN.png`` as one GIF (``out``), upscaled by whole pixels to about
    ``max_side``; returns a data: URI (None without snapshots)."""
    from PIL import Image, ImageDraw

    from cnnlab.io import atomic_write

    files = sorted(folder.glob("epoch-*.png"))
    if not files:
        return None
    frames = []
    for f in files:
        im = Image.open(f).convert("RGB")
        k = max(1, max_side // max(im.size))
        im = im.resize((im.width * k, im.height * k), Image.NEAREST)
        canvas = Image.new("RGB", (im.width, im.height + 16), "white")
        canvas.paste(im, (0, 16))
        ImageDraw.Draw(canvas).text((2, 2), f"epoch {int(f.stem.split('-')[1])}", fill="black")
        frames.append(canvas)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=400, loop=0)
    data = buf.getvalue()
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return "data:image/gif;base64," + base64.b64encode(data).decode()


def _generation(run_dir: Path) -> dict:
    path = run_dir / "generation.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def samples_html(run_dir: Path, classes: list[str], plots_dir: Path) -> str | None:
    """Real and generated images, a row per class, interpolations and the training GIF."""
    pics = load_npz(run_dir / "samples.npz")
    if not pics:
        return None
    gen = img(P.save(picture(pics["x"][:64], 8, "Generated"), plots_dir, "samples"),
              "generated samples", "420px")
    if "real" in pics:  # real images beside them, drawn the same way
        real = img(P.save(picture(pics["real"][:64], 8, "Real (held-out)"), plots_dir,
                          "real_samples"), "real images", "420px")
        body = f'<div class="cols"><div>{real}</div><div>{gen}</div></div>'
    else:
        body = gen
    if "by_class" in pics:
        body += "<h3>One row per class asked for (a conditional generator)</h3>"
        body += img(P.save(class_rows(pics["by_class"], classes), plots_dir, "by_class"),
                    "samples per class", "520px")
    body += "<h3>Walking in the latent space</h3>" + img(
        P.save(picture(pics["interpolation"], 10), plots_dir, "interpolation"), "interpolations",
        "520px")
    body += para("Each row moves from one noise vector to another (a straight line; for a diffusion "
                 "model a great circle, where every point is as long as noise): a smooth "
                 "change means a continuous space of images, not a lookup table.", note=True)
    gif = snapshots_gif(run_dir / "snapshots", plots_dir / "training.gif")
    if gif:
        body += "<h3>Training, one evaluation at a time (the same noise each time)</h3>" + img(
            gif, "samples during training", "360px")
    return body


def training_html(history: list[dict], floor: float | None, plots_dir: Path) -> str | None:
    """Losses and FID against time."""
    if not history:
        return None
    uri = P.save(training(history, floor), plots_dir, "gan_training")
    if not any(r.get("g_loss") not in (None, "") for r in history):  # a diffusion model
        return img(uri, "denoising loss and FID") + para(
            "The denoiser learns to tell the noise in a noisy image at every noise level. Its loss "
            "cannot reach 0: at low noise levels the little noise there is cannot be told from "
            "the image's own detail, and that error stays (at high levels the image is nearly all "
            "noise, and the noise is easy to name). The FID, measured on images drawn by DDIM, is "
            "the number to watch.", note=True)
    return img(uri, "GAN losses and FID") + para(
        "The discriminator's loss near log 4 = 1.39 means it cannot tell the images apart; a loss "
        "that falls to 0 while the generator's climbs is a discriminator that won, and samples that "
        "stop improving.", note=True)


def _yardsticks_html(yardsticks: dict, fid: float, floor: float) -> str:
    return para("For scale, the domain FID of real images slightly spoilt (the floor's second half "
                "against the same first half): " + "; ".join(
                    f"{name} {v:.3f} ({v / max(floor, 1e-12):.1f}x the floor)"
                    for name, v in yardsticks.items())
                + f". The samples' {fid:.3f} reads against these. This judge reads texture: blur "
                "or noise alone moves real images that far from the floor.")


def quality_html(run_dir: Path, classes: list[str], plots_dir: Path) -> str | None:
    """The measures beside their floor, and the class histogram."""
    r = _generation(run_dir)
    if not r:
        return None
    g, f, labels = r["generated"], r["floor"], r["labels"]
    ratio = g["fid"] / max(f["fid"], 1e-12)
    head = kpis([("domain FID", f"{g['fid']:.3f}"), ("real-data floor", f"{f['fid']:.3f}"),
                 ("ratio to the floor", f"{ratio:.1f}x"),
                 ("classes produced", f"{100 * labels['classes_covered']:.0f}%")]
                + ([("judge agrees with the label asked", f"{100 * r['label_agreement']:.1f}%")]
                   if r.get("label_agreement") is not None else []))
    rows = [[name, f"{g[key]:.4f}", f"{f[key]:.4f}", what] for name, key, what in (
        ("domain FID", "fid", "lower is better"),
        ("KID", "kid", f"lower is better (std over subsets {g['kid_std']:.4f}); unbiased, so "
                       "below 0 where two sets are as alike as two real samples"),
        ("precision", "precision", "samples that fall on the real data's manifold"),
        ("recall", "recall", "real images whose neighbourhood the samples reach"),
        ("density", "density", "about 1 for samples like real ones"),
        ("coverage", "coverage", "real images with a sample nearby"))]
    body = head + table(["measure", "generated", "floor: real vs real", "reading"], rows)
    if r.get("yardsticks"):  # runs measured before the yardsticks have none
        body += _yardsticks_html(r["yardsticks"], g["fid"], f["fid"])
    acc, k = r.get("judge_accuracy"), len(classes)
    if acc is not None:
        weak = acc < min(0.5, 2 / k)
        style = ' style="color:#b91c1c;font-weight:600"' if weak else ""
        body += (f'<p class="note"{style}>The judge: {esc(r.get("judge_model", ""))} at {100 * acc:.1f}% '
                 f"on the evaluation images (chance {100 / k:.0f}%)"
                 + ("; a judge this weak describes little of the images, and these numbers mean as "
                    "little: give a stronger one (--judge RUN, or --model resnet20)." if weak else ".")
                 + "</p>")
    body += para(f"{DOMAIN} Floor: the same measures between the two halves of the held-out "
                 f"images, {r['n']:,} each, the first of which the samples are compared with, so both "
                 "have the same n (FID is biased upwards at small n).", note=True)
    body += "<h3>Diversity: the classes it makes</h3>" + img(
        P.save(label_bars(labels["fake"], labels["real"], classes), plots_dir,
               "label_histogram"), "class histogram", "640px")
    verdict = ("<b>Mode collapse</b>: " if labels["collapsed"] else "No mode collapse at the level of "
               "classes: ")
    n = labels.get("n", r["n"])
    body += (f"<p>{verdict}{n:,} samples span "
             f"{100 * labels['classes_covered']:.0f}% of the classes with a label entropy of "
             f"{labels['entropy']:.2f} bits (real images {labels['real_entropy']:.2f}). A class "
             "counts as produced when it gets at least a tenth of its real share.</p>")
    return body


def copies_html(run_dir: Path, plots_dir: Path) -> str | None:
    """The near-copy statistic in features and pixels, and the closest pairs."""
    r = _generation(run_dir)
    if not r or "copies" not in r:
        return None
    rows = []
    for space, c in r["copies"].items():
        above = c["ci"][0] > c["expected"]
        rows.append([space, f"{100 * c['copy_share']:.1f}%",
                     f"{100 * c['ci'][0]:.1f}-{100 * c['ci'][1]:.1f}%",
                     f"{100 * c['expected']:.0f}%",
                     "more near-copies than chance" if above else "no more near-copies than chance"])
    body = table(["space", "near-copies", "95% CI", "expected without copying", "verdict"], rows)
    body += para("A sample is a near-copy when it is nearer to its nearest training image than all "
                 "but 5% of real held-out images are to theirs; a generator that does not copy gives "
                 "about 5%. Intervals: Wilson, over the samples.", note=True)
    pics = load_npz(run_dir / "samples.npz")
    if pics and "closest" in pics:
        body += "<h3>The samples nearest to a training image (pixel distance above)</h3>" + img(
            P.save(closest_pairs(pics["closest"], pics["closest_train"], pics["closest_distance"]),
                   plots_dir, "closest_pairs"), "closest pairs", "720px")
    return body
