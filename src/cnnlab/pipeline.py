"""``cnnlab run``, the main job: the whole lecture on one dataset, one run folder, one report.

1. Train the main CNN (LeNet-5 on grey digit images, a small fastnet elsewhere:
   ``main_model``) with a small-budget recipe: the run folder itself.
2. Every analysis registered for the main job, in report order, each with its ``quick``
   budget (about 20-30 s on 2 CPU cores), or its ``full`` one with ``--full``.
3. Render report.html.

The time of each step and the total are printed, so the budget stays visible as analyses
arrive. Also here: ``train``, the Python API's training call (``train_run`` and a report).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.analysis import load_all, main_job_analyses, run_analysis
from cnnlab.analysis.registry import main_job_stems, record_main_job
from cnnlab.config import TrainConfig
from cnnlab.log import Log

if TYPE_CHECKING:  # imported inside the functions: the CLI reads main_job's signature cheaply
    from cnnlab.run import Run


def train(cfg: TrainConfig, resume: bool = False, log: Log = print, progress: bool = True,
          report: bool = True) -> Run | None:
    """Train a model as ``cfg`` says into a run folder, render its report, return the Run
    (None on the non-zero ranks of distributed training)."""
    from cnnlab.report import render_report
    from cnnlab.run import train_run

    run = train_run(cfg, resume=resume, log=log, progress=progress)
    if run is not None and report:
        log(f"report: {render_report(run)}")
    return run


def recipe(dataset: str, epochs: int = 0, seed: int = 0, data_dir: str = "~/.cache/cnnlab",
           limit_train: int = 0, model: str = "lenet5", threads: int = 0) -> TrainConfig:
    """A sensible small-budget recipe for any dataset (the models then differ only in name)."""
    small = dataset.partition(":")[0] == "digits"
    return TrainConfig(
        dataset=dataset, model=model, data_dir=data_dir, seed=seed, limit_train=limit_train,
        epochs=epochs or (30 if small else 10), batch_size=64 if small else 128,
        optimizer="sgd", lr=0.05, weight_decay=5e-4, warmup_epochs=1, schedule="cosine",
        label_smoothing=0.0, crop_padding=1 if small else 2, flip=True, threads=threads,
    )


DIGIT_IMAGES = ("digits", "mnist", "fashion-mnist")
"""Grey images of digits and the like, the kind LeNet-5 was made for: the main CNN's data."""


def main_model(dataset: str) -> dict:
    """The main CNN when none is named: LeNet-5, the lecture's, on grey digit images; elsewhere a
    small fastnet (widths 16/32/64). LeNet-5 (tanh, average pooling) barely learnt the 32x32
    shapes at the recipe's 10 epochs: 34%, where this fastnet reached 99.7% (15 s at one thread;
    benchmarks/RESULTS.md, 2026-12-08)."""
    if dataset.partition(":")[0] in DIGIT_IMAGES:
        return {"model": "lenet5"}
    return {"model": "fastnet", "model_kwargs": {"widths": [16, 32, 64]}}


def _unnamed_model(dataset: str, folder: Path, init_from: str) -> dict:
    """The model when none is named: a run folder of that name keeps its own (so it is reused
    or resumed as it was), a start from a run takes that run's (its body is what transfers),
    else ``main_model``'s."""
    from cnnlab.run import load_run

    saved = folder / "config.yaml"  # written as a run starts: an interrupted one has it too
    if saved.is_file():
        c = TrainConfig.load(saved)
    elif init_from:
        c = load_run(init_from).config
    else:
        return main_model(dataset)
    return {"model": c.model, "model_kwargs": dict(c.model_kwargs)}


def main_config(dataset: str, epochs: int, seed: int, name: str, out_dir: str, data_dir: str,
                limit_train: int, threads: int = 0, country: str = "", precision: str = "auto",
                start: dict | None = None) -> TrainConfig:
    """The main CNN's config: the recipe, its start (model, init_from, pretrained; with no
    model, ``_unnamed_model``'s, whose arguments --model-kwargs adds to) and a folder name
    (default: run-DATASET-TIME)."""
    cfg = recipe(dataset, epochs, seed, data_dir, limit_train, threads=threads)
    cfg.name = name or f"run-{dataset.split(':', 1)[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = dict(start or {})
    if "model" not in start:
        unnamed = _unnamed_model(dataset, Path(out_dir) / cfg.name, start.get("init_from", ""))
        start["model_kwargs"] = unnamed.get("model_kwargs", {}) | start.get("model_kwargs", {})
        start["model"] = unnamed["model"]
    cfg = dataclasses.replace(cfg, **start)
    cfg.out_dir = out_dir
    cfg.checkpoints = min(4, cfg.epochs)  # for TracIn (the influence analysis)
    cfg.country, cfg.precision = country, precision  # sub-runs inherit the precision
    return cfg


