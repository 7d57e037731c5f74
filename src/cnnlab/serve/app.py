"""``cnnlab serve``: the runs of a folder and their models, in the browser and as a JSON API.

FastAPI serves one plain page (static/index.html: HTML, CSS and JS, no CDN, no build step)
and the API it uses, documented at /docs:

    GET  /api/runs                  the runs: dataset, model, accuracy, robust accuracy, energy, date
    GET  /api/runs/{name}           one run's metrics and training history
    GET  /runs/{name}/report.html   its report
    POST /api/predict?run=NAME      an image in the body -> top-5 classes and probabilities
    POST /api/inspect?run=NAME      an image -> a job: Grad-CAM, saliency, an adversarial example
    GET  /api/jobs/{id}             the job's state, progress and, when done, its result
    GET  /api/runs/{name}/which-is-real     a round of "Which is real?" (serve/game.py)
    POST /api/which-is-real/{round}?pick=left|right   the answer and the detector's

Safety: run names are looked up in the folder's listing, never joined into a path (a name
with ``/`` or ``..`` is simply not found, and a run folder that is a symlink to elsewhere is
not listed); uploads are capped in bytes before they are read and in pixels before they are
decoded; the file type is decided by decoding, not by name; every error is JSON with a 4xx
status and one line that says what to do. Only safetensors weights are loaded. Predictions run
in FastAPI's thread pool, so a slow request does not block the others, and concurrent
predictions for one run share model calls (serve/batching.py; measured: 118.7 -> 218.5
requests/s and p99 86 -> 50 ms for ResNet-20 at 8 clients on 2 cores).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlab.errors import CnnlabError
from cnnlab.serve.common import ApiError, cached_run, within
from cnnlab.serve.game import WhichIsReal, game_result
from cnnlab.serve.jobs import Jobs

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def list_runs(root: Path) -> dict[str, Path]:
    """Finished runs directly under ``root`` (real folders inside it, not symlinks out)."""
    runs = {}
    base = root.resolve()
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.is_symlink() or not p.is_dir() or not (p / "metrics.json").is_file():
            continue
        if p.resolve().parent == base:
            runs[p.name] = p
    return runs


def readable_summary(name: str, path: Path) -> dict | None:
    """The run's summary, or None when its metrics.json, meta.json or a robustness result is
    not valid JSON of the expected form (a broken run is left out of the list, not a 500)."""
    try:
        return summary(name, path)
    except (ValueError, OSError, AttributeError, TypeError):
        return None


def read_inside(run: Path, name: str) -> str:
    """A file of a run folder as text; ValueError when it is a link that leads out of the folder
    (a shared run could point its metrics.json at any file: it would be served whole)."""
    if not within(run, name):
        raise ValueError(f"{name} of run {run.name!r} leads outside its folder")
    return (run / name).read_text()


def summary(name: str, path: Path) -> dict:
    m = json.loads(read_inside(path, "metrics.json"))
    robust = None
    for f in sorted((path / "analysis").glob("robustness*.json")):
        r = json.loads(read_inside(path, str(f.relative_to(path)))).get("result", {})
        robust = r.get("robust_accuracy", robust)
    energy = (m.get("energy") or {})
    task = json.loads(read_inside(path, "weights/meta.json")).get("task", "classify") \
        if (path / "weights" / "meta.json").is_file() else "classify"
    return {"name": name, "dataset": m.get("dataset"), "model": m.get("model"), "task": task,
            "accuracy": m.get("accuracy"), "score": m.get("score"), "score_name": m.get("score_name"),
            "n_eval": m.get("n"), "robust_accuracy": robust,
            "energy_wh": None if energy.get("kwh") is None else 1000 * energy["kwh"],
            "energy_kind": (energy.get("method") or {}).get("kind"),
            "date": time.strftime("%Y-%m-%d %H:%M", time.localtime((path / "metrics.json").stat().st_mtime)),
            "has_report": (path / "report.html").is_file() and within(path, "report.html"),
            "which_is_real": game_result(path) is not None}


class Served:
    """What the routes share: the runs folder, loaded runs, the job pool, the limits."""

    def __init__(self, runs_dir: str | Path, max_upload: int, batching: bool):
        self.root, self.max_upload, self.batching = Path(runs_dir), max_upload, batching
        self.models: dict[str, object] = {}
        self.jobs = Jobs(workers=2)
        self.game = WhichIsReal()

    def find(self, name: str) -> Path:
        """The run folder of that name, looked up in the listing (never joined into a path)."""
        runs = list_runs(self.root)
        if name not in runs:
            raise ApiError(404, f"no run named {name!r} in {self.root}; GET /api/runs lists them")
        return runs[name]


def create_app(runs_dir: str | Path = "runs", max_upload: int = MAX_UPLOAD_BYTES,
               batching: bool = True, hosts: list[str] | None = None) -> FastAPI:
    """The app; ``hosts``: the only Host headers answered (``cnnlab serve`` on 127.0.0.1 gives
    this machine's names, so a page that rebinds its own domain to 127.0.0.1 cannot read the
    runs); None answers any."""
    # FastAPI's own /docs and /redoc load their scripts from a CDN: blank offline. /docs here is
    # one page drawn from the same OpenAPI description, with nothing fetched.
    app = FastAPI(title="cnnlab", description="Runs, reports and predictions of a cnnlab runs folder.",
                  docs_url=None, redoc_url=None)
    served = Served(runs_dir, max_upload, batching)
    if hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(CnnlabError)
    async def cnnlab_error(request: Request, exc: CnnlabError):
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """An unknown route or a wrong method, in the API's one form ({"error": ...})."""
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        """A missing or mistyped query parameter, in the API's one-line form."""
        said = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
                         for e in exc.errors())
        return JSONResponse({"error": said}, status_code=422)

    add_run_routes(app, served)
    add_model_routes(app, served)
    add_game_routes(app, served)
    return app


