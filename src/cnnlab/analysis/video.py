"""Video: tracking by detection, and (full budget) action recognition, on procedural clips.

Tracking: the detector of the scenes analysis (the same sub-run) on every frame of seeded
clips (one box per place whatever its class: a class-agnostic NMS), then SORT and ByteTrack,
scored by motmetrics (MOTA, IDF1, identity switches) twice: on the true boxes (the tracker
alone) and on the detector's (the whole system), so the two sources of error stand apart. Each
tracker's score threshold and confirmation count are chosen on validation clips of another seed
(a detector's scores are its own); the clips hold at most as many moving shapes as the
detector's training scenes (3 at most). Action recognition: a per-frame CNN averaged over time
against a (2+1)D CNN on the same clips, compared by McNemar, with accuracy per action: the
actions only the model that sees order can tell apart are those that need motion.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.analysis.scenes import QUICK as SCENES_QUICK
from cnnlab.analysis.scenes import scenes_config
from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import img, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run


DETECTOR_QUICK = {k: SCENES_QUICK[k] for k in ("n_train", "objects", "image_size", "epochs", "width", "lr",
                                               "batch_size")}
"""The quick budget's detector is the scenes analysis's, read from its budget so the two stay one
sub-run (a copy of its numbers once drifted: video chose the batch by n_train, scenes did not)."""


def video(run: Run, *, clips: int = 64, frames: int = 48, n_train: int = 2000, epochs: int = 12,
          width: int = 16, image_size: int = 64, objects: int = 4, lr: float = 0.003,
          batch_size: int = 32, tune_clips: int = 32,
          action_clips: int = 1800, action_epochs: int = 20, action_size: int = 32,
          action_objects: int = 3, log: Log = print) -> dict:
    """Track objects in clips (SORT vs ByteTrack, true vs detected boxes); recognise actions.

    Args:
        clips: clips tracked (seed 3).
        tune_clips: validation clips (seed 4) the trackers' thresholds are chosen on (0: their
            published defaults).
        frames: frames per tracked clip.
        n_train: training scenes of the detector (as the scenes analysis trains it).
        epochs: the detector's epochs.
        width: the detector backbone's first-stage width.
        image_size: the side of the detector's scenes and of the tracked clips.
        objects: the most objects in one training scene; the tracked clips hold at most
            min(objects, 3).
        lr: the detector's learning rate (AdamW).
        batch_size: the detector's batch.
        action_clips: training clips of the action models (0: no action recognition).
        action_epochs: epochs of the action models.
        action_size: the side of the action clips.
        action_objects: the most objects in one action clip (1: the acting object alone).
    """
    if clips < 1 or frames < 4 or action_clips < 0 or tune_clips < 0:
        raise CnnlabError("video needs clips >= 1, frames >= 4, action_clips >= 0 and tune_clips >= 0")
    base = scenes_config(run, n_train, epochs, width, image_size, batch_size, objects, lr)
    detector_run = run.subrun(base.derive(head="centernet"), "detect", log)
    result = _tracking(detector_run.load_model(), clips, tune_clips, frames, image_size, min(objects, 3), log)
    result["detector"] = {"map": detector_run.metrics["map"], "dataset": base.dataset, "epochs": epochs}
    if action_clips:
        result["action"] = _actions(run, action_clips, action_epochs, action_size, action_objects, log)
    return result


def _tracking(detector, clips: int, tune_clips: int, frames: int, size: int, crowd: int, log: Log) -> dict:
    """Both trackers on true and detected boxes in ``clips`` clips of at most ``crowd`` shapes,
    their settings on the detector's boxes chosen on ``tune_clips`` others; one clip drawn."""
    import numpy as np

    from cnnlab.data.videos import make_videos
    from cnnlab.tracking.clips import TRACKERS, detector_detections, evaluate_tracking, tune_tracker
    from cnnlab.tracking.sort import track_video

    tuned = {}
    if tune_clips:
        validation = make_videos(tune_clips, size, frames, seed=4, max_objects=crowd)
        found = [detector_detections(detector, clip) for clip in validation.x]
        tuned = {name: tune_tracker(validation, found, byte) for name, byte in TRACKERS}
        log("trackers' settings chosen on validation clips: " +
            "; ".join(f"{k} {_setting(v)}" for k, v in tuned.items()))
    videos = make_videos(clips, size, frames, seed=3, max_objects=crowd)
    tracking = evaluate_tracking(videos, detector, tuned=tuned)
    rows = track_video(detector_detections(detector, videos.x[0]), byte=True, **tuned.get("ByteTrack", {}))
    for k, m in tracking.items():
        log(f"{k}: MOTA {m['mota']:.3f}, IDF1 {m['idf1']:.3f}, {int(m['num_switches'])} ID switches")
    return {"tracking": tracking, "clips": clips, "frames": frames, "image_size": size, "tuned": tuned,
            "tune_clips": tune_clips, "objects": crowd,
            "arrays": {"clip": videos.x[0].numpy(), "rows": np.asarray(rows, np.float32)}}


