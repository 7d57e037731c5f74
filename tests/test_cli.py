import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main

EXPECTED_RUN_FILES = ["config.yaml", "results.csv", "metrics.json", "report.html",
                      "predictions.npz", "examples.npz", "weights/last.safetensors",
                      "weights/best.safetensors", "weights/meta.json",
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


def test_run_end_to_end_writes_every_file(tmp_path, capsys):
    code = main(["run", "--epochs", "2", "--limit-train", "400", "--out-dir", str(tmp_path),
                 "--name", "lecture"])
    assert code == 0
    run = tmp_path / "lecture"
    analyses = [f"analysis/{a}.json" for a in ("mlp_vs_cnn", "permutation", "filters", "tree",
                                                 "robustness")]
    for f in EXPECTED_RUN_FILES + analyses + ["baselines/mlp/weights/last.safetensors"]:
        assert (run / f).is_file(), f
    compare = json.loads((run / "analysis" / "mlp_vs_cnn.json").read_text())
    assert [m["model"] for m in compare["models"]] == ["mlp", "lenet5", "resnet20"]
    html = (run / "report.html").read_text()
    for title in ("MLP versus CNN", "The permutation test", "What convolutions see",
                  "Confusion sets and the CNN tree", "Adversarial robustness", "Limitations"):
        assert title in html, title
    assert "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html  # self-contained
    assert "report:" in capsys.readouterr().out


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


def test_report_rerenders(trained_run, capsys):
    (trained_run / "report.html").unlink()
    assert main(["report", str(trained_run)]) == 0
    assert (trained_run / "report.html").is_file()


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--dataset", "npz:/no/such.npz"], "not found"),
    (["train", "--epochs", "0"], "epochs must be at least 1"),
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
    argv = ["train", "--model", "mlp", "--lr", "1e12", "--epochs", "2", "--limit-train", "256",
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
