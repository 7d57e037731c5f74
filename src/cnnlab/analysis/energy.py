"""What the computing cost: energy and carbon per run, per phase, per image.

Every training run records its energy (cnnlab/energy.py: CodeCarbon's offline tracker, one per
process) in metrics.json: training and evaluation, joules per training image and per
prediction, and gCO2eq where the run names its country. This analysis gathers the run and the
sub-runs its analyses trained (MLP, LeNet-5, ResNet-20 on the same data, ...), plots accuracy
against training energy (which model is cheapest for a given accuracy), and, after
``cnnlab run``, where the whole job's energy went (training, evaluation, each analysis, the
report). It always says whether the energy was measured or estimated.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import yaml

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import img, para, table

if TYPE_CHECKING:
    from pathlib import Path

    from cnnlab.run import Run

PHASES_FILE = "energy.json"
"""Written by ``cnnlab run`` in the main run's folder: the job's energy per phase."""


def energy(run: Run, *, folder: str = "", country: str = "", log: Log = print) -> dict:
    """Energy, carbon and accuracy of the run and its sub-runs; the main job's phases.

    Args:
        folder: also compare every run in this folder (e.g. runs/), such as the record-speed
            recipes or the lecture's models trained one by one.
        country: ISO 3166 alpha-3 code of the grid that powered the runs (e.g. FRA), for the
            carbon figures; empty: the run's own --country. Carbon is energy times the grid's
            intensity, so it can be given after training.
    """
    from pathlib import Path

    from cnnlab.energy import carbon

    rows = [_row(run.path / "metrics.json", "this run")]
    for path in sorted(run.path.glob("subruns/**/metrics.json")):
        rows.append(_row(path, str(path.parent.relative_to(run.path / "subruns"))))
    if folder:
        if not Path(folder).is_dir():
            raise CnnlabError(f"--folder {folder} is not a folder; give the folder that holds runs")
        for path in sorted(Path(folder).glob("*/metrics.json")):
            if path.parent.resolve() != run.path.resolve():
                rows.append(_readable_row(path, f"{path.parent.name}-run", log))
    rows = [r for r in rows if r is not None]
    measured = [r for r in rows if r["kwh"] is not None]
    phases_path = run.path / PHASES_FILE
    job = json.loads(phases_path.read_text()) if phases_path.is_file() else None
    country = country or run.config.country
    if country:  # (again) from the energy: a country given after training applies too
        for r in measured:
            r["g_co2eq"] = carbon(r["kwh"], country)["g_co2eq"]
        if job:
            job["carbon"] = carbon(job["kwh"], country)
    method = (run.metrics.get("energy") or {}).get("method", {"kind": "not measured",
                                                           "words": "this run recorded no energy"})
    log(f"energy {method['kind']}: {len(measured)} of {len(rows)} runs recorded it")
    for r in measured:
        score = (f"accuracy {100 * r['accuracy']:.1f}%" if r["accuracy"] is not None
                 else f"{r['score_name']} {r['score']:.3f}")  # a detection, segmentation or pose run
        log(f"  {r['label']:>40}: {r['kwh'] * 1000:.3f} Wh, {r['j_per_train_image'] * 1000:.2f} mJ "
            f"per training image, {score}")
    return {"rows": rows, "method": method, "dataset": run.config.dataset, "job": job,
            "country": country, "folder": folder}


def _readable_row(path: Path, label: str, log: Log) -> dict | None:
    """Another run's row, or None (said) where one of its files cannot be read: one damaged run
    of a folder does not stop the comparison of the others."""
    try:
        return _row(path, label)
    except (ValueError, TypeError, AttributeError, KeyError, OSError, yaml.YAMLError) as e:
        log(f"  left out {path.parent}: a file of it is not readable ({type(e).__name__}); restore "
            f"it or move the run out of the folder")
        return None


def _row(path: Path, label: str) -> dict | None:
    """One run's energy row, or None for a run that did not finish (its status.json says so)."""
    if not path.is_file():
        return None
    status = path.parent / "status.json"
    if status.is_file() and json.loads(status.read_text()).get("state") not in ("finished", None):
        return None
    m = json.loads(path.read_text())
    e = m.get("energy") or {}
    cfg_path = path.parent / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else {}
    carbon = e.get("carbon") or {}
    return {"label": label.split("/")[-1].rsplit("-", 1)[0] if label != "this run" else label,
            "path": label, "model": m.get("model", "?"), "dataset": m.get("dataset", "?"),
            "accuracy": m.get("accuracy"), "score": m.get("score"), "score_name": m.get("score_name"),
            "n_train": m.get("n_train"), "epochs": m.get("epochs"),
            "kwh": e.get("kwh"), "j_per_train_image": e.get("j_per_train_image"),
            "j_per_prediction": e.get("j_per_prediction"), "g_co2eq": carbon.get("g_co2eq"),
            "seconds": sum(p["seconds"] for p in (e.get("phases") or {}).values()) or None,
            "clean": not (cfg or {}).get("label_noise") and not (cfg or {}).get("drop_train"),
            "epoch_j_per_image": _epoch_joules(path.parent / "results.csv", m.get("n_train"))}


