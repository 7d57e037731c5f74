"""The ``Analysis`` declaration, the ``ANALYSES`` registry, and analysis results on disk.

Results live in the run folder as ``analysis/<stem>.json`` (+ ``<stem>.npz`` for arrays and
``<stem>.<table>.csv`` for tables). The stem is the analysis name when every option has its
default value, else the name and a hash of the options: results of different settings sit
side by side and never overwrite each other. The JSON is written last and atomically, so a
failed or interrupted analysis leaves the previous result of the same settings intact.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_write, atomic_write_json
from cnnlab.log import Log
from cnnlab.registry import Registry

if TYPE_CHECKING:
    from cnnlab.run import Run

RESULT_FORMAT = 1
"""Version of the analysis-result JSON layout (written as ``result_format``)."""


@dataclass
class SectionContext:
    """What a report section may read: the run, where plots go, and one stored result."""

    run: Run
    plots_dir: Path
    result: dict
    arrays: dict
    options: dict
    stem: str
    """The stored result's file name without suffix (analysis/<stem>.json)."""


Budget = dict | Callable[["Run"], dict]


@dataclass
class Claim:
    """One claim of the course and what this run measured of it."""

    claim: str
    verdict: str
    """The measurement in words, with its interval where it compares."""
    holds: bool | None
    """True: shown; False: contradicted or not shown on this run; None: within noise."""


@dataclass(frozen=True)
class Analysis:
    """One analysis: what it computes, how the report shows it, how the CLI and ``cnnlab run``
    call it."""

    name: str
    """Result files are analysis/<name>[-<hash>].*; also the report anchor."""
    title: str
    compute: Callable[..., dict]
    """``compute(run, *, log, **options) -> dict``; the dict may hold ``arrays`` (saved as
    .npz) and ``tables`` (name -> list of row dicts, saved as .csv)."""
    section: Callable[[SectionContext], str | None]
    """Report section body (HTML) for one stored result."""
    order: int
    """Place in the report (model-card order; see report/core.py)."""
    verb: tuple[str, ...]
    """CLI words, e.g. ("attack",) or ("explain", "filters")."""
    quick: Budget = field(default_factory=dict)
    """Options for ``cnnlab run``: about 20-30 s on 2 CPU cores."""
    full: Budget = field(default_factory=dict)
    """Options for ``cnnlab run --full`` and benchmarks."""
    in_main_job: bool = True
    quick_skip: Callable[[Run], str] | None = None
    """``quick_skip(run)``: why ``cnnlab run``'s quick budget leaves it out on this run ('' to run
    it), for an analysis whose quick budget fits only some data; ``--full`` runs it."""
    applies: Callable[[Any], bool] | None = None
    """``applies(run.config)``: whether ``cnnlab run`` runs it on this run (None: on every run)."""
    needs: tuple[str, str] | None = None
    """(module, extra) of an optional dependency, e.g. ("captum", "explain")."""
    claims: Callable[[dict], list[Claim]] | None = None
    """The lecture's claims this result measures, for the table that opens the report."""
    takes: str = ""
    """How long the defaults take on 2 CPU cores, where measured (shown by ``--help``)."""
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """The closed interval of every number option; ``resolve`` refuses NaN, inf and values
    outside it before anything runs (a test checks that every number option has one)."""

    def missing(self) -> str:
        """'' if the analysis can run here, else what to install."""
        import importlib.util

        if self.needs is None or importlib.util.find_spec(self.needs[0]) is not None:
            return ""
        return f"pip install 'cnnlab[{self.needs[1]}]' (it needs {self.needs[0]})"

    def quick_skip_reason(self, run: Run) -> str:
        """Why ``cnnlab run``'s quick budget leaves it out on this run ('' where it runs)."""
        return self.quick_skip(run) if self.quick_skip is not None else ""

    def options(self) -> dict[str, inspect.Parameter]:
        """The keyword options of ``compute`` (everything after ``run`` except ``log``)."""
        params = inspect.signature(self.compute).parameters
        return {k: p for k, p in params.items() if p.kind is p.KEYWORD_ONLY and k != "log"}

    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.options().items()}

    def budget(self, run: Run, full: bool) -> dict:
        b = self.full if full else self.quick
        return b(run) if callable(b) else dict(b)

    def resolve(self, options: dict) -> dict:
        """Every option's value: the given ones checked by name, the rest at their defaults."""
        known = self.defaults()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise CnnlabError(f"{self.name} has no option {', '.join(unknown)}; its options are "
                              f"{', '.join(known) or 'none'}")
        from cnnlab.config import check_bounds

        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    check_bounds(flag, value, self.bounds.get(name))
                except CnnlabError as e:
                    raise CnnlabError(str(e).replace("bad config: ", f"{self.name}: ")) from None
        return known | options

    def summary(self) -> str:
        """The docstring's first paragraph, on one line (a summary may wrap)."""
        return plain(" ".join(re.split(r"\n\s*\n", inspect.getdoc(self.compute) or self.title)[0].split()))

    def option_help(self) -> dict[str, str]:
        """Per-option help from the docstring's ``Args:`` block (Google style)."""
        return parse_args_doc(inspect.getdoc(self.compute) or "")


