"""The report of a GAN run (``cnnlab generate train``): its samples, its training, how good and
how diverse the samples are beside the real-data floor, and whether it copied its training
images (the bodies are cnnlab.viz.generation's, shared with the generation analysis)."""

from __future__ import annotations

from cnnlab.report.core import ReportContext, run_section
from cnnlab.viz import generation as G
from cnnlab.viz.html import Section, esc

TITLES = {"samples": "Generated images", "training": "Training",
          "quality": "Quality and diversity, beside the floor",
          "copies": "Did it copy its training images?"}


def _section(title: str, body: str | None) -> Section | None:
    return None if body is None else Section(title, body)


def samples_section(ctx: ReportContext) -> Section | None:
    return _section(TITLES["samples"], G.samples_html(ctx.run.path, ctx.run.meta["classes"], ctx.plots_dir))


def gan_training_section(ctx: ReportContext) -> Section | None:
    return _section(TITLES["training"], G.training_html(ctx.history, ctx.metrics.get("fid_floor"),
                                                        ctx.plots_dir))


def quality_section(ctx: ReportContext) -> Section | None:
    return _section(TITLES["quality"], G.quality_html(ctx.run.path, ctx.run.meta["classes"], ctx.plots_dir))


def copies_section(ctx: ReportContext) -> Section | None:
    return _section(TITLES["copies"], G.copies_html(ctx.run.path, ctx.plots_dir))


def generation_limitations(ctx: ReportContext) -> Section:
    items = [G.DOMAIN, "FID, KID and the precision-recall family are computed at the n of the evaluation "
             "split; compare them only with the floor and with other runs at the same n.",
             "The class histogram sees classes, not modes within a class: a generator that makes one "
             "kind of 7 passes it; recall and coverage see within-class diversity.",
             "One seed."]
    return Section("Limitations", "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")


def generation_sections() -> list:
    return [run_section, samples_section, gan_training_section, quality_section, copies_section,
            generation_limitations]
