"""The ``cnnlab`` command: each verb is one function of the Python API with its arguments.

The flags of ``train`` come from ``TrainConfig``'s fields, those of ``run`` and of every
analysis verb (``attack``, ``tree``, ``explain filters``, ``experiment ...``) from their
functions' signatures and docstrings, so the CLI cannot drift from the API. A user mistake,
a bad flag included, prints one line, ``cnnlab: error: ...``, and exits with status 2.
Nothing heavy is imported until a verb runs: ``cnnlab --help`` does not load torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from cnnlab.analysis import Analysis, load_all
from cnnlab.analysis.registry import parse_args_doc
from cnnlab.config import TrainConfig, config_fields
from cnnlab.errors import CnnlabError, Interrupted

EXIT_USAGE = 2


class Verbs(argparse._SubParsersAction):
    """Sub-commands whose page (``cnnlab VERB --help``) opens with their one-line help when
    they give no longer description."""

    def add_parser(self, name, **kwargs):
        if not kwargs.get("description") and kwargs.get("help"):
            text = kwargs["help"]
            kwargs["description"] = text[:1].upper() + text[1:] + "."
        return super().add_parser(name, **kwargs)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one CnnlabError line, not a usage block."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", Verbs)

    def error(self, message: str):  # noqa: D102 - argparse's hook
        raise CnnlabError(f"{message} (see {self.prog} --help)")


def fraction_or_float(text: str) -> float:
    """Accept 8/255-style fractions as well as plain numbers."""
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number like 0.03 or 8/255, got {text!r}") from None


def lr_or_auto(text: str) -> float | str:
    """--lr: a number, or auto (the learning-rate range test's suggestion)."""
    return "auto" if text.strip().lower() == "auto" else fraction_or_float(text)


def comma_list(text: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'); '' -> () (none, where a list may be empty); ',' is a typo."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if text.strip() and not items:
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return items


def mapping(text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{width: 2}}', got {text!r}")
    return value


CONVERTERS: dict[str, Callable] = {"int": int, "float": fraction_or_float, "str": str,
                                   "tuple[str, ...]": comma_list, "dict": mapping,
                                   "dict | None": mapping}


def add_signature_args(p: argparse.ArgumentParser, fn: Callable,
                       skip: tuple[str, ...] = ("run", "log", "progress")) -> list[str]:
    """One flag per parameter of ``fn`` (type from its annotation, help from its docstring);
    defaults stay None so only what the user set is passed on. Returns the names."""
    helps = parse_args_doc(inspect.getdoc(fn) or "")
    names = []
    for name, param in inspect.signature(fn).parameters.items():
        if name in skip or param.default is inspect.Parameter.empty:
            continue
        flag, kind = "--" + name.replace("_", "-"), str(param.annotation)
        help_ = helps.get(name, "").rstrip(".").replace("%", "%%")  # argparse formats help with %
        if "default" not in help_:  # a docstring that words its default keeps its own words
            help_ += f" (default: {shown(param.default)})"
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            p.add_argument(flag, type=CONVERTERS[kind], default=None, help=help_,
                           metavar=name.upper())
        names.append(name)
    return names


def shown(value) -> str:
    """A default as a user would type it: 8/255 rather than 0.0313..., a,b for a tuple."""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value and abs(value * 255 - round(value * 255)) < 1e-9:
        return f"{round(value * 255)}/255"
    return str(value)


CLASSIFY_ONLY = ("label_noise", "permute_pixels", "tta", "groups", "balance", "dro_eta", "dp_epsilon",
                 "dp_delta", "dp_clip", "adv", "adv_eps", "adv_steps", "adv_alpha", "adv_eval",
                 "label_smoothing")
"""TrainConfig fields that only image classification reads (detect train does not show them)."""


def add_config_flags(p: argparse.ArgumentParser, defaults: dict | None = None,
                     skip: tuple[str, ...] = (), other: tuple[str, dict] | None = None) -> None:
    """One flag per TrainConfig field (but ``skip``), its help showing the verb's own default
    (``defaults`` over the field's) and, where it differs, the default under ``other``, a
    (condition, defaults) pair such as ("--head ddpm", DIFFUSION_DEFAULTS). Defaults stay None
    so we know what the user set."""
    for f in config_fields():
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else "{}"
        default = (defaults or {}).get(f.name, default)
        shown = f"default: {default}"
        if other is not None and other[1].get(f.name, default) != default:
            shown += f"; with {other[0]}: {other[1][f.name]}"
        help_ = f"{f.metadata.get('help', '')} ({shown})"
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            p.add_argument(flag, type=lr_or_auto if f.name == "lr" else CONVERTERS[f.type],
                           default=None, help=help_, metavar=f.name.upper())


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    d = (base or TrainConfig()).to_dict()
    for f in config_fields():
        value = getattr(args, f.name, None)
        if f.name == "lr" and value == "auto" and base is not None and base.lr_find:
            continue  # resuming a run that chose its lr: keep the lr it chose
        if value is not None:
            d[f.name] = value
    if getattr(args, "lr", None) is not None and args.lr != "auto":  # a number given: no range test
        d["lr_find"] = getattr(args, "lr_find", None) or False
    return TrainConfig.from_dict(d)


def given(args: argparse.Namespace, names: list[str]) -> dict:
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


# ---- verbs ---------------------------------------------------------------------------------

def cmd_run(args) -> None:
    from cnnlab.pipeline import main_job

    main_job(**given(args, args.names))


def cmd_analysis(args) -> None:
    from cnnlab.analysis import run_analysis
    from cnnlab.pipeline import main_config, main_run
    from cnnlab.report import render_report
    from cnnlab.run import load_run

    analysis: Analysis = args.analysis
    analysis.resolve(given(args, args.names))  # bad options stop before anything is trained
    if args.threads < 0:
        raise CnnlabError(f"--threads must be >= 0 (0: one per core), not {args.threads}")
    if args.run and args.train_on:
        raise CnnlabError(f"give a run folder or --train-on {args.train_on}, not both (--train-on "
                          "trains the run to analyse)")
    if args.run:
        run = load_run(args.run)
    elif args.train_on:
        run = main_run(main_config(args.train_on, 0, 0, "", args.out_dir, "~/.cache/cnnlab", 0),
                       print, True)
    else:
        raise CnnlabError(f"give a run folder (cnnlab {' '.join(analysis.verb)} RUN) or "
                          f"--train-on DATASET to train one first")
    result = run_analysis(run, analysis.name, threads=args.threads, **given(args, args.names))
    print(f"wrote {run.path / 'analysis' / result['stem']}.json ({result['seconds']:.1f} s)")
    print(f"report: {render_report(run)}")


def cmd_train(args) -> None:
    from cnnlab.pipeline import train

    train_or_resume(args, train)


def train_or_resume(args, train_fn: Callable, recipe: Callable[[dict], dict] | None = None) -> None:
    """``--resume RUN``: the run's saved config with the flags given on top; else the verb's
    starting ``recipe`` (a function of ``--config``'s settings, {} without one), the file's
    settings on top of it, and the flags on top of both. Then ``train_fn(cfg[, resume=True])``."""
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise CnnlabError(f"nothing to resume: {run_dir} has no config.yaml")
        cfg = config_from_args(args, TrainConfig.load(run_dir / "config.yaml"))
        cfg.name, cfg.out_dir = run_dir.name, str(run_dir.parent)
        train_fn(cfg, resume=True)
        return
    base = (TrainConfig.load(args.config, recipe) if args.config else
            TrainConfig(**recipe({})) if recipe else None)
    cfg = config_from_args(args, base)
    if (cfg.freeze_epochs or cfg.body_lr_scale != 1.0) and not (cfg.init_from or cfg.pretrained):
        raise CnnlabError("--freeze-epochs and --body-lr-scale treat the body as learnt already: add "
                          "--init-from RUN or --pretrained FILE, or leave them out (a random body "
                          "would stay random)")
    train_fn(cfg)


def cmd_lr_find(args) -> None:
    from cnnlab.data import data_for
    from cnnlab.io import atomic_write_json
    from cnnlab.models import check_model_name
    from cnnlab.tasks.runs import prepare_task_data
    from cnnlab.training.lr_find import figure, lr_range_test
    from cnnlab.viz.plots import plt

    out = Path(args.out)
    if out.suffix.lower() != ".png" or not out.parent.is_dir():
        raise CnnlabError(f"--out {out}: give a .png path in an existing folder")
    cfg = config_from_args(args, TrainConfig.load(args.config) if args.config else None)
    check_model_name(cfg.model)
    data = prepare_task_data(cfg.task, data_for(cfg))
    res = lr_range_test(cfg, data, args.start, args.end, args.steps)
    fig = figure(res, f"Learning-rate range test: {cfg.model} on {cfg.dataset}")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    atomic_write_json(out.with_suffix(".json"), {"config": cfg.to_dict(), **res})
    print(f"{len(res['lrs'])} steps; lowest smoothed loss at lr {res['lowest_loss_at']:.3g}; steepest "
          f"fall at {res['steepest']:.3g}; a decade below the minimum {res['minimum_over_10']:.3g}")
    print(f"suggested lr: {res['suggestion']:.3g} (cnnlab train ... --lr {res['suggestion']:.3g}, "
          f"or --lr auto); plot: {out}")


def check_json_out(out: str | None) -> None:
    """An --out .json file that can be written, checked before the work it records."""
    from cnnlab.predict_files import check_output

    if out:
        check_output(out, (".json",), "the results are written as JSON; give a .json file name",
                     "results.json")


def cmd_evaluate(args) -> None:
    from cnnlab.run import load_run

    check_json_out(args.out)
    run = load_run(args.run)
    report = run.evaluate(args.dataset, args.split, args.which, args.data_dir)
    print(f"{args.dataset or run.config.dataset} ({args.split}, {report['n']} images): "
          f"accuracy {100 * report['accuracy']:.2f}%  macro F1 {report['macro_f1']:.3f}  "
          f"ECE {report['ece']:.3f}  loss {report['loss']:.4f}")
    for p in report["most_confused"][:5]:
        print(f"  confused: {p['a']} <-> {p['b']}: {p['total']}")
    for words in report["warnings"]:
        print(f"cnnlab: warning: {words}", file=sys.stderr)
    if args.out:
        from cnnlab.io import atomic_write_json

        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")


def cmd_predict(args) -> None:
    from cnnlab.predict_files import check_output, predict_paths, write_predictions

    if args.out:
        check_output(args.out)
    rows, skipped = predict_paths(args.run, args.path, args.which, args.top, strict=args.strict)
    if args.out:
        write_predictions(rows, args.out)
        print(f"wrote {len(rows)} predictions to {args.out}")
    else:
        for r in rows:
            others = "; ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"][1:])
            print(f"{r['path']}\t{r['predicted']}\t{r['confidence']:.3f}" + (f"\t{others}" if others else ""))
    for path, reason in skipped:
        print(f"cnnlab: skipped {path}: {reason}", file=sys.stderr)