def docs_page(spec: dict) -> str:
    """The JSON API as one self-contained page: each route, its parameters, what it answers
    (the machine-readable form: /openapi.json)."""
    from cnnlab.viz.html import esc

    rows = []
    for route, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            params = ", ".join(f"{esc(p['name'])} ({p['in']}{', required' if p.get('required') else ''})"
                               for p in op.get("parameters", [])) or "none"
            about = esc((op.get("description") or op.get("summary") or "").replace("`", ""))
            rows.append(f"<tr><td><b>{method.upper()}</b></td><td><code>{esc(route)}</code></td>"
                        f"<td>{params}</td><td>{about}</td></tr>")
    return ("<!doctype html><meta charset='utf-8'><title>cnnlab API</title><style>body{font:15px "
            "system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid "
            "#ddd;padding:6px 10px;text-align:left;vertical-align:top}</style>"
            f"<h1>{esc(spec['info']['title'])} JSON API</h1><p>{esc(spec['info'].get('description', ''))} "
            "Errors answer <code>{\"error\": \"...\"}</code> with a 4xx status. Images are posted "
            "as the request body or as a multipart form field <code>file</code>. The machine-readable "
            "description: <a href='/openapi.json'>/openapi.json</a>.</p><table><tr><th>method</th>"
            "<th>route</th><th>parameters</th><th>what it does</th></tr>" + "".join(rows) + "</table>")


def inside(run: Path, name: str) -> Path:
    """A file of a run folder, refused (404) when it is a link that leads out of the folder: a
    shared run unpacked into the runs folder could point its report.html at any file."""
    path = run / name
    if path.exists() and not within(run, name):
        raise ApiError(404, f"{name} of run {run.name!r} leads outside its folder; it is not served")
    return path


def evaluation_sample(run, name: str, n: int):
    """``n`` of the run's evaluation images (seeded), refused (422) where its data no longer has
    the classes the model knows (a class folder added since: the labels would index past them)."""
    val = run.data().eval.sample(n, 0)
    if list(val.classes) != list(run.classes):
        raise ApiError(422, f"run {name}: its data now has the classes {', '.join(val.classes)}, "
                       f"the model knows {', '.join(run.classes)}; restore the data or train the run "
                       f"again")
    return val


