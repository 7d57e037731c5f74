"""One self-contained report.html per run (Jinja2, images inlined, no CDN).

Sections follow the model-card order. Each is a function ``(ReportContext) -> Section | None``
registered with ``@section(order)``; an analysis adds its own by registering one more.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from cnnlab.io import atomic_write_text


@dataclass
class Section:
    title: str
    html: str
    """Body HTML; its text is escaped by the section (use ``esc``)."""
    anchor: str = ""


@dataclass
class ReportContext:
    run: object  # cnnlab.run.Run
    plots_dir: Path
    metrics: dict
    history: list[dict]
    extra: dict = field(default_factory=dict)


SectionFn = Callable[[ReportContext], Section | None]
SECTIONS: list[tuple[int, str, SectionFn]] = []


def section(order: int, name: str) -> Callable[[SectionFn], SectionFn]:
    """Register a report section; ``order`` places it (model-card order, see core.py)."""

    def decorator(fn: SectionFn) -> SectionFn:
        if any(n == name for _, n, _ in SECTIONS):
            raise ValueError(f"report section {name!r} registered twice")
        SECTIONS.append((order, name, fn))
        SECTIONS.sort(key=lambda s: s[0])
        return fn

    return decorator


def esc(x: object) -> str:
    return html.escape(str(x))


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals ('n/a' for None)."""
    return "n/a" if x is None else f"{100 * x:.2f}%"


def table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def img(uri: str, alt: str, width: str = "100%") -> str:
    return f'<img src="{uri}" alt="{esc(alt)}" style="max-width:{width}">'


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in r.items()})
    return rows


def render_report(run) -> Path:
    """Render ``run.path/report.html`` from the files in the run folder; return its path."""
    from cnnlab.report import core, lecture, robustness  # noqa: F401  (register their sections)

    ctx = ReportContext(run=run, plots_dir=run.path / "plots", metrics=run.metrics,
                        history=read_history(run.path / "results.csv"))
    sections = []
    for _, name, fn in SECTIONS:
        s = fn(ctx)
        if s is not None:
            s.anchor = s.anchor or name
            sections.append(s)
    env = Environment(loader=PackageLoader("cnnlab", "report/templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("report.html.j2").render(
        title=f"cnnlab report: {run.path.name}", sections=sections, metrics=ctx.metrics,
        config=run.config)
    out = run.path / "report.html"
    atomic_write_text(out, page)
    return out


__all__ = ["ReportContext", "SECTIONS", "Section", "esc", "img", "pct", "render_report", "section",
           "table"]
