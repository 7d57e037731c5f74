"""One validator for every number a user can give: each TrainConfig field and each analysis
option declares its interval, and NaN, inf and values outside it are one line, exit 2."""

import math

import pytest

from cnnlab.analysis import load_all
from cnnlab.cli import main
from cnnlab.config import TrainConfig, config_fields
from cnnlab.errors import CnnlabError

NUMBER_FIELDS = [f for f in config_fields() if f.type in ("int", "float")]
ANALYSIS_OPTIONS = [(a, name, str(p.annotation)) for a in load_all()
                    for name, p in a.options().items() if str(p.annotation) in ("int", "float")]


def outside(low, high, kind):
    step = 1 if kind == "int" else max(1e-9, abs(high - low) * 1e-3)
    values = [low - step, high + step] + ([] if kind == "int" else [math.nan, math.inf, -math.inf])
    return [int(v) if kind == "int" else v for v in values]


@pytest.mark.parametrize("f", NUMBER_FIELDS, ids=lambda f: f.name)
def test_every_number_field_declares_its_bounds_and_keeps_them(f):
    bounds = f.metadata["bounds"]
    assert bounds is not None, f"{f.name} declares no bounds"
    for value in bounds:  # at a bound: not refused for its range (other rules may still speak)
        value = int(value) if f.type == "int" else float(value)
        try:
            TrainConfig(**{f.name: value})
        except CnnlabError as e:
            assert "must be between" not in str(e) and "finite" not in str(e), e
    for value in outside(*bounds, f.type):
        with pytest.raises(CnnlabError, match=f"{f.name} must be"):
            TrainConfig(**{f.name: value})


@pytest.mark.parametrize("analysis,name,kind", ANALYSIS_OPTIONS,
                         ids=lambda x: x if isinstance(x, str) else getattr(x, "name", ""))
def test_every_number_option_of_every_analysis_declares_its_bounds_and_keeps_them(analysis, name, kind):
    bounds = analysis.bounds.get(name)
    assert bounds is not None, f"{analysis.name} --{name} declares no bounds"
    for value in bounds:
        analysis.resolve({name: int(value) if kind == "int" else float(value)})
    for value in outside(*bounds, kind):
        with pytest.raises(CnnlabError, match=f"--{name.replace('_', '-')} must be"):
            analysis.resolve({name: value})


@pytest.mark.parametrize("argv,words", [
    (["attack", "nowhere", "--eps", "nan"], "--eps must be a finite number"),
    (["attack", "nowhere", "--eps", "inf"], "--eps must be a finite number"),
    (["attack", "nowhere", "--eps", "0"], "--eps must be between"),
    (["attack", "nowhere", "--eps", "1/0"], "expected a number"),
    (["attack", "nowhere", "--attacks", ","], "expected names separated by commas, got ','"),
    (["calibrate", "nowhere", "--resamples", "99999999"], "--resamples must be between"),
    (["audit", "bias", "nowhere", "--show", "0"], "--show must be between"),
    (["train", "--momentum", "-1"], "momentum must be between"),
    (["train", "--optimizer", "adamw", "--momentum", "1.5"], "momentum must be between"),
    (["train", "--threads", "100000"], "threads must be between"),
    (["train", "--adv", "pgd", "--adv-eps", "-0.1"], "adv_eps must be between"),
    (["train", "--adv", "pgd", "--adv-steps", "0"], "adv_steps must be between"),
    (["train", "--eval-every", "0"], "eval_every must be between"),
    (["train", "--seed", "-1"], "seed must be between"),
    (["train", "--weight-decay", "-1"], "weight_decay must be between"),
    (["train", "--lr", "1e9"], "lr must be between"),
])
def test_hostile_numbers_are_one_line_and_exit_2(argv, words, capsys, tmp_path):
    assert main([*argv, "--out-dir", str(tmp_path)] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not any(tmp_path.iterdir())  # nothing written