def add_run_routes(app: FastAPI, served: Served) -> None:
    """The page, the runs, their details, sample images and reports."""

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    @app.get("/api/runs")
    def runs() -> list[dict]:
        return [s for n, p in list_runs(served.root).items() if (s := readable_summary(n, p))]

    @app.get("/api/runs/{name}")
    def run_detail(name: str) -> dict:
        from cnnlab.report.core import read_history

        path = served.find(name)
        if (about := readable_summary(name, path)) is None:
            raise ApiError(422, f"run {name}: its metrics.json or weights/meta.json is not valid "
                           "JSON, or is a link out of its folder; restore it or train the run again")
        try:
            history = read_history(inside(path, "results.csv"))
        except (OSError, ValueError, TypeError):  # cut off while written, edited, not UTF-8
            raise ApiError(422, f"run {name}: its results.csv is not a readable table of epochs; "
                           "restore it or train the run again") from None
        return {"summary": about, "metrics": json.loads(read_inside(path, "metrics.json")),
                "history": history}

    @app.get("/api/runs/{name}/samples")
    def samples(name: str, n: int = 12) -> list[dict]:
        """A few of the run's evaluation images (seeded), as PNG data URIs with their labels."""
        from cnnlab.serve.jobs import _hwc, png_uri

        loaded = cached_run(served.find(name), served.models)
        val = evaluation_sample(loaded, name, max(1, min(n, 48)))
        return [{"label": loaded.classes[int(y)], "image": png_uri(_hwc(x.numpy()), scale=False)}
                for x, y in zip(val.x, val.y, strict=True)]

    @app.get("/runs/{name}/report.html")
    def report(name: str) -> FileResponse:
        path = inside(served.find(name), "report.html")
        if not path.is_file():
            raise ApiError(404, f"run {name!r} has no report yet; run cnnlab report on it")
        return FileResponse(path, media_type="text/html")


def add_model_routes(app: FastAPI, served: Served) -> None:
    """Predictions, and explain-and-attack jobs with their progress."""

    @app.post("/api/predict")
    async def predict(request: Request, run: str, top: int = 5) -> dict:
        """Top classes of one image: the body itself (any image type, or
        `curl --data-binary @x.png URL`) or a form with one file (`curl -F file=@x.png URL`)."""
        if top < 1:
            raise ApiError(422, f"top must be at least 1, not {top}")
        path = served.find(run)
        data = await read_upload(request, served.max_upload)
        return await _in_thread(lambda: classify(path, data, top, served.models, served.batching))

    @app.post("/api/inspect")
    async def inspect(request: Request, run: str, eps: float = 8 / 255, attack: str = "pgd") -> dict:
        """Start a job: Grad-CAM and saliency maps, and an adversarial example at ``eps``."""
        from cnnlab.serve.jobs import inspect_image

        if attack not in ("fgsm", "pgd") or not 0 < eps <= 0.5:
            raise ApiError(422, "attack must be fgsm or pgd, and eps in (0, 0.5] (pixels in [0, 1])")
        path = served.find(run)
        data = await read_upload(request, served.max_upload)
        loaded = cached_run(path, served.models)
        image = await _in_thread(lambda: decode(loaded, data))
        job = served.jobs.submit(lambda progress: inspect_image(loaded, image, eps, attack, progress))
        return {"job": job}

    @app.post("/api/detect")
    async def detect(request: Request, run: str, threshold: float = 0.3, detector: str = "") -> dict:
        """Boxes (detect), a class map (segment) or keypoints (pose, on ``detector``'s boxes)
        of one uploaded image, in its own pixels, and the image with them drawn on it."""
        if not 0 <= threshold <= 1:
            raise ApiError(422, "threshold must be in [0, 1]")
        path = served.find(run)
        det = served.find(detector) if detector else None
        data = await read_upload(request, served.max_upload)
        return await _in_thread(lambda: detect_upload(path, data, threshold, served.models, det))

    @app.get("/api/jobs/{job}")
    def job_state(job: str) -> dict:
        state = served.jobs.get(job)
        if state is None:
            raise ApiError(404, f"no job {job!r}; POST /api/inspect starts one")
        return state


def add_game_routes(app: FastAPI, served: Served) -> None:
    """Which is real? (serve/game.py): a round, and its answer."""

    @app.get("/api/runs/{name}/which-is-real")
    async def which_is_real(name: str) -> dict:
        """A round: a real image and a generated one, in random order."""
        path = served.find(name)
        return await _in_thread(lambda: served.game.new_round(path, served.models))

    @app.post("/api/which-is-real/{round_id}")
    def which_is_real_answer(round_id: str, pick: str) -> dict:
        """Was ``pick`` (left or right) the real image? And what the detector said."""
        return served.game.answer(round_id, pick)


RAW = ("application/octet-stream", "application/x-www-form-urlencoded")
"""Body types read as the image's own bytes: what a program sends, and what curl's
``--data-binary @x.png`` labels it without ``-H 'Content-Type: image/png'``."""


