"""Long work for the app, in a worker pool with progress: explain an image and attack it.

``Jobs.submit(fn)`` runs ``fn(progress)`` on one of a few worker threads and returns an id;
``fn`` reports its stage with ``progress(fraction, words)``, and ``Jobs.get(id)`` reads the
state (running, done or failed), the progress and, when done, the result. Requests keep being
answered meanwhile: FastAPI runs them on its own thread pool.

``inspect_image`` is the app's job: the prediction, Grad-CAM and saliency maps (Captum, from
explain/attributions.py) drawn over the image, and an untargeted PGD (or FGSM) example at a
chosen L-inf radius against the predicted class, with its new prediction and the perturbation
amplified to be visible.
"""

from __future__ import annotations

import base64
import io
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cnnlab.errors import CnnlabError


class Jobs:
    def __init__(self, workers: int = 2, keep: int = 100):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnnlab-job")
        self.state: dict[str, dict] = {}
        self.keep = keep
        self.lock = threading.Lock()

    def submit(self, fn: Callable[[Callable[[float, str], None]], dict]) -> str:
        job = uuid.uuid4().hex[:12]
        with self.lock:
            if len(self.state) >= self.keep:  # forget the oldest finished jobs
                for old in [k for k, v in self.state.items() if v["state"] != "running"][: self.keep // 2]:
                    del self.state[old]
            self.state[job] = {"state": "running", "progress": 0.0, "stage": "queued"}

        def progress(fraction: float, words: str) -> None:
            self.state[job].update(progress=fraction, stage=words)

        def work() -> None:
            try:
                result = fn(progress)
                self.state[job].update(state="done", progress=1.0, stage="done", result=result)
            except CnnlabError as e:
                self.state[job].update(state="failed", stage="failed", error=str(e))
            except Exception as e:  # noqa: BLE001 - a job's failure is reported, never raised away
                self.state[job].update(state="failed", stage="failed",
                                       error=f"the job failed ({type(e).__name__}); see the server log")
                raise

        self.pool.submit(work)
        return job

    def get(self, job: str) -> dict | None:
        return self.state.get(job)


def png_uri(image: np.ndarray, scale: bool = True) -> str:
    """uint8 (H, W) or (H, W, 3) -> a data: URI of a PNG (enlarged to about 160 px if ``scale``)."""
    from PIL import Image

    im = Image.fromarray(image)
    factor = max(1, 160 // max(im.size)) if scale else 1
    im = im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The map in red over the image in grey (both (H, W)): where the model looked."""
    grey = image.astype(np.float32) / 255
    h = heat / (heat.max() + 1e-12)
    rgb = np.stack([0.5 * grey + 0.5 * h, 0.5 * grey, 0.5 * grey * (1 - h)], axis=-1)
    return (255 * rgb.clip(0, 1)).astype(np.uint8)


def _grey(x: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W) grey."""
    return x.mean(0).astype(np.uint8)


def _top(probs: np.ndarray, classes: list[str], k: int = 5) -> list[dict]:
    order = np.argsort(-probs)[:k]
    return [{"class": classes[i], "probability": float(probs[i])} for i in order]


def inspect_image(run, image: np.ndarray, eps: float, attack: str, progress) -> dict:
    """The app's job on one uint8 image (C, H, W) under ``run``'s model (see the module doc)."""
    import torch

    from cnnlab.explain.attributions import attribute
    from cnnlab.robustness.attacks import fgsm, pgd

    if attack not in ("fgsm", "pgd") or not 0 < eps <= 0.5:
        raise CnnlabError("attack must be fgsm or pgd, and eps in (0, 0.5] (pixels in [0, 1])")
    progress(0.05, "predicting")
    model = run.load_model()
    x = torch.from_numpy(image)[None].float() / 255
    # the probabilities as POST /api/predict gives them (temperature-scaled once the run is
    # calibrated, with its test-time augmentation): one page, one number for one image
    probs = run.predict(image[None])[0]
    target = torch.tensor([int(probs.argmax())])
    maps = {}
    for k, method in enumerate(("gradcam", "saliency")):
        progress(0.15 + 0.3 * k, f"explaining ({method})")
        maps[method] = png_uri(_overlay(_grey(image), attribute(model, x, target, method)[0]))
    progress(0.75, f"attacking ({attack}, eps {eps:.4f})")
    adv = fgsm(model, x, target, eps) if attack == "fgsm" else pgd(model, x, target, eps, steps=20)
    noise = (adv - x)[0].numpy()
    amplified = (127.5 + 127.5 * noise / max(eps, 1e-12)).clip(0, 255).astype(np.uint8)
    adv_u8 = (255 * adv[0].numpy()).round().astype(np.uint8)
    adv_probs = run.predict(adv_u8[None])[0]  # the image shown, read as an upload of it would be
    return {"top": _top(probs, run.classes), "maps": maps, "eps": eps, "attack": attack,
            "linf": float(np.abs(noise).max()),
            "adversarial": {"top": _top(adv_probs, run.classes), "image": png_uri(_hwc(adv_u8)),
                            "noise": png_uri(_hwc(amplified)),
                            "fooled": bool(adv_probs.argmax() != probs.argmax())}}


def _hwc(x: np.ndarray) -> np.ndarray:
    return x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)