def cmd_export(args) -> None:
    from cnnlab.export import export_onnx
    from cnnlab.run import load_run

    export_onnx(load_run(args.run), args.out, args.quantize or "")


def cmd_serve(args) -> None:
    import uvicorn

    from cnnlab.serve.app import create_app

    if not Path(args.runs).is_dir():
        raise CnnlabError(f"--runs {args.runs} is not a folder; train a run first (cnnlab run) or "
                          f"point --runs at the folder that holds your runs")
    if (Path(args.runs) / "config.yaml").is_file():
        raise CnnlabError(f"--runs {args.runs} is one run's folder; give the folder that holds runs "
                          f"(--runs {Path(args.runs).resolve().parent})")
    if not 0 < args.port < 65536:
        raise CnnlabError(f"--port must be between 1 and 65535, not {args.port}")
    if not 0 < args.max_upload_mb <= 1024:
        raise CnnlabError(f"--max-upload-mb must be above 0 and at most 1024, not {args.max_upload_mb:g}")
    _check_can_listen(args.host, args.port)
    where = ("this machine only" if args.host in ("127.0.0.1", "localhost") else
             f"EVERY machine that can reach {args.host} (no login, no encryption)")
    print(f"cnnlab serve: http://{args.host}:{args.port}/ for {where}; API docs at /docs")
    # on this machine only, requests must name it (a web page's DNS rebinding names its own host)
    hosts = ["127.0.0.1", "localhost", "[::1]"] if args.host in ("127.0.0.1", "localhost") else None
    app = create_app(args.runs, int(args.max_upload_mb * 1024 * 1024), batching=not args.no_batching,
                     hosts=hosts)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _check_can_listen(host: str, port: int) -> None:
    """One line, before the app starts, when the address is taken or not this machine's
    (uvicorn would print its own error and exit 3)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise CnnlabError(f"--host {host} is not an address ({e.strerror or e}); give one of this "
                          "machine's, such as 127.0.0.1") from None
    try:
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise CnnlabError(f"cannot listen on {host}:{port} ({e.strerror or e}); another server may "
                          "hold the port (give another --port), or the address is not this "
                          "machine's (give another --host)") from None


def cmd_models(args) -> None:
    from cnnlab.models import create_model, describe, list_models, model_stats

    for flag, value, low, high in (("--channels", args.channels, 1, 64), ("--size", args.size, 8, 4096),
                                   ("--classes", args.classes, 2, 100_000)):
        if not low <= value <= high:
            raise CnnlabError(f"{flag} must be between {low} and {high:,}, not {value}")
    shape = (args.channels, args.size, args.size)
    print(f"input {shape[0]}x{shape[1]}x{shape[2]}, {args.classes} classes")
    print(f"{'model':<27} {'parameters':>12} {'first layer':>12} {'MACs/image':>14}  description")
    for name in list_models():
        try:
            m = create_model(name, num_classes=args.classes, in_channels=shape[0], image_size=shape[1])
            s = model_stats(m, shape)
        except (CnnlabError, RuntimeError):  # e.g. torchvision's AlexNet on 32x32: said, not fatal
            print(f"{name:<27} {'-':>12} {'-':>12} {'-':>14}  {describe(name)} (not at "
                  f"{shape[0]}x{shape[1]}x{shape[2]}: try --size 64)")
            continue
        note = describe(name)
        if name == "lenet5":
            note += f"; {s.params:,} parameters (lecture: about 60k)"
        print(f"{name:<27} {s.params:>12,} {s.first_layer_params:>12,} {s.macs:>14,}  {note}")


def cmd_datasets(args) -> None:
    from cnnlab.data import DESCRIPTIONS, list_datasets

    for name in list_datasets():
        print(f"{name:<14} {DESCRIPTIONS.get(name, '')}")


def cmd_report(args) -> None:
    from cnnlab.report import folder_size, render_report
    from cnnlab.run import load_run

    run = load_run(args.run)
    print(f"report: {render_report(run)} (run folder {folder_size(run.path)})")


# ---- parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from cnnlab import __version__

    parser = Parser(prog="cnnlab", description="Image recognition with CNNs, end to end, and "
                    "the questions of trust that come with it.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}",
                        help="print cnnlab's version and exit")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = sub.add_parser("run", help="the main job: the whole lecture on one dataset, one report")
    p.set_defaults(fn=cmd_run, names=add_signature_args(p, _main_job()))

    p = sub.add_parser("train", help="train one model; --resume RUN continues an interrupted run")
    p.add_argument("--config", help="YAML recipe (configs/*.yaml); flags override it")
    p.add_argument("--resume", metavar="RUN", help="continue this run folder from its checkpoint")
    add_config_flags(p)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser(
        "lr-find", help="the learning-rate range test: loss against learning rate, a suggestion",
        description="Train a fresh model (the one `cnnlab train` with the same flags would train) "
        "for --steps steps while the learning rate grows exponentially from --start to --end, "
        "then plot the loss against it and suggest a learning rate (Smith 2017; fastai's "
        "lr_find). `cnnlab train --lr auto` runs the same test first and trains with its "
        "suggestion. Takes seconds to a minute on 2 CPU cores.")
    p.add_argument("--config", help="YAML recipe (configs/*.yaml); flags override it")
    p.add_argument("--steps", type=int, default=100, help="training steps of the test (default: 100)")
    p.add_argument("--start", type=float, default=1e-6, help="first learning rate (default: 1e-6)")
    p.add_argument("--end", type=float, default=10.0, help="last learning rate (default: 10)")
    p.add_argument("--out", default="lr_find.png",
                   help="the plot (PNG); its numbers go beside it as .json (default: lr_find.png)")
    add_config_flags(p, skip=("lr", "lr_find"))
    p.set_defaults(fn=cmd_lr_find)
    add_analysis_verbs(sub)
    add_run_verbs(sub)
    add_detect_verbs(sub)
    add_generate_verbs(sub)
    add_video_verbs(sub)
    return parser


def _main_job():
    from cnnlab.pipeline import main_job  # light: pipeline imports torch only when it runs

    return main_job


def brief(sentence: str) -> str:
    """A summary as the verb lists word theirs: a fragment ("grow the tree ...", no full
    stop); an acronym keeps its capitals."""
    if len(sentence) > 1 and sentence[1].islower():
        sentence = sentence[0].lower() + sentence[1:]
    return sentence.rstrip(".")


def add_analysis_verbs(sub) -> None:
    """One verb per analysis; analyses that share a first word become its sub-verbs."""
    groups: dict[str, argparse._SubParsersAction] = {}
    for a in load_all():
        about = a.summary() + (f" With its defaults: {a.takes}." if a.takes else "")
        if len(a.verb) == 1:
            p = sub.add_parser(a.verb[0], help=brief(a.summary()), description=about)
        else:
            if a.verb[0] not in groups:
                words = ", ".join(b.verb[1] for b in load_all() if b.verb[0] == a.verb[0])
                more = (" Several audits in one call, with their default options: cnnlab audit "
                        "RUN --bias --energy --privacy --provenance." if a.verb[0] == "audit" else "")
                usage = (f"cnnlab audit {{{words.replace(', ', ',')}}} ... | cnnlab audit RUN "
                         "[--bias] [--energy] [--privacy] [--provenance]" if a.verb[0] == "audit" else None)
                group = sub.add_parser(a.verb[0], help=f"{a.verb[0]}: {words}", usage=usage,
                                       description=f"{a.verb[0].capitalize()}: {words}.{more}")
                groups[a.verb[0]] = group.add_subparsers(dest="which", required=True, metavar="WHAT")
            p = groups[a.verb[0]].add_parser(a.verb[1], help=brief(a.summary()), description=about)
        p.add_argument("run", nargs="?", help="the run folder to analyse")
        p.add_argument("--train-on", metavar="DATASET",
                       help="without RUN: train the main CNN on DATASET first, as cnnlab run does")
        p.add_argument("--out-dir", default="runs", help="where --train-on writes its run")
        p.add_argument("--threads", type=int, default=1, help="CPU threads for torch, here and in "
                       "the analysis's own trainings (0: one per core; default: 1, see cnnlab "
                       "train --help)")
        p.set_defaults(fn=cmd_analysis, analysis=a, names=add_signature_args(p, a.compute))


def add_run_verbs(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a saved run on a dataset")
    p.add_argument("run", help="the run folder to evaluate")
    p.add_argument("--dataset", help="dataset name (default: the run's own)")
    p.add_argument("--split", choices=["test", "train"], default="test",
                   help="the run's evaluation images (test: its test split or hold-out) or its "
                        "training images (default: test)")
    p.add_argument("--which", choices=["last", "best"], default="last",
                   help="the weights after the last epoch or those of the best validation epoch "
                        "(default: last)")
    p.add_argument("--data-dir", default=None,
                   help="where downloaded datasets are cached (default: the run's own setting)")
    p.add_argument("--out", help="write the full metrics as JSON here")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("predict", help="classify an image file or a folder of images")
    p.add_argument("run", help="a run folder, or a model.onnx that cnnlab export wrote")
    p.add_argument("path", help="an image file or a folder of images")
    p.add_argument("--out", help="write predictions to this .csv or .json file")
    p.add_argument("--which", choices=["last", "best"], default="last",
                   help="the weights after the last epoch or those of the best validation epoch "
                        "(default: last)")
    p.add_argument("--top", type=int, default=3, help="how many classes to list per image (on screen: "
                   "the most likely, its probability, then the others with theirs)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first file that is not a readable image (default: skip it "
                        "and say so; exit 2 only if no file could be read)")
    p.set_defaults(fn=cmd_predict)

    add_ship_verbs(sub)

    p = sub.add_parser("models", help="list models with parameters and MACs per image")
    p.add_argument("--channels", type=int, default=3, help="input channels (default: 3, RGB)")
    p.add_argument("--size", type=int, default=32, help="input side in pixels (default: 32)")
    p.add_argument("--classes", type=int, default=10, help="output classes (default: 10)")
    p.set_defaults(fn=cmd_models)

    p = sub.add_parser("datasets", help="list datasets")
    p.set_defaults(fn=cmd_datasets)

    p = sub.add_parser("report", help="render a run's report.html again")
    p.add_argument("run", help="the run folder whose report to render")
    p.set_defaults(fn=cmd_report)


DETECT_DEFAULTS = {"task": "detect", "dataset": "scenes", "model": "resnet20", "epochs": 12,
                   "batch_size": 32, "optimizer": "adamw", "lr": 0.003, "weight_decay": 0.0005}
"""What ``cnnlab detect train`` starts from (flags and --config override it): a recipe that
trains a ResNet-20 detector on scenes (see benchmarks/RESULTS.md)."""


def detect_recipe(settings: dict) -> dict:
    """``cnnlab detect train``'s starting recipe, under a --config file's ``settings``: a file
    for another task is refused (it would train that task under this verb's name)."""
    from cnnlab.dense_files import DENSE

    task = settings.get("task", "detect")
    if task not in DENSE:
        raise CnnlabError(f"the config file sets task: {task}, but cnnlab detect train trains "
                          f"{', '.join(DENSE)}; use cnnlab train (classify) or cnnlab generate train, "
                          "or change the file's task")
    return DETECT_DEFAULTS


def cmd_detect_train(args) -> None:
    from cnnlab.pipeline import train

    train_or_resume(args, train, detect_recipe)


def cmd_detect_eval(args) -> None:
    from cnnlab.dense_files import evaluate_run

    check_json_out(args.out)
    result = evaluate_run(args.run, args.dataset, args.detector, args.resamples)
    print("  ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)))
    if "score_ci" in result:
        ci = result["score_ci"]
        unit = "objects" if result.get("n_objects") is not None else "images"
        print(f"  {100 * ci['level']:.0f}% CI of the score {ci['low']:.4f} to {ci['high']:.4f} "
              f"(bootstrap over the {unit}, {args.resamples} resamples)")
    per_class = result.get("per_class", {})
    for name, v in per_class.items():
        print(f"  {name}: {'n/a' if v is None else f'{v:.4f}'}")
    if args.out:
        from cnnlab.io import atomic_write_json

        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")


def cmd_detect_predict(args) -> None:
    from cnnlab.dense_files import predict_files

    out = args.out or str(Path(args.run) / "predicted")
    summary = predict_files(args.run, args.path, out, args.detector, args.threshold, args.coco)
    for f, reason in summary["skipped"]:
        print(f"cnnlab: skipped {f}: {reason}", file=sys.stderr)
    print(f"wrote {summary['images']} annotated images and predictions.json "
          f"({summary['boxes']} boxes) to {summary['out']}"
          + (f"; skipped {len(summary['skipped'])} unreadable file(s)" if summary["skipped"] else ""))


def cmd_track(args) -> None:
    from cnnlab.video_files import track_file

    done = track_file(args.run, args.video, args.out, byte=not args.sort, threshold=args.threshold,
                      agnostic=not args.per_class_nms)
    print(f"tracked {done['tracks']} objects over {done['frames']} frames: wrote {done['out']} and "
          f"{done['mot']} (MOTChallenge rows)")
    if not done["tracks"]:
        print(f"cnnlab: no object was tracked: the detector found nothing scoring >= "
              f"{args.threshold} (try a lower --threshold, or check that the video shows what "
              f"the detector was trained on)", file=sys.stderr)


def cmd_action(args) -> None:
    from cnnlab.video_files import action_file

    found = action_file(args.run, args.video)
    if found["frames"] < found["frames_read"]:  # each frame repeated: motion is what the model reads
        print(f"cnnlab: note: the clip has {found['frames']} frames and the model reads "
              f"{found['frames_read']}, so frames were repeated; give a longer clip for a surer "
              f"answer", file=sys.stderr)
    print(f"{found['action']}\t{found['probability']:.3f}")
    others = ", ".join(f"{name} {p:.3f}" for name, p in found["top"][1:])
    if others:
        print(f"  runners-up (other guesses for the same clip): {others}")


def cmd_generate_train(args) -> None:
    from cnnlab.config import generate_defaults
    from cnnlab.generation import train_generator

    # the recipe of the head asked for: by the flag, else by the --config file, else the default
    train_or_resume(args, train_generator,
                    lambda settings: generate_defaults(args.head or settings.get("head")))


def cmd_generate_sample(args) -> None:
    from cnnlab.generation import sample_run

    out = sample_run(args.run, args.n, args.out, args.seed, args.label)
    print(f"wrote {args.n} generated images to {out}")


def cmd_generate_eval(args) -> None:
    from cnnlab.generation import evaluate_generator

    check_json_out(args.out)
    result = evaluate_generator(args.run, args.n, args.fid_weights)
    for space in ("domain", "inception"):
        r = result if space == "domain" else result.get("inception")
        if r is None:
            continue
        g, f = r["generated"], r["floor"]
        print(f"{space} FID {g['fid']:.3f} (real-data floor {f['fid']:.3f})  KID {g['kid']:.4f} "
              f"(floor {f['kid']:.4f})  on {r['n']} images" + ("" if space == "inception" else
              f"  precision {g['precision']:.3f}  recall {g['recall']:.3f}  density "
              f"{g['density']:.3f}  coverage {g['coverage']:.3f}"))
    labels, copies = result["labels"], result["copies"]["features"]
    print(f"classes produced {100 * labels['classes_covered']:.0f}%  label entropy "
          f"{labels['entropy']:.2f} bits (real {labels['real_entropy']:.2f})"
          + ("  COLLAPSED" if labels["collapsed"] else ""))
    if "label_agreement" in result:
        print(f"the judge reads the class asked for in {100 * result['label_agreement']:.1f}% of "
              f"{result['label_agreement_n']} samples (chance {100 / len(labels['real']):.0f}%)")
    print(f"near-copies of training images {100 * copies['copy_share']:.1f}% (95% CI "
          f"{100 * copies['ci'][0]:.1f}-{100 * copies['ci'][1]:.1f}; about "
          f"{100 * copies['expected']:.0f}% when nothing is copied)")
    if args.out:
        from cnnlab.io import atomic_write_json

        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")


def cmd_generate_detect(args) -> None:
    from cnnlab.generation import detect_generated

    result = detect_generated(args.run, args.unseen, args.n, args.epochs)
    print(result["words"])
    print(f"wrote {Path(args.run) / 'detector.json'} (cnnlab serve plays \"Which is real?\" with it)")


def add_generate_verbs(sub) -> None:
    """cnnlab generate train|sample|eval|detect: GANs and diffusion models."""
    from cnnlab.config import DIFFUSION_DEFAULTS, GENERATE_DEFAULTS

    group = sub.add_parser("generate", help="beyond supervised learning: train GANs (or diffusion "
                           "models), sample them, measure them (domain FID, diversity, copies)")
    verbs = group.add_subparsers(dest="which", required=True, metavar="WHAT")
    p = verbs.add_parser("train", help="train a GAN (default: DCGAN on digits; --head conditional) "
                         "or a diffusion model (--head ddpm or ddpm-conditional)")
    p.add_argument("--config", help="YAML recipe; flags override it")
    p.add_argument("--resume", metavar="RUN", help="continue this run folder from its checkpoint")
    add_config_flags(p, GENERATE_DEFAULTS,
                     skip=CLASSIFY_ONLY + ("init_from", "pretrained", "freeze_epochs", "body_lr_scale",
                                           "lookahead", "lr_find"),
                     other=("--head ddpm or ddpm-conditional",  # (R1 is refused there)
                            {k: v for k, v in DIFFUSION_DEFAULTS.items()
                             if k != "head" and not k.startswith("r1_")}))
    p.set_defaults(fn=cmd_generate_train)
    p = verbs.add_parser("sample", help="draw images from a generator run: a PNG grid or an npz")
    p.add_argument("run", help="a run folder that cnnlab generate train wrote")
    p.add_argument("-n", type=int, default=64, help="how many images")
    p.add_argument("--out", default="samples.png", help=".png (a grid) or .npz (uint8 arrays x)")
    p.add_argument("--seed", type=int, default=0, help="the noise's seed")
    p.add_argument("--label", default="", help="a conditional generator: this class only")
    p.set_defaults(fn=cmd_generate_sample)
    p = verbs.add_parser("eval", help="domain FID and KID beside the real-data floor, precision, "
                         "recall, classes produced, near-copies")
    p.add_argument("run", help="a run folder that cnnlab generate train wrote")
    p.add_argument("-n", type=int, default=0, help="samples scored (0: as many as the evaluation images)")
    p.add_argument("--fid-weights", default="", help="torch-fidelity's Inception weights file "
                   "(pt_inception-2015-12-05-6726825d.pth), placed by you: adds the published FID")
    p.add_argument("--out", help="write the measures as JSON here")
    p.set_defaults(fn=cmd_generate_eval)
    p = verbs.add_parser("detect", help="train a CNN that tells the run's images from real ones, "
                         "score it on held-out images (and on a generator it never saw)")
    p.add_argument("run", help="a run folder that cnnlab generate train wrote")
    p.add_argument("--unseen", default="", help="another generator run on the same data, which "
                   "the detector never sees in training: does detection carry over?")
    p.add_argument("-n", type=int, default=2000, help="generated images to train on (as many real ones)")
    p.add_argument("--epochs", type=int, default=8, help="epochs of the detector (LeNet-5)")
    p.set_defaults(fn=cmd_generate_detect)


def add_video_verbs(sub) -> None:
    """cnnlab track and cnnlab action: users' videos."""
    p = sub.add_parser("track", help="track objects in a video with a detection run (ByteTrack)")
    p.add_argument("run", help="a run that cnnlab detect train wrote")
    p.add_argument("video", help="an MP4, a GIF or a folder of frames")
    p.add_argument("--out", default="tracked.gif", help="the drawn clip: .gif or .mp4 (MOT rows beside it)")
    p.add_argument("--sort", action="store_true", help="plain SORT: no second association of low scores")
    p.add_argument("--threshold", type=float, default=0.1, help="lowest detection score kept")
    p.add_argument("--per-class-nms", action="store_true",
                   help="keep overlapping boxes of different classes (a rider on a bicycle); by default "
                        "one box per place, whatever its class, as the video analysis measures it")
    p.set_defaults(fn=cmd_track)
    p = sub.add_parser("action", help="the action in a video, with an action run (--dataset videos)")
    p.add_argument("run", help="a run trained on --dataset videos")
    p.add_argument("video", help="an MP4, a GIF or a folder of frames")
    p.set_defaults(fn=cmd_action)


def add_detect_verbs(sub) -> None:
    """cnnlab detect train|eval|predict: detection, segmentation and pose (--task)."""
    group = sub.add_parser("detect", help="beyond classification: train, evaluate and run "
                           "detectors (--task segment: segmentation, --task pose: keypoints)")
    verbs = group.add_subparsers(dest="which", required=True, metavar="WHAT")
    p = verbs.add_parser("train", help="train a detector (default: ResNet-20 on scenes)")
    p.add_argument("--config", help="YAML recipe; flags override it")
    p.add_argument("--resume", metavar="RUN", help="continue this run folder from its checkpoint")
    add_config_flags(p, DETECT_DEFAULTS, skip=CLASSIFY_ONLY)
    p.set_defaults(fn=cmd_detect_train)
    p = verbs.add_parser("eval", help="mAP (detect), mIoU (segment) or PCK and keypoint AP (pose)")
    p.add_argument("run", help="a run folder that cnnlab detect train wrote")
    p.add_argument("--dataset", help="annotated data (scenes, yolo:PATH, coco:PATH, voc:PATH; "
                   "default: the run's own evaluation split)")
    p.add_argument("--detector", default="", help="pose: also score keypoints on the boxes this "
                   "detection run finds (top-down from detected boxes)")
    p.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of the score's "
                   "interval: mAP or mIoU over the images (each a whole evaluation for mAP), PCK over "
                   "the objects (0: no interval)")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.set_defaults(fn=cmd_detect_eval)
    p = verbs.add_parser("predict", help="annotated images and COCO-format predictions.json")
    p.add_argument("run", help="a run folder that cnnlab detect train wrote")
    p.add_argument("path", help="an image file or a folder of images")
    p.add_argument("--out", default="", help="output folder (default: RUN/predicted)")
    p.add_argument("--detector", default="", help="pose: the detection run that finds the boxes")
    p.add_argument("--threshold", type=float, default=0.3, help="lowest score drawn and written")
    p.add_argument("--coco", default="", help="the COCO file the images come from: predictions.json "
                   "takes its image and category ids, so COCO's evaluation can score it against the file")
    p.set_defaults(fn=cmd_detect_predict)


def add_ship_verbs(sub) -> None:
    """export and serve: a model out of cnnlab, and the runs in a browser."""
    p = sub.add_parser("export", help="write the run's model as one ONNX file (normalization, "
                       "temperature and class names inside), checked against PyTorch")
    p.add_argument("run", help="the run folder to export")
    p.add_argument("--format", choices=["onnx"], default="onnx",
                   help="the file format (default: onnx, the only one)")
    p.add_argument("--out", default="", help="the .onnx file (default: RUN/export/model.onnx)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="also write a statically quantized int8 copy (ONNX Runtime)")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("serve", help="the local web app: runs, reports, predictions, JSON API")
    p.add_argument("--runs", default="runs", help="the folder that holds run folders")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload accepted")
    p.add_argument("--no-batching", action="store_true",
                   help="one model call per request (default: concurrent requests share calls)")
    p.set_defaults(fn=cmd_serve)


def combined_audit(argv: list[str]) -> argparse.Namespace:
    """``cnnlab audit RUN --bias --energy --privacy --provenance``: several audits in one call
    (each is also ``cnnlab audit NAME RUN`` with its own options)."""
    names = [a.verb[1] for a in load_all() if a.verb[0] == "audit"]
    p = Parser(prog="cnnlab audit", description="run several audits of a run with their "
               "default options, then render its report once")
    p.add_argument("run", help="the run folder to audit")
    for name in names:
        p.add_argument(f"--{name}", action="store_true", help=f"run cnnlab audit {name}")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch, as every verb takes "
                   "(the privacy audit trains models)")
    args = p.parse_args(argv)
    chosen = [n for n in names if getattr(args, n)]
    if not chosen:
        p.error(f"choose at least one of {', '.join('--' + n for n in names)}")
    if args.threads < 0:
        p.error(f"--threads must be >= 0 (0: one per core), not {args.threads}")
    return argparse.Namespace(fn=cmd_audits, run=args.run, chosen=chosen, verb="audit",
                              threads=args.threads)


def cmd_audits(args) -> None:
    from cnnlab.analysis import run_analysis
    from cnnlab.report import render_report
    from cnnlab.run import load_run

    run = load_run(args.run)
    for name in args.chosen:
        result = run_analysis(run, name, threads=args.threads)
        print(f"wrote {run.path / 'analysis' / result['stem']}.json ({result['seconds']:.1f} s)")
    print(f"report: {render_report(run)}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        subverbs = {a.verb[1] for a in load_all() if a.verb[0] == "audit"}
        if len(argv) > 1 and argv[0] == "audit" and argv[1] not in subverbs and argv[1][:1] != "-":
            args = combined_audit(argv[1:])
        else:
            args = build_parser().parse_args(argv)
        if args.verb == "train":
            from cnnlab.training.distributed import init_from_env

            init_from_env()  # under torchrun: join the process group
        args.fn(args)
    except CnnlabError as e:
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a folder that cannot be written, a file that is a folder, ...
        where = f" {e.filename}" if e.filename else ""
        print(f"cnnlab: error: cannot use{where}: {e.strerror or e}; choose a path you can "
              f"read and write", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as e:
        print(f"\ncnnlab: interrupted; continue with: {e.resume_with}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ncnnlab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
