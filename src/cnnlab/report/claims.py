"""The table that opens the report: the lecture's claims, each with what this run measured.

Each analysis turns its own stored result into claims (``Analysis.claims``); nothing here is
written by hand. The main job's result of each analysis is the one read (else the newest),
and a claim that did not hold on this run says so in red.
"""

from __future__ import annotations

from cnnlab.analysis import load_all, load_results, main_job_analyses
from cnnlab.analysis.registry import Claim, main_job_stems
from cnnlab.run import Run
from cnnlab.viz.html import Section, esc

LECTURE_ORDER = ("permutation", "mlp_vs_cnn", "filters", "transfer", "tree", "robustness", "attributions",
                 "influence", "value", "bias", "spurious", "calibration", "energy", "privacy",
                 "scenes", "video", "generation")
"""The course's order of the claims; an analysis not named here comes after these."""

STATUS = {True: ("shown", "#15803d"), False: ("not shown here", "#b91c1c"),
          None: ("no significant difference", "#a16207")}


def collect_claims(run: Run) -> list[tuple[str, str, Claim]]:
    """(analysis name, section title, claim) for every analysis with a stored result."""
    out = []
    rank = {name: k for k, name in enumerate(LECTURE_ORDER)}
    for analysis in sorted(load_all(), key=lambda a: rank.get(a.name, len(rank))):
        if analysis.claims is None:
            continue
        stored, _ = load_results(run.path, analysis.name)
        if not stored:
            continue
        try:
            claims = analysis.claims(stored[0].result)
        except (KeyError, TypeError, IndexError, ValueError):
            continue  # a result in an older layout: its section says how to run it again
        out += [(analysis.name, analysis.title, c) for c in claims]
    return out


def left_to_full(run: Run) -> list[tuple[str, str, str]]:
    """(analysis name, title, why) of each analysis that ``cnnlab run``'s quick budget left out
    on this run (``Analysis.quick_skip``) and that has no result: its claims are not in the
    table, and the table says so rather than shrink without a word."""
    if not main_job_stems(run.path):  # not a main job's run
        return []
    return [(a.name, a.title, why) for a in main_job_analyses(run.config)
            if (why := a.quick_skip_reason(run)) and not load_results(run.path, a.name)[0]]


def claims_section(run: Run) -> Section | None:
    rows = collect_claims(run)
    if not rows:
        return None
    body = []
    for name, title, c in rows:
        word, colour = STATUS[c.holds]
        body.append(f'<tr><td>{esc(c.claim)}</td><td style="color:{colour};font-weight:600;'
                    f'white-space:nowrap">{esc(word)}</td><td>{esc(c.verdict)}</td>'
                    f'<td><a href="#{esc(name)}">{esc(title)}</a></td></tr>')
    shown = sum(c.holds is True for _, _, c in rows)
    head = (f"<p>{shown} of {len(rows)} claims shown on this run. Each verdict is computed from "
            "the section it links to, with its interval where it compares; "
            '"no significant difference": the interval or test cannot tell the claim from noise; '
            '"not shown here": the measurement goes against it.</p>')
    table = ('<table class="claims"><thead><tr><th>claim</th><th>verdict</th><th>measured</th>'
             "<th>section</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>")
    left = "".join(f"<li>{esc(title)}: {esc(why)}</li>" for _, title, why in left_to_full(run))
    if left:
        table += f"<p>Not measured at this budget, so not in the table:</p><ul>{left}</ul>"
    return Section("The lecture's claims, measured", head + table, anchor="claims")
