"""The ``cnnlab`` command: each verb is one function of the Python API with its arguments.

A user mistake prints one line, ``cnnlab: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml

from cnnlab.config import TrainConfig, config_fields
from cnnlab.errors import CnnlabError

EXIT_USAGE = 2


def _parse_mapping(text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{width: 2}}', got {text!r}")
    return value


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults stay None so we know what the user set."""
    types = {"int": int, "float": _fraction_or_float, "str": str, "dict": _parse_mapping}
    for f in config_fields():
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else "{}"
        help_ = f"{f.metadata.get('help', '')} (default: {default})"
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            p.add_argument(flag, type=types[f.type], default=None, help=help_,
                           metavar=f.name.upper())


def _fraction_or_float(text: str) -> float:
    """Accept 8/255-style fractions as well as plain numbers."""
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    d = (base or TrainConfig()).to_dict()
    for f in config_fields():
        value = getattr(args, f.name, None)
        if value is not None:
            d[f.name] = value
    return TrainConfig.from_dict(d)


# ---- verbs ---------------------------------------------------------------------------------

def cmd_run(args) -> None:
    from cnnlab.pipeline import run_lecture

    run_lecture(args.dataset, args.epochs, args.seed, args.name or "", args.out_dir, args.data_dir,
                args.limit_train, args.seeds)


def _run_or_main(args, prefix: str):
    """The run named by --run, or a new main run on --dataset (as cnnlab run trains it)."""
    from cnnlab.pipeline import main_run
    from cnnlab.run import load_run

    if args.run:
        return load_run(args.run)
    return main_run(args.dataset, args.epochs, args.seed, "", args.out_dir, args.data_dir,
                    args.limit_train, print, True, prefix=prefix)


def cmd_experiment(args) -> None:
    from cnnlab.analysis.experiments import mlp_vs_cnn, permutation_test
    from cnnlab.report import render_report

    run = _run_or_main(args, args.which)
    if args.which == "mlp-vs-cnn":
        mlp_vs_cnn(run, models=tuple(args.models.split(",")))
    else:
        permutation_test(run, cnn=args.cnn, seeds=tuple(range(args.seeds)))
    print(f"report: {render_report(run)}")


def cmd_explain(args) -> None:
    from cnnlab.explain.filters import explain_filters
    from cnnlab.report import render_report
    from cnnlab.run import load_run

    run = load_run(args.run)
    explain_filters(run, args.index, args.image)
    print(f"report: {render_report(run)}")


def cmd_tree(args) -> None:
    from cnnlab.analysis.tree import build_tree
    from cnnlab.report import render_report
    from cnnlab.run import load_run

    run = load_run(args.run)
    build_tree(run, args.top_k, args.threshold, args.max_node_size, args.epochs)
    print(f"report: {render_report(run)}")


def cmd_attack(args) -> None:
    from cnnlab.report import render_report
    from cnnlab.robustness.analysis import robustness_analysis
    from cnnlab.run import load_run

    run = load_run(args.run)
    attacks = tuple(a.strip() for a in args.attack.split(","))
    curve = tuple(a.strip() for a in args.curve.split(",") if a.strip())
    robustness_analysis(run, attacks, args.eps, args.n, curve, not args.no_corruptions)
    print(f"report: {render_report(run)}")


