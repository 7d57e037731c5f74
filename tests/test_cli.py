import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.cli import main

EXPECTED_RUN_FILES = ["config.yaml", "status.json", "results.csv", "metrics.json", "report.html",
                      "predictions.npz", "examples.npz", "weights/last.safetensors",
                      "weights/best.safetensors", "weights/meta.json", "provenance.json",
                      "plots/training_curves.png", "plots/confusion_matrix.png"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("cnnlab: error: ")
    return err[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "--dataset", "digits", "--model", "lenet5", "--epochs", "2",
                 "--limit-train", "500", "--out-dir", str(out), "--name", "t"])
    assert code == 0
    return out / "t"


def test_run_end_to_end_writes_every_file(tmp_path, capfd):
    from cnnlab.analysis import load_results, main_job_analyses

    code = main(["run", "--epochs", "3", "--limit-train", "400", "--out-dir", str(tmp_path),
                 "--name", "lecture"])
    assert code == 0
    run = tmp_path / "lecture"
    for f in EXPECTED_RUN_FILES:
        assert (run / f).is_file(), f
    analyses = main_job_analyses(cnnlab.load_run(run).config)
    assert "transfer" not in {a.name for a in analyses}  # the main CNN started from scratch
    for analysis in analyses:  # each analysis stored one result, named by its settings
        stored, legacy = load_results(run, analysis.name)
        assert len(stored) == 1 and not legacy, analysis.name
    assert len(list((run / "subruns").glob("mlp-*/weights/last.safetensors"))) >= 1
    compare = load_results(run, "mlp_vs_cnn")[0][0].result
    assert [m["model"] for m in compare["models"]] == ["mlp", "lenet5", "resnet20"]
    html = (run / "report.html").read_text()
    for title in ("MLP versus CNN", "The permutation test", "What convolutions see",
                  "Confusion sets and the CNN tree", "Adversarial robustness", "Limitations",
                  "Beyond classification: detection, segmentation and pose",
                  "Video: tracking by detection and action recognition"):
        assert title in html, title
    assert "data:image/png;base64," in html
    assert html.index("claims, measured") < html.index("Run and environment")
    assert "True, not applied" in html  # the digits recipe's flips, which the digits refuse
    stems = json.loads((run / "analysis" / "main_job.json").read_text())["stems"]
    assert set(stems) == {a.name for a in analyses}  # both lanes recorded
    assert "http://" not in html and "https://" not in html  # self-contained
    out = capfd.readouterr().out  # fd-level: the second lane's process prints there
    assert "report:" in out and "total" in out  # the time of each step and the total
    if len(os.sched_getaffinity(0)) >= 2:  # the second lane's lines, marked
        assert "\n| == " in out and "(scenes: " in out


def test_trained_run_folder_is_complete(trained_run):
    for f in EXPECTED_RUN_FILES:
        assert (trained_run / f).is_file(), f
    meta = json.loads((trained_run / "weights" / "meta.json").read_text())
    assert meta["model"] == "lenet5" and meta["classes"][0] == "0" and meta["input_shape"] == [1, 8, 8]


def test_evaluate_and_predict(trained_run, tmp_path, capsys):
    assert main(["evaluate", str(trained_run), "--out", str(tmp_path / "m.json")]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 360
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["predict", str(trained_run), str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().strip().splitlines()
    assert lines[0] == "path,predicted,confidence,top" and len(lines) == 4
    assert main(["predict", str(trained_run), str(folder / "0.png"), "--out",
                 str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["predicted"] in [str(i) for i in range(10)]
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(folder / "0.png"), "--top", "2"]) == 0
    path, first, confidence, second = capsys.readouterr().out.strip().split("\t")  # --top on screen too
    assert second.split()[0] in [str(i) for i in range(10)] and second.split()[0] != first


def test_evaluate_warns_when_its_figure_is_not_held_out(trained_run, capsys):
    from cnnlab.data import load_dataset

    assert main(["evaluate", str(trained_run)]) == 0
    assert "warning" not in capsys.readouterr().err
    # fold 2 tests on images of the plain split's training images, some of which the run saw
    assert main(["evaluate", str(trained_run), "--dataset", "digits:fold=2"]) == 0
    warning = capsys.readouterr().err.strip().splitlines()
    seen = cnnlab.load_run(trained_run).data().train.x.numpy().reshape(500, -1)
    fold2 = load_dataset("digits:fold=2").test.x.numpy().reshape(-1, 64)
    expected = sum(any((row == s).all() for s in seen) for row in fold2)
    assert expected > 0 and warning == [f"cnnlab: warning: {expected} of these {len(fold2)} images are "
                                        "among the run's training images: this accuracy is not a "
                                        "held-out figure"]
    assert main(["evaluate", str(trained_run), "--which", "best"]) == 0
    assert "its best epoch was chosen on these test images" in capsys.readouterr().err


def test_report_rerenders(trained_run, capsys):
    (trained_run / "report.html").unlink()
    assert main(["report", str(trained_run)]) == 0
    assert (trained_run / "report.html").is_file()


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--dataset", "npz:/no/such.npz"], "not found"),
    (["train", "--epochs", "0"], "epochs must be between 1 and 100,000"),
    (["evaluate", "/no/such/run"], "is not a run folder"),
    (["train", "--config", "/no/such.yaml"], "config file /no/such.yaml not found"),
])
def test_user_mistakes_exit_2_with_one_line(argv, message, capsys, tmp_path):
    assert main(argv + ["--out-dir", str(tmp_path)] if argv[0] == "train" else argv) == 2
    assert message in one_error_line(capsys)


