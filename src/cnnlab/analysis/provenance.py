"""Where the data came from, is it still the same, does evaluation leak into training? And
the model card.

Checks the run's data against the hashes it recorded when it trained (provenance.json,
data/provenance.py): the training and evaluation arrays as prepared now, and every file they
are read from. Counts evaluation images that are exact or near copies (perceptual hash) of a
training image. Writes ``model_card.md`` in the run folder, under the headings of Mitchell et
al. 2019, from the run's own files: what the other analyses measured fills its sections.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run


def provenance(run: Run, *, max_distance: int = 4, log: Log = print) -> dict:
    """Check the data against its recorded hashes, count leakage, write model_card.md.

    Args:
        max_distance: perceptual-hash bits (of 64) within which two images count as near copies.
    """
    from cnnlab.data import data_for
    from cnnlab.data import provenance as P

    path = run.path / "provenance.json"
    if not path.is_file():
        raise CnnlabError(f"{run.path} has no provenance.json (trained before cnnlab recorded it); "
                          f"train it again to record its data's hashes")
    recorded = json.loads(path.read_text())
    data = data_for(run.config)
    now = P.record(run.config.dataset, run.config.data_dir, data.train, data.eval)
    checks = [{"what": what, "recorded": recorded[key]["sha256" if key != "read_from" else "digest"],
               "now": now[key]["sha256" if key != "read_from" else "digest"]}
              for key, what in (("train", "training images and labels"),
                                ("eval", "evaluation images and labels"),
                                ("read_from", f"{now['read_from']['files']} source file"
                                 + ("s" if now['read_from']['files'] != 1 else "")))]
    for c in checks:
        c["matches"] = c["recorded"] == c["now"]
        log(f"{c['what']:>30}: {'matches' if c['matches'] else 'CHANGED since training'}")
    leak = P.leakage(data.train.x, data.eval.x, max_distance)
    log(f"leakage: {leak['exact']} of {leak['n_eval']} evaluation images are exact copies of a "
        f"training image, {leak['near']} near copies (pHash distance <= {max_distance})")
    card = model_card(run, recorded, leak)
    (run.path / "model_card.md").write_text(card)
    log(f"wrote {run.path / 'model_card.md'}")
    pairs = [p[:2] for p in leak["exact_pairs"] + leak["near_pairs"]][:8]
    arrays = ({"pair_train": data.train.x[[a for a, _ in pairs]].numpy(),
               "pair_eval": data.eval.x[[b for _, b in pairs]].numpy()} if pairs else {})
    return {"recorded": {k: recorded[k] for k in ("dataset", "source", "licence", "code_version")
                         if k in recorded}, "checks": checks, "leakage": leak,
            "all_match": all(c["matches"] for c in checks), "arrays": arrays}


NO_PRIVACY = "membership inference not audited (cnnlab audit privacy RUN)"


def model_card(run: Run, recorded: dict, leak: dict) -> str:
    """model_card.md under Mitchell et al. 2019's headings, from the run's files."""
    m, cfg = run.metrics, run.config
    found = _measured(run)
    lines = [f"# Model card: {run.path.name}", "",
             "## Model details",
             f"- {cfg.model} ({m.get('params', 0):,} parameters), trained by cnnlab "
             f"{recorded.get('code_version', '')} for {m.get('epochs')} epochs, seed {cfg.seed}; "
             "the full configuration is config.yaml.", "",
             "## Intended use",
             f"- Classifying images like those of {cfg.dataset} into {len(run.classes)} classes "
             f"({', '.join(run.classes[:10])}{', ...' if len(run.classes) > 10 else ''}); a teaching "
             "and research artefact, not validated for decisions about people.", "",
             "## Factors",
             f"- {found.get('bias', 'No group audit has been run (cnnlab audit bias RUN).')}", "",
             "## Metrics",
             f"- Accuracy {100 * m['accuracy']:.2f}% on {m['n']:,} {m['split']} images; "
             f"calibration: {found.get('calibration', 'not audited (cnnlab calibrate RUN)')}.", "",
             "## Evaluation data",
             f"- The {m['split']} split of {cfg.dataset}: {recorded['eval']['n']:,} images, sha256 "
             f"{recorded['eval']['sha256'][:16]}...; {leak['exact']} exact and {leak['near']} near "
             "copies of training images.", "",
             "## Training data",
             f"- {recorded['train']['n']:,} images, sha256 {recorded['train']['sha256'][:16]}...; "
             f"source: {recorded['source']}; licence: {recorded['licence']}.", "",
             "## Quantitative analyses",
             *([f"- {v}" for k, v in found.items() if k in ("robustness",)] or
               ["- See report.html for every analysis that has run."]), "",
             "## Ethical considerations",
             f"- Privacy: {found.get('privacy_words', NO_PRIVACY)}.",
             f"- Energy: {found.get('energy_words', 'not recorded')}.", "",
             "## Caveats and recommendations",
             "- One training run; accuracy intervals are in report.html. Images from other sources "
             "(cameras, writers, lighting) will likely do worse.", ""]
    return "\n".join(lines)


def _measured(run: Run) -> dict:
    """One sentence per analysis that has run, from its saved result."""
    from cnnlab.analysis.registry import load_results

    out = {}
    results = {}
    for name in ("bias", "calibration", "robustness", "privacy"):
        stored, _ = load_results(run.path, name)
        if stored:
            results[name] = stored[0].result  # the newest
    if "bias" in results:
        w = results["bias"]["worst"]
        out["bias"] = (f"Worst {w['by']}: {w['name']} at {100 * w['accuracy']:.1f}% "
                       f"(n = {w['n']}); see report.html for every slice.")
    from cnnlab.analysis._subject import on_other_data

    c = results.get("calibration")
    if c and not on_other_data(c):  # of this model, not a sub-run's
        out["calibration"] = (f"temperature {c['temperature']:.2f}, ECE "
                              f"{c['metrics']['ece']['before']['estimate']:.3f} -> "
                              f"{c['metrics']['ece']['after']['estimate']:.3f}")
    if "robustness" in results:
        out["robustness"] = "Adversarial robustness: see report.html (robust accuracy with its CI)."
    if "privacy" in results:
        p = results["privacy"]
        best = max((r for r in p["attacks"] if r["attack"] != "loss_random_labels"),
                   key=lambda r: r["auc"])
        out["privacy_words"] = (f"the privacy audit's target (a {p['model']} deliberately overfit "
                                f"on {p['members']:,} {p['dataset']} images, not this model) let "
                                f"its strongest membership-inference attack reach AUC {best['auc']:.2f}")
    e = run.metrics.get("energy") or {}
    if e.get("kwh") is not None:
        out["energy_words"] = (f"{1000 * e['kwh']:.3f} Wh to train and evaluate ("
                               f"{e['method']['kind']}); {e['carbon']['words']}")
    return out


def section(ctx: SectionContext) -> str:
    res = ctx.result
    rec = res["recorded"]
    body = table(["", ""], [["source", rec.get("source", "unknown")],
                            ["licence", rec.get("licence", "unknown")],
                            ["code version at training", rec.get("code_version", "unknown")]])
    body += "<h3>Does the data still match what the model was trained on?</h3>" + table(
        ["data", "recorded sha256", "now", ""],
        [[c["what"], c["recorded"][:16] + "...", c["now"][:16] + "...",
          "matches" if c["matches"] else "CHANGED"] for c in res["checks"]])
    leak = res["leakage"]
    body += para(f"Leakage: {leak['exact']} of the {leak['n_eval']:,} evaluation images are exact "
                 f"copies of a training image and {leak['near']} are near copies (perceptual hash "
                 f"within {leak['max_distance']} of 64 bits)"
                 + (". Where they are true copies, accuracy on them measures memory, not "
                    "generalisation." if leak["exact"] + leak["near"] else "."))
    if ctx.arrays:
        from cnnlab.viz import plots as P

        n = len(ctx.arrays["pair_train"])
        images = [*ctx.arrays["pair_train"], *ctx.arrays["pair_eval"]]
        titles = [f"train #{p[0]}" for p in (leak["exact_pairs"] + leak["near_pairs"])[:n]] + [
            f"eval #{p[1]}" for p in (leak["exact_pairs"] + leak["near_pairs"])[:n]]
        body += img(P.save(P.titled_grid(images, titles, per_row=n), ctx.plots_dir, "leakage"),
                    "training images and their copies in the evaluation split", "720px")
        body += para("Top row: training images; below each, the evaluation image the hashes call "
                     "its copy. On tiny images (8x8 digits) a 64-bit perceptual hash is coarse and "
                     "similar digits collide: look before trusting the count.", note=True)
    body += para("model_card.md (Mitchell et al. 2019 headings) is written beside this report.",
                 note=True)
    return body + f"<p class=\"note\">{esc('cnnlab audit provenance RUN re-checks it.')}</p>"


ANALYSIS = register(Analysis(
    name="provenance", title="Provenance and model card", compute=provenance, section=section,
    order=97, verb=("audit", "provenance"),
    bounds={"max_distance": (0, 64)},
))
