"""One self-contained report.html per run (Jinja2, images inlined, no CDN).

Sections follow the model-card order: the core sections of every run (core.py) and one
section per analysis that has a stored result (each analysis plug-in draws its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.analysis import Analysis, load_all, load_results
from cnnlab.analysis.registry import SectionContext, canonical, main_job_stems
from cnnlab.io import atomic_write_text
from cnnlab.report.claims import claims_section
from cnnlab.report.core import CORE_SECTIONS, ReportContext, read_history
from cnnlab.run import Run
from cnnlab.viz.html import Section, esc


@dataclass(order=True)
class _Entry:
    order: int
    name: str
    make: object = field(compare=False)


def render_report(run: Run, drawn: dict[str, str] | None = None) -> Path:
    """Render ``run.path/report.html`` from the files in the run folder; return its path.
    ``drawn``: analysis sections already drawn (``draw_section``) by the stem of their result."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    ctx = ReportContext(run=run, plots_dir=run.path / "plots", metrics=run.metrics,
                        history=read_history(run.path / "results.csv"))
    if run.config.task == "classify":
        entries = [_Entry(order, name, lambda fn=fn: fn(ctx)) for order, name, fn in CORE_SECTIONS]
        entries += [_Entry(a.order, a.name, lambda a=a: analysis_section(a, run, ctx.plots_dir, drawn))
                    for a in load_all()]
        entries.append(_Entry(0, "claims", lambda: claims_section(run)))
    elif run.config.task == "generate":
        from cnnlab.report.generation import generation_sections

        entries = [_Entry(i, fn.__name__, lambda fn=fn: fn(ctx))
                   for i, fn in enumerate(generation_sections())]
    else:  # detection, segmentation, pose: the task's own sections (analyses are per image)
        from cnnlab.report.dense import dense_sections

        entries = [_Entry(i, fn.__name__, lambda fn=fn: fn(ctx))
                   for i, fn in enumerate(dense_sections(run.config.task))]
    sections = []
    for entry in sorted(entries):
        s = entry.make()
        if s is not None:
            s.anchor = s.anchor or entry.name
            sections.append(s)
    env = Environment(loader=PackageLoader("cnnlab", "report/templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("report.html.j2").render(
        title=f"cnnlab report: {run.path.name}", sections=sections, metrics=ctx.metrics,
        config=run.config, folder_size=folder_size(run.path))
    out = run.path / "report.html"
    atomic_write_text(out, page)
    return out


def draw_section(analysis: Analysis, run: Run, stem: str) -> str | None:
    """The section body of one stored result as the report draws it first (its plots in the
    run's plots/): ``cnnlab run`` draws each as soon as its analysis ends, in that analysis's
    process, and hands the bodies to ``render_report``."""
    stored = next(s for s in load_results(run.path, analysis.name)[0] if s.stem == stem)
    return _body(analysis, run, run.path / "plots", stored)


def _body(analysis: Analysis, run: Run, plots_dir: Path, s) -> str | None:
    return analysis.section(SectionContext(run, plots_dir, s.result, s.arrays(), s.options, s.stem))


def analysis_section(analysis: Analysis, run: Run, plots_dir: Path,
                     drawn: dict[str, str] | None = None) -> Section | None:
    """The analysis's stored results, each drawn by its plug-in (or taken from ``drawn``): the
    main job's first (or the newest), then every other one, labelled with its settings."""
    stored, legacy = load_results(run.path, analysis.name)
    command = f"cnnlab {' '.join(analysis.verb)} {run.path}"
    if not stored:
        if not legacy:
            return None
        return Section(analysis.title, f"<p>{len(legacy)} result file(s) written by an older "
                       f"cnnlab are not shown; run <code>{esc(command)}</code> again.</p>")
    main = main_job_stems(run.path).get(analysis.name)
    parts = []
    drawn = drawn or {}
    for k, s in enumerate(stored):
        if k == 0 and s.stem in drawn:
            body = drawn[s.stem]
        else:
            body = _body(analysis, run, plots_dir if k == 0 else plots_dir / s.stem, s)
        if body is None:
            continue
        who = ("From cnnlab run" if s.stem == main else "From a later call" if main
               else "Newest result" if k == 0 else "Older result")
        note = (f'<p class="note">{who}: settings '
                f"{esc(_settings(analysis, s.options))} (analysis/{esc(s.stem)}.json; "
                f"{esc(s.written)}).</p>")
        if k:
            body = (f"<h3>Also run: {esc(_settings(analysis, s.options))}</h3>" + note + body)
        else:
            body += note
        parts.append(body)
    return Section(analysis.title, "".join(parts)) if parts else None


def folder_size(path: Path) -> str:
    """The run folder's size on disk, sub-runs included, as '12.3 MB'."""
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return f"{total / 1e6:.1f} MB"


def _settings(analysis: Analysis, options: dict) -> str:
    defaults = canonical(analysis.defaults())
    changed = {k: v for k, v in options.items() if defaults.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "the defaults"


__all__ = ["render_report"]