async def read_upload(request: Request, limit: int) -> bytes:
    """The uploaded image's bytes: the body itself (any image/* type, or RAW), or the one file of
    a multipart form (``curl -F file=@x.png``); refused (413) past ``limit`` bytes before the
    body is all read."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    if kind and not (kind.startswith("image/") or kind in RAW or multipart):
        raise ApiError(415, f"send the image as the body (curl --data-binary @x.png URL) or as a form "
                            f"file (curl -F file=@x.png URL), not Content-Type {kind}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + (64 * 1024 if multipart else 0):
        raise ApiError(413, f"the upload is {int(declared):,} bytes; the limit is {limit:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit + (64 * 1024 if multipart else 0):  # room for the form's headers
            raise ApiError(413, f"the upload is over the {limit:,}-byte limit; send a smaller image")
    data = await _form_file(request, bytes(body)) if multipart else bytes(body)
    if not data:
        raise ApiError(400, "the body is empty; send an image file as the request body")
    if len(data) > limit:
        raise ApiError(413, f"the upload is {len(data):,} bytes; the limit is {limit:,}")
    return data


async def _form_file(request: Request, body: bytes) -> bytes:
    """The one file of a multipart form already read into ``body`` (python-multipart parses it)."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def once():
        yield body
        yield b""

    try:
        form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=8).parse()
    except MultiPartException as e:
        raise ApiError(400, f"the form could not be read ({e.message}); "
                            "send curl -F file=@x.png URL") from None
    files = [v for _, v in form.multi_items() if hasattr(v, "read")]
    if not files:
        raise ApiError(400, "the form holds no file; send the image as one: curl -F file=@x.png URL")
    return await files[0].read()


def classify(path: Path, data: bytes, top: int, cache: dict, batching: bool = False) -> dict:
    """Top classes of one uploaded image under the run's model (cached per run); with
    ``batching``, concurrent requests for one run share model calls (serve/batching.py)."""
    import numpy as np

    run = cached_run(path, cache)
    image = decode(run, data)
    if batching:
        from cnnlab.serve.batching import Batcher

        batcher = cache.get(f"batcher:{path}") or cache.setdefault(f"batcher:{path}", Batcher(run.predict))
        probs = batcher.predict(image)
    else:
        probs = run.predict(image[None])[0]
    order = np.argsort(-probs)[: max(1, min(top, len(probs)))]
    return {"run": path.name, "top": [{"class": run.classes[k], "probability": float(probs[k])}
                                      for k in order],
            "calibrated": run.temperature() is not None}


def detect_upload(path: Path, data: bytes, threshold: float, cache: dict,
                  detector: Path | None = None) -> dict:
    """What a detection, segmentation or pose run finds in one upload (see POST /api/detect)."""
    import numpy as np
    import torch

    from cnnlab.data.files import read_image
    from cnnlab.dense_files import draw, input_side, predict_one
    from cnnlab.serve.jobs import png_uri

    run = cached_run(path, cache)
    if run.config.task == "classify":
        raise ApiError(422, f"run {path.name!r} is a classifier; POST /api/predict classifies")
    det = cached_run(detector, cache) if detector else None
    try:
        size = input_side(run, det)
        original = read_image(io.BytesIO(data), None, "RGB", name="the upload")
        x = torch.from_numpy(read_image(io.BytesIO(data), size, "RGB", name="the upload").copy())
    except CnnlabError as e:
        raise ApiError(413 if "pixels, more than" in str(e) else 415 if "image" in str(e) else 422,
                       str(e)) from None
    h, w = original.shape[:2]
    found = predict_one(run, x.permute(2, 0, 1)[None], det, threshold)
    sx, sy = w / size, h / size
    objects = [{"class": run.classes[int(k)], "score": round(float(s), 4),
                "box": [round(float(v), 1) for v in (b * torch.tensor([sx, sy, sx, sy])).tolist()]}
               for b, s, k in zip(found.get("boxes", []), found.get("scores", []), found.get("labels", []),
                                  strict=True)]
    picture = np.asarray(draw(original, found, (sx, sy), run.classes).convert("RGB"))
    return {"run": path.name, "task": run.config.task, "width": w, "height": h, "objects": objects,
            "image": png_uri(picture, scale=max(w, h) < 160)}


def decode(run, data: bytes):
    """The upload as the model's uint8 (C, H, W) image: decoded (after the pixel check) and
    resized; 413 for too many pixels, 415 for anything that is not an image."""
    from cnnlab.data.files import read_image

    c, h, _ = run.meta["input_shape"]
    try:
        image = read_image(io.BytesIO(data), h, "L" if c == 1 else "RGB", name="the upload")
    except CnnlabError as e:
        raise ApiError(413 if "pixels, more than" in str(e) else 415, str(e)) from None
    return image.transpose(2, 0, 1)


async def _in_thread(fn):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn)