def _actions(run: Run, n: int, epochs: int, size: int, objects: int, log: Log) -> dict:
    """Both clip models on videos:n=N,objects=K; accuracy with intervals, McNemar, accuracy
    per action."""
    import numpy as np

    from cnnlab.evaluate.stats import mcnemar, proportion_ci
    from cnnlab.io import load_npz

    base = TrainConfig(dataset=f"videos:n={n},objects={objects}", image_size=size, epochs=epochs,
                       batch_size=32, optimizer="adamw", lr=0.003, seed=run.config.seed,
                       threads=run.config.threads, precision=run.config.precision)
    out, hits = {"models": []}, {}
    for model in ("framepool", "r2plus1d"):
        sub = run.subrun(base.derive(model=model), f"action-{model}", log)
        pred = load_npz(sub.path / "predictions.npz")
        hit = pred["probs"].argmax(1) == pred["y"]
        hits[model] = hit
        per_action = {c: float(hit[pred["y"] == k].mean()) for k, c in enumerate(sub.classes)}
        out.setdefault("confusion", {})[model] = np.bincount(
            9 * pred["y"] + pred["probs"].argmax(1), minlength=81).reshape(9, 9).tolist()
        out["actions"] = list(sub.classes)
        out["models"].append({"model": model, "params": sub.metrics["params"], "per_action": per_action,
                              "accuracy_ci": proportion_ci(int(hit.sum()), len(hit)).to_dict()})
    out["mcnemar"] = mcnemar(hits["framepool"], hits["r2plus1d"]).to_dict()
    out["chance"], out["n_test"] = 1 / 9, int(len(hits["r2plus1d"]))
    out |= {"n_train": n, "epochs": epochs, "size": size, "objects": objects}
    return out


def section(ctx: SectionContext) -> str:
    import numpy as np

    from cnnlab.viz import plots as P

    res = ctx.result
    d = res["detector"]
    crowd = f"up to {res['objects']} shapes, which " if "objects" in res else "shapes "
    body = para(f"{res['clips']} procedural clips of {res['frames']} frames ({res.get('image_size', 64)} px; "
                f"{crowd}move, bounce, "
                f"cross, hide each other and leave the frame), tracked with the detector of the scenes "
                f"analysis (mAP@0.5:0.95 {d['map']:.3f}, {d['dataset']}, {d['epochs']} epochs)."
                + (" This quick detector misses much, which the whole system's numbers show; "
                   "cnnlab video RUN trains the full one and adds action recognition."
                   if not res.get("action") else ""))
    body += table(["tracker, detections", "MOTA (95% CI)", "IDF1 (95% CI)", "ID switches", "misses",
                   "false positives"],
                  [[k, _score_words(m, "mota"), _score_words(m, "idf1"), int(m["num_switches"]),
                    int(m["num_misses"]), int(m["num_false_positives"])] for k, m in res["tracking"].items()])
    body += para("On true boxes every error is the tracker's; on the detector's boxes the detector's "
                 "misses and false alarms add theirs. " + _byte_words(res["tracking"], res.get("tuned")) +
                 " MOTA and IDF1 come from motmetrics." + _tuned_words(res), note=True)
    if ctx.arrays:
        fig = _strip(ctx.arrays["clip"], ctx.arrays["rows"])
        body += "<h3>One clip, tracked (ByteTrack on the detector's boxes)</h3>" + img(
            P.save(fig, ctx.plots_dir, "tracking_strip"), "tracked frames")
    if res.get("action"):
        body += _action_html(res["action"])
        for model, cm in res["action"].get("confusion", {}).items():
            fig = P.confusion(np.array(cm), res["action"]["actions"])
            body += f"<h3>Confusion matrix: {model}</h3>" + img(
                P.save(fig, ctx.plots_dir, f"action_confusion_{model}"), f"{model} confusion", "520px")
    return body