def main_run(cfg: TrainConfig, log: Log, progress: bool) -> Run:
    """Train the main CNN into its run folder (or reuse a finished one of that name)."""
    from cnnlab.run import Run, train_run

    folder = Path(cfg.out_dir) / cfg.name
    if (folder / "metrics.json").is_file():
        return Run(folder)
    resume = (folder / "weights" / "last.safetensors").is_file()
    return train_run(cfg, resume=resume, log=log, progress=progress)


def main_job(dataset: str = "digits", *, epochs: int = 0, seed: int = 0, name: str = "",
             out_dir: str = "runs", data_dir: str = "~/.cache/cnnlab", limit_train: int = 0,
             threads: int = 1, precision: str = "auto", full: bool = False, country: str = "",
             model: str = "", model_kwargs: dict | None = None, init_from: str = "",
             pretrained: str = "", log: Log = print, progress: bool = True) -> Run:
    """The whole lecture on one dataset: train, run every analysis, write one report.

    Args:
        dataset: dataset name (default: digits, embedded).
        epochs: epochs of the main CNN (0: the recipe's).
        seed: training seed.
        name: run folder name under out_dir (a finished one is reused; default: run-DATASET-TIME).
        out_dir: folder that holds run folders.
        data_dir: where downloaded datasets are cached and looked for.
        limit_train: train on a seeded random subset of N images (0: all).
        threads: CPU threads for torch (0: one per core). One, as every verb: the whole job
            takes under 3 minutes on 2 cores with it (in bf16; 237 s in fp32 on a 2-core
            EPYC), and a second thread beside one busy process is 1.6-25x slower per step
            (benchmarks/threads.py). Where the machine has a core to spare for each, the
            analyses run in two processes at once (scenes, video, the tree in the second),
            each with this many threads.
        precision: auto (bf16 autocast on CUDA and where the CPU has AMX-BF16 or AVX512-BF16),
            fp32 or bf16; every sub-run inherits it. bf16 measured 137 s on a 2-core Xeon with
            AMX, fp32 169 s there; see benchmarks/RESULTS.md for the AMD EPYC (AVX512-BF16).
        full: each analysis's full budget instead of its quick one (minutes per analysis on 2
            cores, not seconds).
        country: ISO 3166 alpha-3 code of the grid powering this machine (e.g. FRA), for the
            carbon figures; empty: energy only, and the report says so.
        model: the main CNN (`cnnlab models`; default: the lecture's LeNet-5 on grey digit
            images (digits, mnist, fashion-mnist), a small fastnet (widths 16/32/64) on other
            data: on the shapes LeNet-5 reached 34%, fastnet 99.7%; with --init-from, the
            model of that run; a run folder of that name keeps its own).
        model_kwargs: its arguments, e.g. {widths: [64, 256, 256]} for a fastnet body to
            start from.
        init_from: start the main CNN from the body of this run folder (your own small data:
            the report then adds the same recipe from scratch, and how much the start helped).
        pretrained: start the main CNN from this weights file (safetensors, or torchvision's
            .pth), e.g. with --model timm:resnet18; the report compares it with scratch too.
    """
    if country:  # refused now, not after every analysis has run
        from cnnlab.energy import carbon_intensity

        carbon_intensity(country)
    start = {k: v for k, v in (("model", model), ("model_kwargs", model_kwargs),
                               ("init_from", init_from), ("pretrained", pretrained)) if v}
    return _main_job(dataset, epochs, seed, name, out_dir, data_dir, limit_train, threads,
                     precision, full, country, log, progress, start)


SECOND_LANE = ("scenes", "video", "tree", "calibration", "influence", "filters", "permutation", "privacy",
               "robustness")
"""Analyses ``cnnlab run`` gives a second process when the machine has a core to spare: they read
nothing of the first lane's analyses. Within the lane, order matters: video reuses the scenes
detector; calibration scores the network the tree grows from (on the digits, a sub-run on
shapes: the tree trains it, calibration reuses it); influence's confidences use the temperature
calibration fits (on a run calibrated on its own data). Each lane runs
one torch thread, so the two never wait on each other's threads (a second thread beside a busy
core is what makes runs many times slower). The split balances the lanes' measured seconds
(benchmarks/RESULTS.md): on a 2-core EPYC in bf16 they ran 183 s against 105 s with the tree in
the first lane and privacy in the second, 145 s against 137 s with the tree, scenes and video
in the second (170 s wall), and 139 s against 139 s with data valuation there too, once the
unseen GAN trained as long as the seen one (166 s wall). The main CNN trains in the first
lane's process while the second starts, and each lane draws its analyses' report sections:
165 s against 153 s (174 s wall), hence filters in the second lane too; with sub-runs validated
once, 158 s against 159 s (173 s wall, in an hour when this machine ran about 10% slower;
influence and bias, 3 s, were in the second lane then). On 2026-12-07 calibration moved here to
reuse the tree's base, and data valuation (6 s) back to the first lane when the segmenter got
two more epochs (10 s) for an interval that clears its bar. Later that day the depth pair
trained on the digits' four other folds (43 s more in the first lane's MLP versus CNN), and
permutation and privacy (15 s, their own data) moved here: 133 s against 125 s, 143 s wall;
in a slower hour 161 s against 144 s (171 s wall), so robustness (6-7 s) came here too."""