def test_predicting_a_non_image_exits_2(trained_run, tmp_path, capsys):
    (tmp_path / "fake.png").write_text("hello")
    assert main(["predict", str(trained_run), str(tmp_path / "fake.png")]) == 2
    assert "fake.png is not a readable image" in one_error_line(capsys)


def test_wrong_shape_dataset_exits_2(trained_run, tmp_path, capsys):
    np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.zeros(4),
             x_test=np.zeros((4, 32, 32, 3), np.uint8), y_test=np.zeros(4))
    assert main(["evaluate", str(trained_run), "--dataset", f"npz:{tmp_path / 'rgb.npz'}"]) == 2
    assert "the model reads (1, 8, 8)" in one_error_line(capsys)


def test_nan_loss_exits_2(tmp_path, capsys):
    argv = ["train", "--model", "mlp", "--lr", "1e6", "--epochs", "2", "--limit-train", "256",
            "--out-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "lower --lr" in one_error_line(capsys)


def test_listing_verbs(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "lecture: about 60k" in out
    assert main(["datasets"]) == 0
    assert "cifar10" in capsys.readouterr().out


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--model", "nope", "--out-dir",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_analysis_verbs_are_generated_from_their_signatures(capsys):
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--eps EPS" in out and "the radius, in the attacks' norm" in out
    assert "(default: 8/255)" in out and "(default: fgsm,pgd,apgd-ens)" in out
    with pytest.raises(SystemExit):
        main(["experiment", "permutation", "--help"])
    assert "--cnn-kwargs" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["attack", "RUN", "--eps", "foo"], "argument --eps: expected a number like 0.03 or 8/255, got 'foo'"),
    (["attack", "RUN", "--eps", "-1"], "robustness: --eps must be between"),
    (["attack", "RUN", "--n", "-1"], "robustness: --n must be between 0 and"),
    (["attack", "RUN", "--attack", "autoattack"], "autoattack (APGD-CE, APGD-T, FAB-T, Square) is not"),
    (["attack", "RUN", "--attack", "pgd,pgd-l2"], "one eps cannot be a radius in two norms"),
    (["tree", "RUN", "--top-k", "1"], "tree: --top-k must be between 2 and 100"),
    (["experiment", "mlp-vs-cnn", "RUN", "--models", "mlp,vgg"], "unknown model vgg"),
    (["train", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["nope"], "invalid choice: 'nope'"),
])
def test_bad_analysis_options_exit_2_and_keep_the_valid_result(argv, message, trained_run, capsys):
    from cnnlab.analysis import run_analysis
    from cnnlab.run import load_run

    folder = trained_run / "analysis"
    if not list(folder.glob("robustness*.json")):
        run_analysis(load_run(trained_run), "robustness", n=20, curve=(), corruptions=False,
                     log=lambda s: None)
        capsys.readouterr()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    argv = [str(trained_run) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    assert message in one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_an_analysis_needs_a_run_or_a_dataset(capsys):
    assert main(["tree"]) == 2
    assert "give a run folder (cnnlab tree RUN) or --train-on DATASET" in one_error_line(capsys)


def test_help_does_not_load_torch():
    code = ("import sys\nfrom cnnlab.cli import build_parser\nbuild_parser()\n"
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.split() == ["False", "False"]


def test_an_error_in_one_lane_of_cnnlab_run_stops_the_job_and_is_raised(trained_run):
    from cnnlab.pipeline import _run_lanes

    with pytest.raises(KeyError):
        _run_lanes(trained_run, [["calibration"], ["no-such-analysis"]], {"calibration": 2}, False,
                   "", 1, {}, {}, None)


def test_the_second_lane_starts_with_what_needs_nothing_of_the_main_cnn(monkeypatch):
    import os

    from cnnlab.pipeline import BEFORE_MAIN, _lanes

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    first, second = _lanes(["calibration", "tree", "spurious", "scenes", "value", "video", "bias",
                            "influence"], 1)
    assert first == ["spurious", "value", "bias"]
    assert second[:len(BEFORE_MAIN)] == list(BEFORE_MAIN)
    # calibration scores the tree's base (it reuses the sub-run), influence reads its temperature
    assert second[len(BEFORE_MAIN):] == ["tree", "calibration", "influence"]
    assert _lanes(["calibration", "tree"], 0) == [["calibration", "tree"]]  # one thread per core: one lane


def test_a_bad_dataset_stops_cnnlab_run_in_its_first_lane_with_one_line_and_no_folder(tmp_path, capsys):
    code = main(["run", "--dataset", f"npz:{tmp_path / 'missing.npz'}", "--out-dir", str(tmp_path / "runs")])
    assert code == 2
    assert "missing.npz not found; give npz:PATH" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()  # the second lane waited for a folder never made


def test_the_report_says_when_the_network_has_barely_learnt():
    from cnnlab.report.core import barely_learnt

    note = barely_learnt(0.361, 4, "lenet5")  # LeNet-5 on the shapes: chance 25%
    assert "This lenet5 is at 36.10% where guessing gets 25.00%" in note
    assert barely_learnt(0.63, 4, "lenet5") == "" and barely_learnt(0.975, 10, "lenet5") == ""
    assert barely_learnt(0.54, 10, "lenet5") != ""  # CIFAR-10 halfway: 55%


def test_a_verbs_config_file_goes_on_top_of_its_recipe_and_keeps_the_rest(tmp_path, monkeypatch):
    """generate train and detect train start from their own recipes: a --config file overrides
    what it sets and keeps the rest (it had replaced the recipe by TrainConfig's defaults, so a
    GAN recipe file trained with SGD at the classifier's rate, and failed without task: generate)."""
    from cnnlab.config import DIFFUSION_DEFAULTS, GENERATE_DEFAULTS

    seen = []
    monkeypatch.setattr("cnnlab.generation.train_generator", lambda cfg, **kw: seen.append(cfg))
    monkeypatch.setattr("cnnlab.pipeline.train", lambda cfg, **kw: seen.append(cfg))
    files = {"gan": "dataset: shapes\nhead: conditional\nlr: 0.0005\n", "ddpm": "head: ddpm\n",
             "det": "epochs: 3\n"}
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    assert main(["generate", "train", "--config", str(tmp_path / "gan.yaml"), "--epochs", "7"]) == 0
    assert main(["generate", "train", "--config", str(tmp_path / "ddpm.yaml")]) == 0
    assert main(["detect", "train", "--config", str(tmp_path / "det.yaml")]) == 0
    # the flag's head chooses the recipe over the file's: the diffusion recipe, the file on top
    assert main(["generate", "train", "--config", str(tmp_path / "gan.yaml"), "--head", "ddpm"]) == 0
    gan, ddpm, det, flag = seen
    assert (flag.head, flag.batch_size, flag.momentum, flag.dataset) == (
        "ddpm", DIFFUSION_DEFAULTS["batch_size"], DIFFUSION_DEFAULTS["momentum"], "shapes")
    assert (gan.task, gan.head, gan.dataset, gan.lr, gan.epochs) == ("generate", "conditional", "shapes",
                                                                      0.0005, 7)
    kept = ("optimizer", "ema", "r1_every")
    assert [getattr(gan, k) for k in kept] == [GENERATE_DEFAULTS[k] for k in kept]
    assert (ddpm.head, ddpm.batch_size, ddpm.lr) == ("ddpm", DIFFUSION_DEFAULTS["batch_size"],
                                                     DIFFUSION_DEFAULTS["lr"])
    assert (det.task, det.optimizer, det.lr, det.epochs) == ("detect", "adamw", 0.003, 3)
