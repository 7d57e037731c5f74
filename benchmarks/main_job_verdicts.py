"""Does a quick budget ever tell a different story than the full one? Each analysis of the main
job at both budgets, on one main run, and every claim's verdict side by side.

    python benchmarks/main_job_verdicts.py                      # every analysis (about an hour)
    python benchmarks/main_job_verdicts.py --only scenes,video  # some of them

`cnnlab run` gives each analysis a quick budget (seconds) and `cnnlab run --full` the full one
(minutes). A quick result may be less precise, never contrary: the row this appends to
RESULTS.md lists each claim as quick / full verdict and names every disagreement.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch
from common import append_result, machine

from cnnlab.analysis import main_job_analyses, run_analysis
from cnnlab.analysis.registry import ANALYSES
from cnnlab.log import silent
from cnnlab.pipeline import main_config, main_run
from cnnlab.report.claims import STATUS


def verdicts(run, name: str, full: bool) -> tuple[list, float]:
    """(claims, seconds) of analysis ``name`` at one budget."""
    a = ANALYSES.get(name)
    t = time.perf_counter()
    result = run_analysis(run, name, log=silent, **a.budget(run, full))
    return (a.claims(result) if a.claims else []), time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", default="", help="comma-separated analyses (default: the main job's)")
    p.add_argument("--out", default="", help="folder for the main run (default: a new temp folder)")
    a = p.parse_args()
    torch.set_num_threads(1)  # cnnlab run's count
    run = main_run(main_config("digits", 0, 0, "verdicts", a.out or tempfile.mkdtemp(),
                               "~/.cache/cnnlab", 0, threads=1), silent, False)
    names = [x.name for x in main_job_analyses(run.config) if not x.missing()]
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    rows, disagree = [], []
    for name in names:
        (quick, tq), (full, tf) = verdicts(run, name, False), verdicts(run, name, True)
        for q, f in zip(quick, full, strict=False):  # a count mismatch is reported below
            same = q.holds == f.holds
            words = f"{STATUS[q.holds][0]} / {STATUS[f.holds][0]}"
            print(f"{name:>12} | {'same' if same else 'DIFFERENT':>9} | {words} | {q.claim}", flush=True)
            print(f"{'':>12} |   quick ({tq:.0f} s): {q.verdict}", flush=True)
            print(f"{'':>12} |   full ({tf:.0f} s): {f.verdict}", flush=True)
            rows.append(f"{name}: {words}")
            if not same:
                disagree.append(f"{name} ({q.claim}: quick {q.verdict}; full {f.verdict})")
        if len(quick) != len(full):
            disagree.append(f"{name}: {len(quick)} claims at the quick budget, {len(full)} at the full")
    summary = (f"{len(rows)} claims, quick / full: " + "; ".join(rows) + ". " +
               ("Disagreements: " + " | ".join(disagree) if disagree else "No disagreement."))
    print(summary)
    append_result("main job's verdicts, quick vs full budget (digits run)", summary,
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