def _epoch_joules(results: Path, n_train: int | None) -> list[float]:
    """J per training image of each epoch that held no evaluation (results.csv's energy so
    far, differenced): repeated measurements of one run, what the energy claim's interval is
    over."""
    import csv

    if not n_train or not results.is_file():
        return []
    rows = list(csv.DictReader(results.open()))
    out, before = [], 0.0
    for r in rows:
        if not r.get("energy_kwh"):
            return []
        kwh = float(r["energy_kwh"])
        if not r.get("val_acc") and not r.get("val_score") and kwh > before:  # (a run resumed
            out.append(3.6e6 * (kwh - before) / n_train)  # before 2026-12-07 restarted at 0)
        before = kwh
    return out


def write_job_phases(run: Run) -> None:
    """Save the process's energy per phase so far into the run folder (``cnnlab run``)."""
    from cnnlab.energy import carbon, meter
    from cnnlab.io import atomic_write_json

    m = meter()
    if not m.available:
        return
    kwh = sum(p["kwh"] for p in m.totals.values())
    atomic_write_json(run.path / PHASES_FILE, {"phases": m.totals, "kwh": kwh,
                                               "carbon": carbon(kwh, run.config.country),
                                               "method": m.method()})


def section(ctx: SectionContext) -> str:
    from cnnlab.viz import plots as P

    res = ctx.result
    method = res["method"]
    body = para(f"Energy {method['words']}.")
    if method["kind"] == "estimated":
        body += para("So the energy figures below rank the runs by running time and load; "
                     "compare them with each other on this machine, never with measured figures.",
                     note=True)
    rows = [r for r in res["rows"] if r["kwh"] is not None]
    carbon_words = (res["job"] or {}).get("carbon", {}).get("words") or (
        "no carbon figure: give --country (ISO 3166 alpha-3, e.g. FRA)" if not res["country"]
        else f"carbon for country {res['country']}")
    body += para(f"Carbon: {carbon_words}.")
    same = [r for r in rows if r["dataset"] == res["dataset"] and r["clean"] and r["accuracy"] is not None]
    if res.get("folder"):
        body += para(f"Runs of {res['folder']} are compared too, on the run's dataset.", note=True)
    if same:
        body += f"<h3>The models trained on {res['dataset']}</h3>" + table(
            ["run", "model", "accuracy", "Wh", "mJ per training image", "mJ per prediction", "gCO2eq"],
            [[r["label"], r["model"], f"{100 * r['accuracy']:.1f}%", f"{1000 * r['kwh']:.3f}",
              f"{1000 * r['j_per_train_image']:.2f}", f"{1000 * r['j_per_prediction']:.3f}",
              "-" if r["g_co2eq"] is None else f"{r['g_co2eq']:.4f}"] for r in same])
    compared = _comparison(res)
    if compared:  # the claim's comparison, with its interval over the epochs
        body += para(f"Per training image, {compared[1]}: each epoch of a run is one repeated measure "
                     "of its energy per image.")
    if len(same) >= 2:
        body += img(P.save(_figure(same, res["dataset"]), ctx.plots_dir, "energy"),
                    "accuracy against training energy", "640px")
    others = [r for r in rows if r not in same]
    if others:
        body += para(f"{len(others)} other sub-runs (other data or tasks, flipped labels or left-out "
                     f"images) used {1000 * sum(r['kwh'] for r in others):.3f} Wh in all; each "
                     "is listed in analysis/energy.json. Each run's figure is its own meter's "
                     "(its training and final evaluation), so their sum need not match the "
                     "phase table below, which meters the job's processes.", note=True)
    if res["job"]:
        body += "<h3>Where the energy of this cnnlab run went</h3>" + _phases_table(res["job"])
    return body


