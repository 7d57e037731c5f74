"""Export: the ONNX file equals PyTorch, carries what predict needs, and is all predict needs."""

import numpy as np
import pytest

import cnnlab
from cnnlab.analysis import run_analysis
from cnnlab.cli import main
from cnnlab.errors import CnnlabError

pytest.importorskip("onnxruntime")
quiet = lambda s: None  # noqa: E731


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    run = cnnlab.train(cnnlab.TrainConfig(model="lenet5", epochs=2, precision="fp32", out_dir=str(out),
                                          name="r"),
                       log=quiet, report=False)
    run_analysis(run, "calibration", resamples=100, log=quiet)  # a temperature to embed
    return run


def test_the_onnx_file_equals_pytorch_with_temperature_and_classes_inside(calibrated_run):
    from cnnlab.export import OnnxModel, export_onnx

    run = calibrated_run
    res = export_onnx(run, log=quiet)
    assert res["max_abs_diff"] < 1e-4 and res["checked_on"] == 100
    onnx_model = OnnxModel(res["path"])
    assert onnx_model.classes == run.classes and onnx_model.meta["input_shape"] == [1, 8, 8]
    assert float(onnx_model.meta["temperature"]) == pytest.approx(run.temperature())
    x = run.data().eval.x[:100].numpy()
    # the exported file alone gives what the run gives (calibrated, no TTA) on 100 images
    assert np.abs(onnx_model.predict(x) - run.predict(x, tta=0)).max() < 1e-4


def test_int8_copy_and_predict_on_the_exported_file(calibrated_run, tmp_path):
    from PIL import Image

    run = calibrated_run
    out = tmp_path / "m.onnx"
    assert main(["export", str(run.path), "--out", str(out), "--quantize", "int8"]) == 0
    assert (tmp_path / "m-int8.onnx").is_file()
    for i, img in enumerate(run.data().eval.x[:4].numpy()):
        Image.fromarray(img[0]).save(tmp_path / f"{i}.png")
    (tmp_path / "not-an-image.png").write_bytes(b"hello")
    from cnnlab.predict_files import predict_paths

    from_onnx, skipped = predict_paths(str(out), str(tmp_path))
    from_run, _ = predict_paths(str(run.path), str(tmp_path))
    assert [r["predicted"] for r in from_onnx] == [r["predicted"] for r in from_run]
    assert len(skipped) == 1 and "not-an-image" in skipped[0][0]
    (tmp_path / "fake.onnx").write_text("not a model")
    with pytest.raises(CnnlabError, match="is not a readable ONNX model"):
        predict_paths(str(tmp_path / "fake.onnx"), str(tmp_path))
