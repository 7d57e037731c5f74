"""Energy and carbon: nested phases, the carbon table, what a run records, the report."""

import json
import time

import pytest

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.cli import main
from cnnlab.energy import Meter, _energy_mix, carbon
from cnnlab.errors import CnnlabError

pytest.importorskip("codecarbon")
quiet = lambda s: None  # noqa: E731


def test_nested_phases_count_their_own_time_only():
    m = Meter()
    with m.phase("outer") as outer:
        time.sleep(0.2)
        with m.phase("inner") as inner:
            time.sleep(0.3)
    assert inner["seconds"] == pytest.approx(0.3, abs=0.1)
    assert outer["seconds"] == pytest.approx(0.2, abs=0.1)  # the inner 0.3 s is not in it
    assert m.totals["inner"]["kwh"] == pytest.approx(inner["kwh"]) and inner["kwh"] > 0
    before = m.snapshot()
    with m.phase("inner"):
        time.sleep(0.1)
    assert set(m.since(before)) == {"inner"}
    assert m.method()["kind"] in ("measured", "estimated")


def test_carbon_uses_the_countrys_grid_and_refuses_unknown_codes():
    table = _energy_mix()
    assert carbon(2.0, "fra")["g_co2eq"] == pytest.approx(2.0 * table["FRA"]["carbon_intensity"])
    assert carbon(1.0, "")["g_co2eq"] is None and "give --country" in carbon(1.0, "")["words"]
    with pytest.raises(CnnlabError, match="unknown country code 'XYZ'"):
        carbon(1.0, "XYZ")
    with pytest.raises(CnnlabError, match="country must be an ISO 3166 alpha-3 code"):
        cnnlab.TrainConfig(country="FR")


def test_a_run_records_its_energy_and_the_analysis_gathers_its_sub_runs(tmp_path):
    cfg = cnnlab.TrainConfig(model="mlp", epochs=2, limit_train=300, country="DEU",
                             out_dir=str(tmp_path), name="r")
    run = cnnlab.train(cfg, log=quiet, report=False)
    e = json.loads((run.path / "metrics.json").read_text())["energy"]
    assert set(e["phases"]) == {"training", "evaluation"}
    assert e["kwh"] == pytest.approx(sum(p["kwh"] for p in e["phases"].values()))
    seen = 2 * 2 * 128  # 2 epochs of 2 full batches of 128
    assert e["j_per_train_image"] == pytest.approx(3.6e6 * e["phases"]["training"]["kwh"] / seen)
    assert e["carbon"]["country"] == "DEU" and e["carbon"]["g_co2eq"] > 0
    sub = run.subrun(cnnlab.TrainConfig.from_dict(cfg.to_dict() | {"model": "lenet5"}), "other", quiet)
    res = run_analysis(run, "energy", log=quiet)
    assert [r["model"] for r in res["rows"]] == ["mlp", "lenet5"] and sub.metrics["energy"]["kwh"] > 0
    html = cnnlab.render_report(run).read_text()
    assert "Energy and carbon" in html and res["method"]["kind"] in html


def test_results_csv_says_energy_and_the_combined_audit_compares_a_folder(tmp_path):
    from cnnlab.cli import main

    for name, model in (("a", "mlp"), ("b", "lenet5")):
        cnnlab.train(cnnlab.TrainConfig(model=model, epochs=2, limit_train=300, out_dir=str(tmp_path),
                                        name=name), log=quiet, report=False)
    header, *rows = (tmp_path / "a" / "results.csv").read_text().splitlines()
    assert header.endswith("energy_kwh,energy")
    kwh = [float(r.split(",")[-2]) for r in rows]
    assert 0 < kwh[0] < kwh[1] and rows[-1].split(",")[-1] in ("measured", "estimated")
    # --threads as every verb takes it (probing: the combined form refused it)
    assert main(["audit", str(tmp_path / "a"), "--energy", "--provenance", "--threads", "1"]) == 0
    assert (tmp_path / "a" / "analysis" / "energy.json").is_file()
    assert (tmp_path / "a" / "model_card.md").is_file()
    assert main(["audit", str(tmp_path / "a")]) == 2  # no audit chosen: one line, exit 2
    res = run_analysis(cnnlab.load_run(tmp_path / "a"), "energy", folder=str(tmp_path), log=quiet)
    assert [r["model"] for r in res["rows"]] == ["mlp", "lenet5"]
    # found by probing: one damaged run of the folder ended the audit in a traceback
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("[1, 2]")
    said = []
    res = run_analysis(cnnlab.load_run(tmp_path / "a"), "energy", folder=str(tmp_path), log=said.append)
    assert [r["model"] for r in res["rows"]] == ["mlp", "lenet5"]
    assert any("left out" in s and "broken" in s for s in said)