def _byte_words(tracking: dict, tuned: dict | None = None) -> str:
    """What ByteTrack's second association did here, read off the numbers (not assumed)."""
    sort, byte = tracking.get("SORT, detector"), tracking.get("ByteTrack, detector")
    if not (sort and byte):
        return ""
    what = "ByteTrack's second association (low-score boxes matched to tracks)"
    if tuned and tuned.get("SORT") != tuned.get("ByteTrack"):
        what = "ByteTrack (its second association of low-score boxes, and its own chosen setting)"
    said = (f"{what} gave MOTA {byte['mota']:.3f} against SORT's {sort['mota']:.3f}, with "
            f"{_fewer(sort['num_misses'] - byte['num_misses'], 'misses')} and "
            f"{_fewer(sort['num_false_positives'] - byte['num_false_positives'], 'false positives')}")
    if "per_clip" in sort and "per_clip" in byte:
        from cnnlab.evaluate.tracking import mota_difference

        d = mota_difference(sort["per_clip"], byte["per_clip"])
        if math.isinf(d["low"]):
            return f"{said}: too few clips to tell. With true boxes (all scores 1) it equals SORT."
        verdict = ("no significant difference" if d["low"] <= 0 <= d["high"]
                   else "it helped here" if d["estimate"] > 0 else "it did worse here")
        verdict += (f" (ByteTrack minus SORT {d['estimate']:+.3f}, 95% CI {d['low']:+.3f} to "
                    f"{d['high']:+.3f}, paired bootstrap over the {len(sort['per_clip'])} clips)")
    else:  # a result stored before the clips' counts were kept
        verdict = ("it helped here" if byte["mota"] > sort["mota"] else "it did not help here")
        verdict += " (one set of clips, no interval)"
    return f"{said}: {verdict}. With true boxes (all scores 1) it equals SORT."


def _fewer(n: float, what: str) -> str:
    return f"{int(n)} fewer {what}" if n >= 0 else f"{int(-n)} more {what}"


def _tuned_words(res: dict) -> str:
    if not res.get("tuned"):
        return " The trackers ran with their published settings (ByteTrack's 0.5 and 0.1)."
    said = "; ".join(f"{k}: {_setting(v)}" for k, v in res["tuned"].items())
    return (f" On the detector's boxes each tracker ran with the setting of best MOTA on "
            f"{res['tune_clips']} validation clips of another seed, never on these ({said}): "
            "what score a confident box gets is particular to each trained detector.")


def _strip(clip, rows, n: int = 6):
    """Every few frames of the clip with its tracks drawn (boxes, ids, trails)."""
    import numpy as np

    from cnnlab.viz.dense import draw_tracks
    from cnnlab.viz.plots import plt

    frames = clip.transpose(0, 2, 3, 1)
    drawn = draw_tracks(frames, rows)
    pick = np.linspace(0, len(frames) - 1, n).round().astype(int)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.5))
    for ax, t in zip(axes, pick, strict=True):
        ax.imshow(drawn[t])
        ax.set(title=f"frame {t + 1}", xticks=[], yticks=[])
        ax.grid(False)
    fig.tight_layout()
    return fig


def _setting(params: dict) -> str:
    hits = params["min_hits"]
    return f"score threshold {params['high']}, reported after {hits} detection{'s' * (hits != 1)}"


def _action_html(a: dict) -> str:
    from cnnlab.viz.html import pct_ci

    rows = [[m["model"], f"{m['params']:,}", pct_ci(m["accuracy_ci"])] for m in a["models"]]
    html = "<h3>Action recognition</h3>"
    if "size" in a:
        crowd = (f"with up to {a['objects'] - 1} other moving shapes" if a["objects"] > 1 else
                 "alone on its background (cnnlab video RUN adds other moving shapes)")
        html += para(f"Both models trained {a['epochs']} epochs on {a['n_train']:,} clips of 8 frames at "
                     f"{a['size']} px, the acting shape {crowd}; scored on {a['n_test']} other clips."
                     + (" At this size a rotation or a change of size moves only a few pixels, so "
                        "translations are the first actions a short training learns (see the "
                        "per-action table)." if a["size"] < 32 else ""))
    html += table(["model", "parameters", "accuracy (95% CI)"], rows)
    t = a["mcnemar"]
    words = ("no significant difference" if t["p_value"] >= 0.05 else
             f"the (2+1)D model is right on {t['b_only']} clips the frame average gets wrong, and wrong on "
             f"{t['a_only']} it gets right")
    html += para(f"McNemar on the same {a['n_test']} test clips: {words} (p = {t['p_value']:.2g}); chance "
                 f"is {100 * a['chance']:.1f}%.")
    fp, r2 = (m["per_action"] for m in a["models"])
    html += table(["action", "frame average", "(2+1)D"],
                  [[c, f"{100 * fp[c]:.0f}%", f"{100 * r2[c]:.0f}%"] for c in fp])
    html += para("An average over frames is the same for a clip and the clip played backwards, and "
                 "after global pooling it has no positions: left and right, up and down, grow and "
                 "shrink, clockwise and anticlockwise look alike to it, and so do every translation "
                 "and 'still'. At best it tells apart moving-or-still, rotating and changing size: "
                 "3 of the 9 actions, a ceiling of 33%. Beating that needs the order of frames, "
                 "which only the (2+1)D convolutions see.", note=True)
    return html