def _phases_table(job: dict) -> str:
    total = job["kwh"] or 1e-12
    rows = sorted(job["phases"].items(), key=lambda kv: -kv[1]["kwh"])
    g = job["carbon"].get("g_co2eq")
    return (table(["phase", "Wh", "share", "seconds"],
                  [[name, f"{1000 * p['kwh']:.3f}", f"{100 * p['kwh'] / total:.0f}%",
                    f"{p['seconds']:.1f}"] for name, p in rows]) +
            para(f"Total {1000 * job['kwh']:.3f} Wh" + (f", {g:.3f} gCO2eq" if g is not None else "") +
                 ". Each phase counts its own work only: training inside an analysis (its sub-runs) "
                 "is counted as training.", note=True))


def _figure(rows: list[dict], dataset: str):
    from cnnlab.viz.plots import plt

    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    for r in rows:
        x = 3.6e6 * r["kwh"]
        ax.scatter(x, 100 * r["accuracy"], s=40)
        ax.annotate(f"{r['model']} ({r['label']})", (x, 100 * r["accuracy"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="energy of the run (J, log scale)", ylabel="accuracy (%)",
           title=f"Accuracy against energy, runs on {dataset}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def claims(res: dict) -> list[Claim]:
    """Energy: the course's three models, per training image, measured or estimated."""
    compared = _comparison(res)
    if compared is None:
        return []
    said, ratio, holds = compared
    job = (res.get("job") or {}).get("kwh")  # None: the run was not made by cnnlab run
    return [Claim("Training has an energy cost, and it grows with the model",
                  f"per training image ({res['method']['kind']}): {said}; {ratio}" +
                  (f"; the whole job {1000 * job:.2f} Wh" if job else ""), holds)]


def _comparison(res: dict) -> tuple[str, str, bool | None] | None:
    """(each of the course's models' J per training image in words, the largest over the
    smallest with its interval, whether it is larger), or None with fewer than two models."""
    same = [r for r in res["rows"] if r["dataset"] == res["dataset"] and r.get("clean", True)
            and r["kwh"] is not None and r["accuracy"] is not None]  # classifiers, as the section
    by_model = {r["model"]: r for r in reversed(same)}  # the first row of a model wins (this run)
    names = (("MLP", "mlp"), ("LeNet-5", "lenet5"), ("ResNet-20", "resnet20"))
    picks = [(name, by_model[model]) for name, model in names if model in by_model]
    if len(picks) < 2:
        return None
    said = ", ".join(f"{name} {1000 * r['j_per_train_image']:.2f} mJ" for name, r in picks)
    return (said, *_ratio(*((name, _repeated(same, row)) for name, row in (picks[0], picks[-1]))))


def _repeated(rows: list[dict], row: dict) -> dict:
    """A run of ``row``'s model whose epochs repeat the energy measure (3 or more that held no
    evaluation: a sub-run, validated once at its end), where ``row`` (this run, validated every
    epoch) has none; else ``row``."""
    return next((r for r in rows if r["model"] == row["model"]
                 and len(r.get("epoch_j_per_image") or []) >= 3), row)


def _ratio(small: tuple[str, dict], large: tuple[str, dict]) -> tuple[str, bool | None]:
    """The larger model's J per training image over the smaller's, with a 95% interval over
    their epochs (Welch on the logarithms: a ratio of geometric means), and the verdict."""
    import numpy as np

    from cnnlab.evaluate.stats import mean_difference_ci

    a, b = small[1].get("epoch_j_per_image") or [], large[1].get("epoch_j_per_image") or []
    if min(len(a), len(b)) < 3 or min(a + b) <= 0:
        return "no interval (fewer than 3 epochs without an evaluation to repeat the measure)", None
    ci = mean_difference_ci(np.log(a).tolist(), np.log(b).tolist())
    low, mid, high = np.exp([ci.low, ci.estimate, ci.high])
    holds = True if low > 1 else False if high < 1 else None
    return (f"{large[0]} / {small[0]} {mid:.1f}x (95% CI {low:.1f}-{high:.1f}x over {len(b)} and "
            f"{len(a)} epochs" + ("" if holds is not None else ": no significant difference") + ")"), holds


ANALYSIS = register(Analysis(
    name="energy", title="Energy and carbon", compute=energy, section=section, order=95,
    verb=("audit", "energy"),
    claims=claims,
))
