"""Ship a model: one ONNX file that needs nothing else, and ONNX Runtime to run it.

``export_onnx(run)`` writes ``<run>/export/model.onnx``: the network with its normalization
(our models normalize inside), the run's pixel permutation if any, and the fitted temperature
(``cnnlab calibrate``) folded into a softmax, so the file maps images in [0, 1] (N, C, H, W)
to class probabilities. Class names, input shape and provenance ride in the file's metadata.
The export is checked on 100 evaluation images (all, where fewer) against PyTorch (no TTA):
the largest absolute difference of a probability is reported and must stay under 1e-4.
``quantize="int8"`` also writes a statically quantized copy (ONNX Runtime's QDQ int8,
calibrated on 200 training images). ``OnnxModel`` runs either file; ``cnnlab predict
model.onnx`` uses it. Only ONNX and safetensors are ever loaded: nothing that executes code on
load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.run import Run

TOLERANCE = 1e-4


class Deployable(nn.Module):
    """images in [0, 1] -> softmax(logits / T), with the run's pixel permutation if it had one."""

    def __init__(self, model: nn.Module, temperature: float, perm: torch.Tensor | None):
        super().__init__()
        self.model, self.temperature = model, float(temperature)
        self.register_buffer("perm", perm if perm is not None else torch.zeros(0, dtype=torch.long))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.perm.numel():
            n, c, h, w = images.shape
            images = images.reshape(n, c, h * w)[:, :, self.perm].reshape(n, c, h, w)
        return torch.softmax(self.model(images) / self.temperature, dim=1)


def export_onnx(run: Run, out: str = "", quantize: str = "", log=print) -> dict:
    """Write the ONNX file (and an int8 copy if asked); return paths and the check's numbers."""
    import onnx

    if quantize not in ("", "int8"):
        raise CnnlabError(f"--quantize must be int8 (or left out), not {quantize!r}")
    run.require_classifier("export")
    path = Path(out) if out else run.path / "export" / "model.onnx"
    if path.suffix.lower() != ".onnx" or path.is_dir():  # predict and serve know a model by it
        raise CnnlabError(f"--out {out}: give a file name ending in .onnx, e.g. model.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _deployable(run)
    c, h, w = run.meta["input_shape"]
    example = torch.rand(2, c, h, w)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.onnx.export(net, (example,), input_names=["images"], output_names=["probabilities"],
                                dynamic_shapes={"images": {0: batch}}, dynamo=True, verbose=False)
    program.save(str(path), external_data=False)
    model = onnx.load(str(path))
    meta = {"classes": json.dumps(run.classes), "input_shape": json.dumps([c, h, w]),
            "input": "float32 images in [0, 1], (N, C, H, W); normalization is inside",
            "output": "class probabilities (softmax of logits / temperature)",
            "temperature": str(net.temperature), "run": run.path.name,
            "dataset": run.config.dataset, "model": run.meta["model"],
            "cnnlab": run.meta.get("code_version", "")}
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    result = {"path": str(path), "bytes": path.stat().st_size} | check(run, path, net)
    log(f"wrote {path} ({result['bytes'] / 1e6:.2f} MB); on {result['checked_on']} evaluation images "
        f"the largest probability difference from PyTorch is {result['max_abs_diff']:.2e}")
    if quantize:
        result["int8"] = quantize_int8(run, path)
        log(f"wrote {result['int8']['path']} (int8, {result['int8']['bytes'] / 1e6:.2f} MB)")
    return result


def _deployable(run: Run) -> Deployable:
    from cnnlab.data import pixel_permutation

    model = run.load_model().float().eval().to(memory_format=torch.contiguous_format)
    perm = pixel_permutation(*run.meta["input_shape"][1:]) if run.config.permute_pixels else None
    return Deployable(model, run.temperature() or 1.0, perm).eval()


def check(run: Run, path: Path, net: Deployable, n: int = 100) -> dict:
    """ONNX Runtime against PyTorch on ``n`` evaluation images: the largest difference."""
    x = run.data().eval.sample(n, 0).x.float() / 255
    n = len(x)  # fewer where the run has fewer
    ours = OnnxModel(path).probabilities(x.numpy())
    with torch.no_grad():
        ref = net(x).numpy()
    diff = float(np.abs(ours - ref).max())
    if not diff <= TOLERANCE:  # NaN too: a model that answers NaN is not shipped
        raise CnnlabError(f"the ONNX export of {run.path} differs from PyTorch by {diff:.2e} "
                          f"(> {TOLERANCE:g}); the file is at {path} but should not be used")
    return {"max_abs_diff": diff, "checked_on": n,
            "same_top1": float((ours.argmax(1) == ref.argmax(1)).mean())}


def quantize_int8(run: Run, path: Path, calibration: int = 200) -> dict:
    """A statically quantized (int8 weights and activations, QDQ) copy of the ONNX file."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = (run.data().train.sample(calibration, 1).x.float() / 255).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": images[i: i + 20]} for i in range(0, len(images), 20)])

        def get_next(self):
            return next(self.batches, None)

    pre = path.with_name(path.stem + "-pre.onnx")
    out = path.with_name(path.stem + "-int8.onnx")
    quant_pre_process(str(path), str(pre))
    quantize_static(str(pre), str(out), Reader(), weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    pre.unlink()
    import onnx

    model, src = onnx.load(str(out)), onnx.load(str(path))
    onnx.helper.set_model_props(model, {p.key: p.value for p in src.metadata_props} | {"quantized": "int8"})
    onnx.save(model, str(out))
    return {"path": str(out), "bytes": out.stat().st_size}


class OnnxModel:
    """An exported cnnlab model run by ONNX Runtime on the CPU: ``predict`` takes uint8 images
    like ``Run.predict``, and ``classes`` / ``meta`` come from the file's own metadata."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise CnnlabError(f"ONNX file {path} not found; write one with cnnlab export RUN")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own error types
            raise CnnlabError(f"{path} is not a readable ONNX model ({type(e).__name__}); export "
                              f"it again with cnnlab export RUN") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if "classes" not in props:
            raise CnnlabError(f"{path} is an ONNX model but not one cnnlab exported (no class names "
                              f"in its metadata); export it with cnnlab export RUN")
        self.path, self.classes = path, json.loads(props["classes"])
        self.meta = {**props, "input_shape": json.loads(props["input_shape"])}

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for float32 images in [0, 1], (N, C, H, W)."""
        return self.session.run(None, {"images": np.ascontiguousarray(x, np.float32)})[0]

    def predict(self, images: np.ndarray, which: str = "last", tta: int | None = None) -> np.ndarray:
        """Probabilities for uint8 images (N, H, W, C) or (N, C, H, W), as Run.predict."""
        x = np.asarray(images)
        c = self.meta["input_shape"][0]
        if x.ndim == 4 and x.shape[1] != c and x.shape[-1] == c:
            x = x.transpose(0, 3, 1, 2)
        return self.probabilities(x.astype(np.float32) / 255)