def test_a_country_given_after_training_applies_to_the_carbon_figures(tmp_path, capsys):
    """Issue: `cnnlab run --name EXISTING --country FRA` kept country '' without a word."""
    from cnnlab.energy import carbon_intensity

    cfg = cnnlab.TrainConfig(model="mlp", epochs=1, limit_train=300, out_dir=str(tmp_path), name="r")
    run = cnnlab.train(cfg, log=quiet, report=False)
    assert run.config.country == ""
    res = run_analysis(run, "energy", country="FRA", log=quiet)
    row = res["rows"][0]
    assert res["country"] == "FRA"
    assert row["g_co2eq"] == pytest.approx(row["kwh"] * carbon_intensity("FRA")[0])
    assert main(["run", "--name", "r", "--out-dir", str(tmp_path), "--country", "XXX"]) == 2
    assert "unknown country code" in capsys.readouterr().err


def test_the_energy_claim_reads_a_run_that_cnnlab_run_did_not_make():
    """Found by the README tour: `cnnlab audit energy RUN` on a run trained by `cnnlab train`
    (no job phases) broke every later report through its claim."""
    from cnnlab.analysis.energy import claims

    def row(label, model, j, dataset="digits", accuracy=0.9):
        return {"label": label, "model": model, "j_per_train_image": j, "dataset": dataset, "kwh": 1e-4,
                "accuracy": accuracy, "clean": True,
                "epoch_j_per_image": [j * f for f in (0.9, 1.0, 1.1, 1.0)]}

    rows = [row("this run", "lenet5", 0.002), row("gan", "resnet20", 0.009, accuracy=None),
            row("mlp", "mlp", 0.001), row("tree-base", "resnet20", 0.008, dataset="shapes"),
            row("resnet20", "resnet20", 0.004)]
    (claim,) = claims({"rows": rows, "method": {"kind": "estimated"}, "job": None, "dataset": "digits"})
    assert claim.holds and "LeNet-5 2.00 mJ" in claim.verdict and "ResNet-20 4.00 mJ" in claim.verdict
    assert "whole job" not in claim.verdict and "ResNet-20 / MLP 4.0x (95% CI" in claim.verdict
    # a run of ResNet-20 itself: "this run" is the ResNet-20 (a generator's judge or other data is not)
    rows = [row("this run", "resnet20", 0.004), row("mlp", "mlp", 0.001), row("lenet5", "lenet5", 0.002)]
    (claim,) = claims({"rows": rows, "method": {"kind": "estimated"}, "job": None, "dataset": "digits"})
    assert "MLP 1.00 mJ, LeNet-5 2.00 mJ, ResNet-20 4.00 mJ" in claim.verdict
    # this run validated every epoch (no repeated measures): a sub-run of its model gives the interval
    rows[0]["epoch_j_per_image"] = []
    rows.append(row("resnet20-fold1", "resnet20", 0.004))
    (claim,) = claims({"rows": rows, "method": {"kind": "estimated"}, "job": None, "dataset": "digits"})
    assert claim.holds and "ResNet-20 / MLP 4.0x (95% CI" in claim.verdict


def test_the_energy_claim_holds_only_when_its_interval_clears_equal_cost():
    """The interval is over each run's epochs: noisy epochs make a 1.1x ratio no difference."""
    from cnnlab.analysis.energy import _ratio

    def row(per_epoch):
        return {"epoch_j_per_image": per_epoch}

    words, holds = _ratio(("MLP", row([1.0, 1.01, 0.99])), ("ResNet-20", row([4.0, 4.1, 3.9])))
    assert holds is True and words.startswith("ResNet-20 / MLP 4.0x (95% CI")
    words, holds = _ratio(("MLP", row([1.0, 0.6, 1.4])), ("ResNet-20", row([1.1, 0.7, 1.5])))
    assert holds is None and "no significant difference" in words
    assert _ratio(("MLP", row([2.0, 2.1, 1.9])), ("ResNet-20", row([1.0, 1.1, 0.9])))[1] is False
    assert _ratio(("MLP", row([1.0, 1.0])), ("ResNet-20", row([4.0, 4.0, 4.0])))[1] is None


def test_epoch_joules_skip_epochs_that_held_an_evaluation(tmp_path):
    from cnnlab.analysis.energy import _epoch_joules

    csv = tmp_path / "results.csv"
    csv.write_text("epoch,val_acc,energy_kwh\n1,,1e-6\n2,,3e-6\n3,0.9,7e-6\n")
    assert _epoch_joules(csv, 10) == pytest.approx([3.6e6 * 1e-6 / 10, 3.6e6 * 2e-6 / 10])
    assert _epoch_joules(csv, None) == [] and _epoch_joules(tmp_path / "none.csv", 10) == []


def test_a_cpu_named_without_numbers_gets_its_family_and_model():
    """A virtual machine may say only "AMD EPYC": Zen 4 (family 25) and Zen 5 (family 26) then read
    alike in RESULTS.md, though one multiplies bf16 matrices twice as fast."""
    from cnnlab.env import cpu_name

    info = "processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512f\n"
    assert cpu_name(info) == "AMD EPYC (family 26 model 2)"
    named = info.replace("AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+")
    assert cpu_name(named) == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_name("processor\t: 0\n") == ""
