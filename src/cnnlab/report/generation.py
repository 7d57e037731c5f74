"""The report of a GAN run (``cnnlab generate train``): its samples, its training, how good and
how diverse the samples are beside the real-data floor, and whether it copied its training
images."""

from __future__ import annotations

import json

from cnnlab.io import load_npz
from cnnlab.report.core import ReportContext, run_section
from cnnlab.viz import generation as G
from cnnlab.viz import plots as P
from cnnlab.viz.html import Section, esc, img, kpis, para, table

DOMAIN = ("Domain FID: Fréchet distance between the embeddings that the judge (a cnnlab classifier "
          "trained on the same data) gives the samples and the evaluation images; it ranks "
          "generators on this data and is not comparable with the Inception FIDs that papers publish.")


def _generation(ctx: ReportContext) -> dict:
    path = ctx.run.path / "generation.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def samples_section(ctx: ReportContext) -> Section | None:
    pics = load_npz(ctx.run.path / "samples.npz")
    if not pics:
        return None
    classes = ctx.run.meta["classes"]
    gen = img(P.save(G.picture(pics["x"][:64], 8, "Generated"), ctx.plots_dir, "samples"),
              "generated samples", "420px")
    if "real" in pics:  # real images beside them, drawn the same way
        real = img(P.save(G.picture(pics["real"][:64], 8, "Real (held-out)"), ctx.plots_dir,
                          "real_samples"), "real images", "420px")
        body = f'<div class="cols"><div>{real}</div><div>{gen}</div></div>'
    else:
        body = gen
    if "by_class" in pics:
        body += "<h3>One row per class asked for (the conditional GAN)</h3>"
        body += img(P.save(G.class_rows(pics["by_class"], classes), ctx.plots_dir, "by_class"),
                    "samples per class", "520px")
    body += "<h3>Walking in the latent space</h3>" + img(
        P.save(G.picture(pics["interpolation"], 10), ctx.plots_dir, "interpolation"), "interpolations",
        "520px")
    body += para("Each row moves in a straight line from one noise vector to another: a smooth "
                 "change means a continuous space of images, not a lookup table.", note=True)
    gif = G.snapshots_gif(ctx.run.path / "snapshots", ctx.plots_dir / "training.gif")
    if gif:
        body += "<h3>Training, one evaluation at a time (the same noise each time)</h3>" + img(
            gif, "samples during training", "360px")
    return Section("Generated images", body)


def gan_training_section(ctx: ReportContext) -> Section | None:
    if not ctx.history:
        return None
    floor = ctx.metrics.get("fid_floor")
    uri = P.save(G.training(ctx.history, floor), ctx.plots_dir, "gan_training")
    return Section("Training", img(uri, "GAN losses and FID") + para(
        "The discriminator's loss near log 4 = 1.39 means it cannot tell the images apart; a loss "
        "that falls to 0 while the generator's climbs is a discriminator that won, and samples that "
        "stop improving.", note=True))


def quality_section(ctx: ReportContext) -> Section | None:
    r = _generation(ctx)
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
        ("KID", "kid", f"lower is better (std over subsets {g['kid_std']:.4f})"),
        ("precision", "precision", "samples that fall on the real data's manifold"),
        ("recall", "recall", "real images whose neighbourhood the samples reach"),
        ("density", "density", "about 1 for samples like real ones"),
        ("coverage", "coverage", "real images with a sample nearby"))]
    body = head + table(["measure", "generated", "floor: real vs real", "reading"], rows)
    body += para(f"{DOMAIN} Floor: the same measures between {r['n']:,} training images and the "
                 f"{r['n']:,} evaluation images the samples are compared with, so both sides have the "
                 "same n (FID is biased upwards at small n).", note=True)
    body += "<h3>Diversity: the classes it makes</h3>" + img(
        P.save(G.label_bars(labels["fake"], labels["real"], ctx.run.meta["classes"]), ctx.plots_dir,
               "label_histogram"), "class histogram", "640px")
    verdict = ("<b>Mode collapse</b>: " if labels["collapsed"] else "No mode collapse at the level of "
               "classes: ")
    n = labels.get("n", r["n"])
    body += (f"<p>{verdict}{n:,} samples span "
             f"{100 * labels['classes_covered']:.0f}% of the classes with a label entropy of "
             f"{labels['entropy']:.2f} bits (real images {labels['real_entropy']:.2f}). A class "
             "counts as produced when it gets at least a tenth of its real share.</p>")
    return Section("Quality and diversity, beside the floor", body)


def copies_section(ctx: ReportContext) -> Section | None:
    r = _generation(ctx)
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
    pics = load_npz(ctx.run.path / "samples.npz")
    if pics and "closest" in pics:
        body += "<h3>The samples nearest to a training image (pixel distance above)</h3>" + img(
            P.save(G.closest_pairs(pics["closest"], pics["closest_train"], pics["closest_distance"]),
                   ctx.plots_dir, "closest_pairs"), "closest pairs", "720px")
    return Section("Did it copy its training images?", body)


def generation_limitations(ctx: ReportContext) -> Section:
    items = [DOMAIN, "FID, KID and the precision-recall family are computed at the n of the evaluation "
             "split; compare them only with the floor and with other runs at the same n.",
             "The class histogram sees classes, not modes within a class: a generator that makes one "
             "kind of 7 passes it; recall and coverage see within-class diversity.",
             "One seed."]
    return Section("Limitations", "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")


def generation_sections() -> list:
    return [run_section, samples_section, gan_training_section, quality_section, copies_section,
            generation_limitations]
