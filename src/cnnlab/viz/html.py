"""Small HTML pieces for report sections; every text goes through ``esc``."""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass
class Section:
    title: str
    html: str
    """Body HTML; its text is escaped by the section (use ``esc``)."""
    anchor: str = ""


def esc(x: object) -> str:
    return html.escape(str(x))


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals ('n/a' for None)."""
    return "n/a" if x is None else f"{100 * x:.2f}%"


def pct_ci(ci: dict | None) -> str:
    """An interval dict (estimate, low, high) as '97.50% (95% CI 96.10-98.40)'."""
    if not ci:
        return "n/a"
    return (f"{100 * ci['estimate']:.2f}% ({round(100 * ci['level'])}% CI "
            f"{100 * ci['low']:.2f}-{100 * ci['high']:.2f})")


def table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def img(uri: str, alt: str, width: str = "100%") -> str:
    return f'<img src="{uri}" alt="{esc(alt)}" style="max-width:{width}">'


def kpis(items: list[tuple[str, str]]) -> str:
    """A row of headline numbers: (label, value) pairs."""
    return '<div class="kpis">' + "".join(
        f'<div class="kpi"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in items) + "</div>"


def para(text: str, note: bool = False) -> str:
    """A paragraph of plain text (escaped)."""
    return f'<p class="note">{esc(text)}</p>' if note else f"<p>{esc(text)}</p>"