ANALYSES: Registry[Analysis] = Registry("analysis")


def register(analysis: Analysis) -> Analysis:
    ANALYSES.add(analysis.name, analysis)
    return analysis


def plain(text: str) -> str:
    """Docstring text for a terminal: ``code`` marks dropped."""
    return text.replace("``", "")


def parse_args_doc(doc: str) -> dict[str, str]:
    """``{"eps": "radius ...", ...}`` from the lines under ``Args:``."""
    out: dict[str, str] = {}
    lines = doc.split("Args:", 1)[1].splitlines() if "Args:" in doc else []
    name = None
    for line in lines:
        if line.strip() and not line.startswith(" "):
            break  # the next block (Returns:, ...)
        m = re.match(r"^\s{4}(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
        if m:
            name = m.group(1)
            out[name] = m.group(2).strip()
        elif name and line.strip():
            out[name] += " " + line.strip()
    return {k: plain(v) for k, v in out.items()}


def canonical(options: dict) -> dict:
    """Options as JSON values (tuples become lists), in a stable order."""
    return json.loads(json.dumps(options, sort_keys=True))


def result_stem(analysis: Analysis, options: dict) -> str:
    opts = canonical(options)
    if opts == canonical(analysis.defaults()):
        return analysis.name
    digest = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:8]
    return f"{analysis.name}-{digest}"


def compute_and_store(run: Run, analysis: Analysis, log: Log = print, threads: int = 0,
                      **options) -> dict:
    """Run one analysis on a run with the given options and ``threads`` torch threads (0: as
    they are); store and return its result. Its sub-runs train with the same count."""
    from cnnlab.env import torch_threads

    name = analysis.name
    verb = " ".join(analysis.verb) if analysis.verb else name
    run.require_classifier(verb).require_images(verb)
    options = analysis.resolve(options)
    t0 = time.perf_counter()
    with torch_threads(threads):
        result = analysis.compute(run, log=log, **options)
    seconds = time.perf_counter() - t0
    stem = result_stem(analysis, options)
    folder = run.path / "analysis"
    arrays, tables = result.pop("arrays", None), result.pop("tables", {})
    if arrays:
        from cnnlab.run import save_npz

        save_npz(folder / f"{stem}.npz", **arrays)
    for table_name, rows in tables.items():
        write_csv(folder / f"{stem}.{table_name}.csv", rows)
        result[table_name] = rows
    record = {"analysis": name, "result_format": RESULT_FORMAT, "options": canonical(options),
              "seconds": seconds, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
              "result": result}
    atomic_write_json(folder / f"{stem}.json", record)
    result["stem"], result["seconds"] = stem, seconds
    return result


@dataclass
class StoredResult:
    stem: str
    options: dict
    result: dict
    written: str
    path: Path

    def arrays(self) -> dict:
        from cnnlab.run import load_npz

        return load_npz(self.path.with_suffix(".npz"))


MAIN_JOB_FILE = "main_job.json"
"""analysis/main_job.json: which stored result of each analysis ``cnnlab run`` wrote."""


def record_main_job(run_path: Path, stems: dict[str, str]) -> None:
    atomic_write_json(run_path / "analysis" / MAIN_JOB_FILE, {"stems": stems})


def main_job_stems(run_path: Path) -> dict[str, str]:
    try:
        return dict(json.loads((run_path / "analysis" / MAIN_JOB_FILE).read_text())["stems"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def load_results(run_path: Path, name: str) -> tuple[list[StoredResult], list[Path]]:
    """The stored results of one analysis, the main job's first, then newest first, and
    files in an older layout."""
    stored, legacy = [], []
    for path in sorted((run_path / "analysis").glob(f"{name}*.json")):
        if path.name == MAIN_JOB_FILE or (path.stem != name and not path.stem.startswith(f"{name}-")):
            continue
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            legacy.append(path)
            continue
        if not isinstance(record, dict) or record.get("result_format") != RESULT_FORMAT:
            legacy.append(path)
            continue
        stored.append(StoredResult(path.stem, record["options"], record["result"],
                                   record.get("written", ""), path))
    stored.sort(key=lambda s: (s.written, s.path.stat().st_mtime), reverse=True)
    main = main_job_stems(run_path).get(name)
    stored.sort(key=lambda s: s.stem != main)  # stable: the main job's result, then the newest
    return stored, legacy


def write_csv(path: Path, rows: list[dict]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)