def cmd_train(args) -> None:
    from cnnlab.run import train

    if args.resume:
        run_dir = Path(args.resume)
        saved = TrainConfig.load(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() \
            else None
        if saved is None:
            raise CnnlabError(f"nothing to resume: {run_dir} has no config.yaml")
        cfg = config_from_args(args, saved)
        cfg.name, cfg.out_dir = run_dir.name, str(run_dir.parent)
        train(cfg, resume=True)
        return
    base = TrainConfig.load(args.config) if args.config else None
    train(config_from_args(args, base))


def cmd_evaluate(args) -> None:
    from cnnlab.run import load_run

    run = load_run(args.run)
    report = run.evaluate(args.dataset, args.split, args.which, args.data_dir)
    print(f"{args.dataset or run.config.dataset} ({args.split}, {report['n']} images): "
          f"accuracy {100 * report['accuracy']:.2f}%  macro F1 {report['macro_f1']:.3f}  "
          f"ECE {report['ece']:.3f}  loss {report['loss']:.4f}")
    for p in report["most_confused"][:5]:
        print(f"  confused: {p['a']} <-> {p['b']}: {p['total']}")
    if args.out:
        from cnnlab.io import atomic_write_json

        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")


def cmd_predict(args) -> None:
    from cnnlab.predict_files import predict_paths, write_predictions

    rows = predict_paths(args.run, args.path, args.which, args.top)
    if args.out:
        write_predictions(rows, args.out)
        print(f"wrote {len(rows)} predictions to {args.out}")
    else:
        for r in rows:
            print(f"{r['path']}\t{r['predicted']}\t{r['confidence']:.3f}")


def cmd_models(args) -> None:
    from cnnlab.models import DESCRIPTIONS, create_model, list_models, model_stats

    shape = (args.channels, args.size, args.size)
    print(f"input {shape[0]}x{shape[1]}x{shape[2]}, {args.classes} classes")
    print(f"{'model':<10} {'parameters':>12} {'first layer':>12} {'MACs/image':>14}  description")
    for name in list_models():
        m = create_model(name, num_classes=args.classes, in_channels=shape[0], image_size=shape[1])
        s = model_stats(m, shape)
        note = DESCRIPTIONS.get(name, "")
        if name == "lenet5":
            note += f"; {s.params:,} parameters (lecture: about 60k)"
        print(f"{name:<10} {s.params:>12,} {s.first_layer_params:>12,} {s.macs:>14,}  {note}")


def cmd_datasets(args) -> None:
    from cnnlab.data import DESCRIPTIONS, list_datasets

    for name in list_datasets():
        print(f"{name:<14} {DESCRIPTIONS.get(name, '')}")


def cmd_report(args) -> None:
    from cnnlab.report import render_report
    from cnnlab.run import load_run

    print(f"report: {render_report(load_run(args.run))}")


# ---- parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab", description="Image recognition with CNNs, end to end, and the questions "
        "of trust that come with it.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("run", help="the main job: the whole lecture on one dataset, one report")
    p.add_argument("--dataset", default="digits", help="dataset name (default: digits, embedded)")
    p.add_argument("--epochs", type=int, default=0, help="epochs per model (0: the recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="run folder name under --out-dir")
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--data-dir", default="~/.cache/cnnlab")
    p.add_argument("--limit-train", type=int, default=0, help="use only N training images")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm of the permutation test")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("train", help="train one model; --resume RUN continues an interrupted run")
    p.add_argument("--config", help="YAML recipe (configs/*.yaml); flags override it")
    p.add_argument("--resume", metavar="RUN", help="continue this run folder from its checkpoint")
    add_config_flags(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("experiment", help="the lecture's experiments: mlp-vs-cnn, permutation")
    p.add_argument("which", choices=["mlp-vs-cnn", "permutation"])
    p.add_argument("--run", help="add the experiment to this run (default: train a new main run)")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--epochs", type=int, default=0, help="epochs per model (0: the recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=3, help="permutation: seeds per arm")
    p.add_argument("--models", default="mlp,lenet5,resnet20", help="mlp-vs-cnn: models to compare")
    p.add_argument("--cnn", default="lenet5", help="permutation: the CNN to test")
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--data-dir", default="~/.cache/cnnlab")
    p.add_argument("--limit-train", type=int, default=0)
    p.set_defaults(fn=cmd_experiment)

    p = sub.add_parser("explain", help="explanations of a run's model: filters")
    p.add_argument("what", choices=["filters"])
    p.add_argument("run")
    p.add_argument("--index", type=int, default=0, help="which evaluation image to show")
    p.add_argument("--image", help="an image file to show instead")
    p.set_defaults(fn=cmd_explain)

    p = sub.add_parser("tree", help="confusion sets and a CNN tree grown from a run's model")
    p.add_argument("run")
    p.add_argument("--top-k", type=int, default=2, help="confusion sets from the top-k predictions")
    p.add_argument("--threshold", type=float, default=0.1, help="minimum confusion frequency")
    p.add_argument("--max-node-size", type=int, default=4, help="most classes per node")
    p.add_argument("--epochs", type=int, default=0, help="node fine-tuning epochs (0: a quarter)")
    p.set_defaults(fn=cmd_tree)

    p = sub.add_parser("attack", help="adversarial attacks, robustness curve and corruptions")
    p.add_argument("run")
    p.add_argument("--attack", default="fgsm,pgd,autoattack",
                   help="comma-separated: fgsm, pgd, pgd-l2, apgd-ce, apgd-dlr, autoattack, square, "
                        "deepfool (robust = every one fails)")
    p.add_argument("--eps", type=_fraction_or_float, default=8 / 255, help="radius, e.g. 8/255")
    p.add_argument("--n", type=int, default=1000, help="evaluation images to attack")
    p.add_argument("--curve", default="fgsm,pgd", help="attacks for the accuracy-vs-eps curve")
    p.add_argument("--no-corruptions", action="store_true", help="skip the common corruptions")
    p.set_defaults(fn=cmd_attack)

    p = sub.add_parser("evaluate", help="metrics of a saved run on a dataset")
    p.add_argument("run")
    p.add_argument("--dataset", help="dataset name (default: the run's own)")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--which", choices=["last", "best"], default="last", help="which weights")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", help="write the full metrics as JSON here")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("predict", help="classify an image file or a folder of images")
    p.add_argument("run")
    p.add_argument("path", help="an image file or a folder of images")
    p.add_argument("--out", help="write predictions to this .csv or .json file")
    p.add_argument("--which", choices=["last", "best"], default="last")
    p.add_argument("--top", type=int, default=3, help="how many classes to list per image")
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("models", help="list models with parameters and MACs per image")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.set_defaults(fn=cmd_models)

    p = sub.add_parser("datasets", help="list datasets")
    p.set_defaults(fn=cmd_datasets)

    p = sub.add_parser("report", help="render a run's report.html again")
    p.add_argument("run")
    p.set_defaults(fn=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "train":
            from cnnlab.train.distributed import init_from_env

            init_from_env()  # under torchrun: join the process group
        args.fn(args)
    except CnnlabError as e:
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ncnnlab: interrupted; a run continues with: cnnlab train --resume RUN_FOLDER",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