PRIMARY = ("ByteTrack", "SORT")
"""The tracker the claim tests, the first of these that ran on the detector's boxes."""


def _score_words(m: dict, score: str) -> str:
    """'0.880 (95% CI 0.842-0.915)', or the score alone where it has no interval."""
    ci = m.get(f"{score}_ci")
    if ci and math.isinf(ci["low"]):
        return f"{m[score]:.3f} (too few clips for an interval)"
    return f"{m[score]:.3f}" + (f" (95% CI {ci['low']:.3f}-{ci['high']:.3f})" if ci else "")


def _at_chance(ci: dict, chance: float) -> str:
    """Words for an accuracy whose interval holds chance: that model learned nothing measurable."""
    return (f"; the frame average's 95% CI {100 * ci['low']:.1f}-{100 * ci['high']:.1f}% holds it"
            if ci["low"] <= chance <= ci["high"] else "")


def claims(res: dict) -> list[Claim]:
    """Tracking by detection: MOTA and IDF1 of the whole system, their intervals' lower ends
    against a useful 0.7; actions
    need motion: the (2+1)D model against the frame average, by McNemar."""
    out = []
    system = {k: v for k, v in res["tracking"].items() if k.endswith("detector")}
    if system:
        # the verdict tests one tracker fixed in advance (the best of two would need a correction)
        tested = [t for t in PRIMARY if f"{t}, detector" in system]
        name = f"{tested[0]}, detector" if tested else next(iter(system))
        v = system[name]
        said = "; ".join(f"{k}: MOTA {_score_words(m, 'mota')}, IDF1 {_score_words(m, 'idf1')}"
                         for k, m in system.items())
        # useful when both scores' lower ends clear 0.7, not when either's upper end stays below
        # (a result stored without intervals: the scores themselves)
        low = min(v.get(f"{s}_ci", {}).get("low", v[s]) for s in ("mota", "idf1"))
        high = min(v.get(f"{s}_ci", {}).get("high", v[s]) for s in ("mota", "idf1"))
        over = ("; intervals over clips" if "mota_ci" in v and not math.isinf(v["mota_ci"]["low"])
                else "; too few clips for intervals" if "mota_ci" in v else "")
        out.append(Claim("Tracking by detection follows objects through a video",
                         f"{res['clips']} clips of {res['frames']} frames, {said} (useful: 0.7, "
                         f"tested on {name.split(',')[0]}{over})",
                         True if low >= 0.7 else False if high < 0.7 else None))
    if res.get("action"):
        a = res["action"]
        acc = {m["model"]: m["accuracy_ci"] for m in a["models"]}
        t = a["mcnemar"]
        better = acc["r2plus1d"]["estimate"] > acc["framepool"]["estimate"]
        out.append(Claim(
            "Actions need motion: a CNN that sees the order of frames beats one that averages them",
            f"(2+1)D {100 * acc['r2plus1d']['estimate']:.1f}% against the frame average's "
            f"{100 * acc['framepool']['estimate']:.1f}% on {a['n_test']} clips (chance "
            f"{100 * a['chance']:.1f}%{_at_chance(acc['framepool'], a['chance'])}), McNemar p = "
            f"{t['p_value']:.2g}",
            None if t["p_value"] >= 0.05 else better))
    return out


ANALYSIS = register(Analysis(
    name="video", title="Video: tracking by detection and action recognition", compute=video,
    section=section, order=90, verb=("video",),
    quick={"frames": 32, **DETECTOR_QUICK,
           "action_clips": 900, "action_epochs": 8, "action_size": 16, "action_objects": 1},
    full={},
    claims=claims,
    bounds={"clips": (1, 10_000),
            "tune_clips": (0, 10_000),
            "image_size": (32, 512),
            "objects": (1, 8),
            "lr": (1e-9, 10),
            "batch_size": (1, 4096),
            "frames": (2, 10_000),
            "n_train": (10, 1e6),
            "epochs": (1, 10_000),
            "width": (4, 256),
            "action_clips": (0, 1e6),
            "action_epochs": (1, 10_000),
            "action_size": (16, 256),
            "action_objects": (1, 8)},
    takes=("about 5.5 minutes on 2 CPU cores (319 s measured on the Zen 5 EPYC: a detector, 64 "
           "tracked clips with thresholds chosen on 32 others, and two action models); cnnlab run's "
           "quick budget reuses the scenes detector and takes about 20 s (19.6 s measured on the "
           "Zen 5: 64 clips tracked, thresholds chosen on 32 others, two action models)"),
))