BEFORE_MAIN = ("scenes", "video")
"""Second-lane analyses that read nothing of the main CNN (their own data, models and
sub-runs; only its config): they start while it trains. The rest of that lane waits until
its folder says it finished (status.json, written after metrics, weights and provenance)."""

AFTER_LANES = ("provenance", "energy")
"""Analyses that read what every other one did, run last and in this order: provenance (its
model card quotes bias, calibration, robustness and privacy, from both lanes), then energy
(each phase's, provenance's included)."""


def _main_job(dataset: str, epochs: int, seed: int, name: str, out_dir: str, data_dir: str,
              limit_train: int, threads: int, precision: str, full: bool, country: str, log: Log,
              progress: bool, start: dict) -> Run:
    t0 = time.perf_counter()
    cfg = main_config(dataset, epochs, seed, name, out_dir, data_dir, limit_train, threads, country,
                      precision, start)
    log(f"== 1. {'LeNet-5' if cfg.model == 'lenet5' else cfg.model}, the main CNN ==")
    path = Path(out_dir) / cfg.name
    finished = (path / "metrics.json").is_file()
    analyses = main_job_analyses(TrainConfig.load(path / "config.yaml") if finished else cfg)
    by_name = {a.name: a for a in analyses}
    steps = {a.name: k for k, a in enumerate(analyses, start=2)}
    lanes = _lanes([a.name for a in analyses if a.name not in AFTER_LANES], threads)
    stems, times, drawn = main_job_stems(path), {}, {}
    if len(lanes) > 1:  # spawned before this process imports torch: the lanes start seconds sooner
        log(f"   two lanes, one process each: {', '.join(lanes[1])} (their lines marked '| ') "
            f"beside the main CNN and the rest")
        stems, times, drawn = _run_lanes(path, lanes, steps, full, country, threads, stems,
                                         times, None if finished else cfg)
    from cnnlab.analysis.energy import write_job_phases
    from cnnlab.energy import meter
    from cnnlab.env import torch_threads
    from cnnlab.report import render_report
    from cnnlab.run import Run

    with torch_threads(threads):
        if len(lanes) == 1:  # one process, in order
            run = main_run(cfg, log, progress)
            times["main CNN"] = time.perf_counter() - t0
            for name in lanes[0]:
                times[name] = _step(run, by_name[name], steps[name], full, country, stems, log)
        else:
            run = Run(path)
            record_main_job(run.path, stems)
        for name in (n for n in AFTER_LANES if n in by_name):
            write_job_phases(run)  # every phase so far, the lanes' included
            times[name] = _step(run, by_name[name], steps[name], full, country, stems, log)
        t = time.perf_counter()
        with meter().phase("report"):
            report = render_report(run, drawn)
        write_job_phases(run)
        times["report"] = time.perf_counter() - t
    log("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) +
        f"; total {time.perf_counter() - t0:.1f} s")
    log(f"report: {report}")
    return run


def _step(run: Run, a, step: int, full: bool, country: str, stems: dict, log: Log,
          record: bool = True) -> float:
    """One analysis of the main job at its quick (or full) budget; its stem goes into
    ``stems`` and (``record``) into analysis/main_job.json."""
    from cnnlab.energy import meter

    log(f"== {step}. {a.title} ==")
    skip = a.missing() or (not full and a.quick_skip_reason(run))
    if skip:
        log(f"   skipped: {skip}")
        return 0.0
    t = time.perf_counter()
    options = a.budget(run, full)
    if country and "country" in a.options():  # carbon of a reused run: derived from energy
        options["country"] = country
    with meter().phase(f"analysis: {a.name}"):
        stems[a.name] = run_analysis(run, a.name, log=log, **options)["stem"]
    if record:  # the report shows these first, whatever runs later
        record_main_job(run.path, stems)
    seconds = time.perf_counter() - t
    log(f"   ({a.name}: {seconds:.1f} s)")
    return seconds


def _lanes(names: list[str], threads: int) -> list[list[str]]:
    """The analyses in one lane, or in two when there is a core for the second beside the
    first's threads (``threads`` 0, one per core, leaves none)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    second = sorted((n for n in names if n in SECOND_LANE), key=SECOND_LANE.index)
    if threads < 1 or cores < 2 * threads or not second:
        return [names]
    return [[n for n in names if n not in SECOND_LANE], second]


def _lane(path: str, names: list[str], steps: dict, full: bool, country: str, threads: int,
          prefix: str, main: TrainConfig | None, waits: bool) -> tuple[dict, dict, dict, dict]:
    """One lane, in its own process: (stems, seconds, energy per phase, report sections by
    stem). Its energy meter measures this process alone, so the two lanes' phases add up
    without counting twice. ``main``: train the main CNN first (the first lane); ``waits``:
    run the BEFORE_MAIN analyses, then wait for the main CNN (the second). Each analysis's
    report section is drawn as it ends, in its lane, so the report at the end only assembles
    them."""
    from cnnlab.energy import meter
    from cnnlab.env import torch_threads
    from cnnlab.log import hide_bars, prefixed
    from cnnlab.report import draw_section
    from cnnlab.run import Run

    hide_bars()  # two bars on one terminal line garble each other
    analyses, stems, times, log = {a.name: a for a in load_all()}, {}, {}, prefixed(prefix)
    with torch_threads(threads):
        if main is not None:
            t = time.perf_counter()
            main_run(main, log, progress=False)
            times["main CNN"] = time.perf_counter() - t
        if waits:
            _wait_until((Path(path) / "config.yaml").is_file)  # written before its first step
        run, drawn, drawing = Run(path), {}, 0.0
        for name in names:
            if waits and name not in BEFORE_MAIN:
                _wait_until(lambda: _finished(Path(path)))
                waits = False
            times[name] = _step(run, analyses[name], steps[name], full, country, stems, log,
                                record=False)  # the parent records both lanes' when they end
            t = time.perf_counter()
            if name in stems:  # not a skipped one
                with meter().phase("report"):
                    drawn[stems[name]] = draw_section(analyses[name], run, stems[name])
            drawing += time.perf_counter() - t
    times[f"sections (lane {2 if prefix else 1})"] = drawing
    return stems, times, meter().totals, drawn


def _wait_until(ready) -> None:
    """Until ``ready()`` (the first lane wrote what this one reads; if that lane fails, the
    parent ends this one)."""
    while not ready():
        time.sleep(0.1)


def _finished(path: Path) -> bool:
    """Whether the run's status.json says finished (written last: after metrics, weights and
    provenance)."""
    import json

    try:
        return json.loads((path / "status.json").read_text())["state"] == "finished"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _run_lanes(path: Path, lanes: list[list[str]], steps: dict, full: bool, country: str,
               threads: int, stems: dict, times: dict,
               main: TrainConfig | None) -> tuple[dict, dict, dict]:
    """Both lanes at once, each in a spawned process (a forked torch with live threads may
    deadlock), the first training the main CNN (``main``, unless it is finished) before its
    analyses; the first error stops the other lane at once and is raised here. The parent
    meters nothing meanwhile: each lane's meter counts its own process, and their phases are
    merged into this one's. Returns the stems, seconds and drawn sections of both."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from cnnlab.energy import meter
    from cnnlab.errors import Interrupted

    pool = ProcessPoolExecutor(len(lanes), mp_context=multiprocessing.get_context("spawn"))
    try:
        roles = (("", main, False), ("| ", None, main is not None))  # (prefix, main, waits)
        futures = [pool.submit(_lane, str(path), names, steps, full, country, threads, *role)
                   for names, role in zip(lanes, roles, strict=True)]
        wait(futures, return_when=FIRST_COMPLETED)
        _raise_first(futures)
        _import_for_report()  # on the core the lane that ended left free
        wait(futures, return_when=FIRST_EXCEPTION)
        _raise_first(futures)
        results = [f.result() for f in futures]
    except BaseException as e:  # an error or Ctrl-C: the other lane stops now, not when it ends
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        if isinstance(e, KeyboardInterrupt) and main is not None and not (path / "metrics.json").is_file():
            raise Interrupted(path) from None  # the main CNN's checkpoint: the message names it
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    totals, drawn = meter().totals, {}
    for theirs, their_times, energy, their_drawn in results:
        stems, times, drawn = stems | theirs, times | their_times, drawn | their_drawn
        for phase, part in energy.items():
            mine = totals.setdefault(phase, {k: 0.0 for k in part})
            for k, v in part.items():
                mine[k] = mine.get(k, 0.0) + v
    return stems, times, drawn


def _raise_first(futures) -> None:
    for f in futures:
        if f.done() and f.exception() is not None:
            raise f.exception()


def _import_for_report() -> None:
    """What this process needs once the lanes end (torch, matplotlib: seconds of imports)."""
    import cnnlab.analysis.energy
    import cnnlab.report
    import cnnlab.run  # noqa: F401
