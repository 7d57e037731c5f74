"""The web app: its JSON API, bad uploads, path tricks, and (where chromium is installed) a
real browser."""

import importlib.util
import io
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

import cnnlab

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from cnnlab.serve.app import create_app  # noqa: E402

quiet = lambda s: None  # noqa: E731


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cnnlab.train(cnnlab.TrainConfig(model="lenet5", epochs=10, out_dir=str(root), name="digits-a"),
                 log=quiet)
    cnnlab.train(cnnlab.TrainConfig(model="mlp", epochs=2, out_dir=str(root), name="digits-b"),
                 log=quiet, report=False)
    scenes = dict(dataset="scenes:n=24", model="resnet20", model_kwargs={"width": 4}, epochs=1,
                  batch_size=8, optimizer="adamw", lr=0.003, out_dir=str(root))
    cnnlab.train(cnnlab.TrainConfig(task="detect", name="scenes-det", **scenes), log=quiet, report=False)
    cnnlab.train(cnnlab.TrainConfig(task="pose", name="scenes-pose", **scenes), log=quiet, report=False)
    if importlib.util.find_spec("torchmetrics"):  # a GAN and its detector, for "Which is real?"
        from cnnlab.analysis import run_analysis
        from cnnlab.run import Run

        run_analysis(Run(root / "digits-a"), "generation", log=quiet, epochs=3, unseen_epochs=2,
                     detector_samples=200, detector_epochs=2)
    return root


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def scene_photo() -> np.ndarray:
    """A 'photo' of another size than the detector reads: a scene enlarged to 150 x 100."""
    from cnnlab.data.scenes import make_scenes

    x = make_scenes(1, 64, seed=5).x[0].permute(1, 2, 0).numpy()
    return np.asarray(Image.fromarray(x).resize((150, 100)))


def test_detection_pose_and_their_errors(runs_dir):
    client = TestClient(create_app(runs_dir))
    body = png(scene_photo())
    r = client.post("/api/detect?run=scenes-det&threshold=0", content=body,
                    headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["width"], res["height"]) == (150, 100) and res["image"].startswith("data:image/png")
    assert res["objects"] and all(-0.5 <= o["box"][0] <= o["box"][2] <= 150.5 and
                                  -0.5 <= o["box"][1] <= o["box"][3] <= 100.5 for o in res["objects"])
    r = client.post("/api/detect?run=scenes-pose", content=body, headers={"content-type": "image/png"})
    assert r.status_code == 422 and "--detector" in r.json()["error"]
    r = client.post("/api/detect?run=scenes-pose&detector=scenes-det&threshold=0", content=body,
                    headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.json()["task"] == "pose"
    r = client.post("/api/detect?run=digits-a", content=body, headers={"content-type": "image/png"})
    assert r.status_code == 422 and "/api/predict" in r.json()["error"]
    r = client.post("/api/detect?run=scenes-det", content=b"not an image",
                    headers={"content-type": "image/png"})
    assert r.status_code == 415


def digit(runs_dir, i: int = 0) -> tuple[bytes, str]:
    run = cnnlab.load_run(runs_dir / "digits-a")
    return png(run.data().eval.x[i, 0].numpy()), run.classes[int(run.data().eval.y[i])]


def test_runs_are_listed_and_reports_served(runs_dir):
    client = TestClient(create_app(runs_dir))
    runs = {r["name"]: r for r in client.get("/api/runs").json()}
    assert set(runs) == {"digits-a", "digits-b", "scenes-det", "scenes-pose"}
    assert runs["digits-a"]["model"] == "lenet5" and runs["scenes-det"]["task"] == "detect"
    assert runs["scenes-det"]["score_name"] == "mAP@0.5:0.95" and runs["scenes-det"]["accuracy"] is None
    assert 0 < runs["digits-a"]["accuracy"] <= 1 and runs["digits-a"]["has_report"]
    assert client.get("/runs/digits-a/report.html").text.startswith("<!doctype html>")
    detail = client.get("/api/runs/digits-b").json()
    assert detail["metrics"]["model"] == "mlp" and len(detail["history"]) == 2
    assert "cnnlab" in client.get("/").text and client.get("/openapi.json").status_code == 200
    samples = client.get("/api/runs/digits-a/samples?n=5").json()
    assert len(samples) == 5 and samples[0]["image"].startswith("data:image/png;base64,")


def test_a_run_with_broken_json_is_left_out_not_a_500(runs_dir, tmp_path):
    """Review: one run folder whose metrics.json was not JSON made the whole list a 500; top=0
    was answered with one class."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "digits-b", root / "good")
    shutil.copytree(runs_dir / "digits-b", root / "broken")
    (root / "broken" / "metrics.json").write_text("{x")
    client = TestClient(create_app(root))
    assert [r["name"] for r in client.get("/api/runs").json()] == ["good"]
    r = client.get("/api/runs/broken")
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]
    body, _ = digit(runs_dir)
    r = client.post("/api/predict?run=good&top=0", content=body, headers={"Content-Type": "image/png"})
    assert r.status_code == 422 and "top must be at least 1" in r.json()["error"]
    # a third review (2026-12-07): a results.csv cut off or edited was a 500, a missing or
    # mistyped parameter answered in FastAPI's own form
    (root / "good" / "results.csv").write_bytes(b"epoch,val_acc\n1,0.5\n2,0.6,extra\n")
    r = client.get("/api/runs/good")
    assert r.status_code == 422 and "results.csv is not a readable table" in r.json()["error"]
    (root / "good" / "results.csv").write_bytes(b"\xff\xfe\x00epoch")
    assert client.get("/api/runs/good").status_code == 422
    r = client.post("/api/predict?top=x", content=body, headers={"Content-Type": "image/png"})
    assert r.status_code == 422 and set(r.json()) == {"error"} and "run" in r.json()["error"]


def test_docs_are_one_page_with_nothing_fetched(runs_dir):
    r = TestClient(create_app(runs_dir)).get("/docs")
    assert r.status_code == 200 and "/api/predict" in r.text and "/api/runs/{name}" in r.text
    assert "http" not in r.text.replace("/openapi.json", "")  # no CDN: it works offline


def test_a_prediction_matches_the_run_and_bad_uploads_get_clear_4xx(runs_dir):
    client = TestClient(create_app(runs_dir, max_upload=200_000))
    body, label = digit(runs_dir)
    r = client.post("/api/predict?run=digits-a", content=body, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and len(r.json()["top"]) == 5
    expected = cnnlab.load_run(runs_dir / "digits-a").predict(
        np.asarray(Image.open(io.BytesIO(body)))[None, :, :, None])[0]
    assert r.json()["top"][0]["probability"] == pytest.approx(float(expected.max()), abs=1e-5)
    big = np.zeros((300, 300, 3), np.uint8)
    big[::2] = 255
    cases = [
        (b"", "image/png", 400, "empty"),
        (b"this is not an image", "image/png", 415, "not a readable image"),
        (body[: len(body) // 2], "image/png", 415, "not a readable image"),
        (body, "text/plain", 415, "Content-Type"),
        (os.urandom(300_000), "image/png", 413, "limit"),
    ]
    for data, kind, status, words in cases:
        r = client.post("/api/predict?run=digits-a", content=data, headers={"Content-Type": kind})
        assert r.status_code == status and words in r.json()["error"], (status, r.text)
        assert "Traceback" not in r.text


def test_the_obvious_curl_calls_work(runs_dir):
    """Issue: `curl --data-binary @x.png` sends a form content type and got 415; `curl -F
    file=@x.png` (multipart) is the other call people type."""
    client = TestClient(create_app(runs_dir, max_upload=200_000))
    body, _ = digit(runs_dir)
    raw = client.post("/api/predict?run=digits-a", content=body,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    form = client.post("/api/predict?run=digits-a", files={"file": ("x.png", body, "image/png")})
    assert raw.status_code == form.status_code == 200, (raw.text, form.text)
    assert raw.json()["top"] == form.json()["top"]
    big = client.post("/api/predict?run=digits-a", files={"file": ("x.png", os.urandom(300_000))})
    assert big.status_code == 413 and "limit" in big.json()["error"]
    empty = client.post("/api/predict?run=digits-a", data={"note": "no file"},
                        headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert empty.status_code == 400


def test_a_decompression_bomb_is_refused_before_decoding(runs_dir, monkeypatch):
    monkeypatch.setenv("CNNLAB_MAX_PIXELS", "10000")
    client = TestClient(create_app(runs_dir))
    big = png(np.zeros((200, 200), np.uint8))  # 40,000 pixels, tiny file
    r = client.post("/api/predict?run=digits-a", content=big, headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and "more than the 10,000 allowed" in r.json()["error"]


def test_run_names_are_looked_up_never_joined(runs_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(runs_dir / "digits-b", outside)
    link = runs_dir / "sneaky"
    link.symlink_to(outside, target_is_directory=True)
    try:
        client = TestClient(create_app(runs_dir))
        assert "sneaky" not in {r["name"] for r in client.get("/api/runs").json()}
        for name in ("sneaky", "..", "%2e%2e", "..%2F..%2Fetc", "/etc"):
            r = client.get(f"/api/runs/{name}")
            assert r.status_code == 404, (name, r.status_code)
        r = client.get("/runs/..%2F..%2Fetc/report.html")
        assert r.status_code == 404
    finally:
        link.unlink()
    # a listed run whose report.html is a link out of its folder (a shared run unpacked here)
    shared = tmp_path / "runs" / "shared"
    shutil.copytree(runs_dir / "digits-b", shared)
    (tmp_path / "secret.txt").write_text("not for the web")
    (shared / "report.html").unlink(missing_ok=True)
    (shared / "report.html").symlink_to(tmp_path / "secret.txt")
    client = TestClient(create_app(tmp_path / "runs"))
    r = client.get("/runs/shared/report.html")
    assert r.status_code == 404 and "not for the web" not in r.text
    assert not client.get("/api/runs").json()[0]["has_report"]  # not offered either
    # found by probing: a metrics.json, meta.json or weights/ linked out of the folder was read
    # (the linked file served whole in /api/runs/NAME)
    (tmp_path / "secret.json").write_text(json.dumps({"secret": "not for the web"}))
    metrics = (shared / "metrics.json").read_text()
    (shared / "metrics.json").unlink()
    (shared / "metrics.json").symlink_to(tmp_path / "secret.json")
    r = client.get("/api/runs/shared")
    assert r.status_code == 422 and "not for the web" not in r.text
    assert "shared" not in {x["name"] for x in client.get("/api/runs").json()}
    (shared / "metrics.json").unlink()
    (shared / "metrics.json").write_text(metrics)
    shutil.move(shared / "weights", tmp_path / "weights")
    (shared / "weights").symlink_to(tmp_path / "weights", target_is_directory=True)
    r = client.get("/api/runs/shared/samples")
    assert r.status_code == 422 and "weights leads outside its folder" in r.json()["error"]


def test_predictions_are_answered_while_a_slow_request_runs(runs_dir):
    """A worker pool: a slow prediction (held up on purpose) does not block a second one."""
    import cnnlab.serve.app as app_module

    client = TestClient(create_app(runs_dir))
    body, _ = digit(runs_dir)
    real = app_module.classify
    gate = threading.Event()

    def slow(*args):
        gate.wait(5)
        return real(*args)

    done = {}
    app_module.classify = slow
    try:
        t = threading.Thread(target=lambda: done.setdefault("slow", client.post(
            "/api/predict?run=digits-a", content=body, headers={"Content-Type": "image/png"})))
        t.start()
        time.sleep(0.2)
        app_module.classify = real
        t0 = time.perf_counter()
        fast = client.post("/api/predict?run=digits-b", content=body, headers={"Content-Type": "image/png"})
        assert fast.status_code == 200 and "slow" not in done  # answered while the slow one waits
        gate.set()
        t.join(10)
        assert done["slow"].status_code == 200 and time.perf_counter() - t0 < 10
    finally:
        app_module.classify = real
        gate.set()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_in_a_real_browser(runs_dir, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(create_app(runs_dir), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    body, label = digit(runs_dir)
    (tmp_path / "digit.png").write_bytes(body)
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "scene.png").write_bytes(png(scene_photo()))
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#runs tbody tr")
            assert page.locator("#runs tbody tr").count() == 4
            page.select_option("#run-select", "digits-a")
            page.wait_for_selector("#samples img")
            page.locator("#samples img").first.click()  # one of the run's evaluation images
            page.wait_for_selector("#result table")
            page.set_input_files("#file", str(tmp_path / "digit.png"))
            page.wait_for_selector("#result table")
            assert page.locator("#result td").first.inner_text() == label
            page.fill("#eps", "0.2")
            page.click("#inspect")  # a job with progress: explanations and an adversarial example
            page.wait_for_selector("#inspection figure", timeout=30_000)
            assert page.locator("#inspection figure").count() == 4
            shots = os.environ.get("CNNLAB_SCREENSHOTS")  # a folder: refresh the README's pictures
            if shots:
                page.screenshot(path=os.path.join(shots, "app.png"), full_page=True)
            if importlib.util.find_spec("torchmetrics"):  # Which is real? pick one, get the answer
                page.wait_for_selector("#game-pair .pick img")
                page.locator("#game-pair .pick").first.click()
                page.wait_for_function("document.getElementById('game-you').textContent.endsWith('/ 1')")
                assert "The detector picked the" in page.locator("#game-result").inner_text()
                if shots:
                    page.locator("#game-section").screenshot(path=os.path.join(shots, "which_is_real.png"))
                page.reload()  # the score is the tab's, per run: a reload keeps it
                page.wait_for_selector("#game-pair .pick img")
                assert page.locator("#game-you").inner_text().endswith("/ 1")
                page.select_option("#run-select", "digits-a")
            page.set_input_files("#file", str(tmp_path / "notes.png"))
            page.wait_for_selector("#result .error")
            assert "not a readable image" in page.locator("#result .error").inner_text()
            page.select_option("#run-select", "scenes-det")  # a detector: boxes drawn on the photo
            page.set_input_files("#file", str(tmp_path / "scene.png"))
            page.wait_for_selector("#detected")
            assert "boxes as x0, y0, x1, y1" in page.locator("#result .note").inner_text()
            if shots:
                page.screenshot(path=os.path.join(shots, "detect.png"), full_page=True)
            with page.expect_navigation():
                page.click("#runs a >> text=digits-a")
            assert page.locator("h2", has_text="Data card").count() == 1  # the run's report
            if shots:
                page.screenshot(path=os.path.join(shots, "report.png"))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(5)


def test_which_is_real_keeps_the_answer_on_the_server_and_tells_it_once(runs_dir):
    pytest.importorskip("torchmetrics")
    client = TestClient(create_app(runs_dir))
    playable = {r["name"]: r["which_is_real"] for r in client.get("/api/runs").json()}
    assert playable == {"digits-a": True, "digits-b": False, "scenes-det": False, "scenes-pose": False}
    r = client.get("/api/runs/digits-a/which-is-real").json()
    assert set(r) == {"round", "left", "right"} and r["left"].startswith("data:image/png;base64,")
    assert client.post(f"/api/which-is-real/{r['round']}?pick=middle").status_code == 422
    a = client.post(f"/api/which-is-real/{r['round']}?pick=left").json()
    assert a["correct"] == (a["real"] == "left") and a["detector"]["real"] in ("left", "right")
    p = a["detector"]["p_generated"]
    assert 0.5 <= a["detector"]["confidence"] <= 1
    assert (a["detector"]["real"] == "left") == (p["left"] <= p["right"])
    again = client.post(f"/api/which-is-real/{r['round']}?pick=left")
    assert again.status_code == 404 and "no open round" in again.json()["error"]
    missing = client.get("/api/runs/digits-b/which-is-real")
    assert missing.status_code == 404 and "no real-or-generated detector" in missing.json()["error"]
    rounds = [client.get("/api/runs/digits-a/which-is-real").json()["round"] for _ in range(12)]
    sides = {client.post(f"/api/which-is-real/{r}?pick=left").json()["real"] for r in rounds}
    assert sides == {"left", "right"}  # the real image is not always on one side


def test_the_pair_probability_knows_one_image_is_real():
    from cnnlab.serve.game import left_is_real

    assert left_is_real(0.1, 0.9) == pytest.approx(0.81 / (0.81 + 0.01))
    assert left_is_real(0.5, 0.5) == 0.5 and left_is_real(0.9, 0.1) < 0.5


def test_an_inspection_job_explains_attacks_and_reports_progress(runs_dir):
    pytest.importorskip("captum")
    client = TestClient(create_app(runs_dir))
    body, _ = digit(runs_dir)
    r = client.post("/api/inspect?run=digits-a&eps=0.1&attack=pgd", content=body,
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    job, seen = r.json()["job"], []
    for _ in range(200):
        state = client.get(f"/api/jobs/{job}").json()
        seen.append(state["progress"])
        if state["state"] != "running":
            break
        time.sleep(0.05)
    assert state["state"] == "done" and seen == sorted(seen), state
    res = state["result"]
    assert res["maps"]["gradcam"].startswith("data:image/png;base64,")
    assert res["linf"] <= 0.1 + 1e-6 and len(res["adversarial"]["top"]) == 5
    # Found by probing: once calibrated, the page showed 26.8% from /api/predict and 10.9% from
    # this job for one image: the job now reads it as predict does (temperature, TTA)
    calibration = runs_dir / "digits-a" / "weights" / "calibration.json"
    calibration.write_text(json.dumps({"temperature": 2.0}))
    try:
        said = client.post("/api/predict?run=digits-a", content=body,
                           headers={"Content-Type": "image/png"}).json()["top"][0]
        job = client.post("/api/inspect?run=digits-a&eps=0.1&attack=fgsm", content=body,
                          headers={"Content-Type": "image/png"}).json()["job"]
        for _ in range(200):
            if (state := client.get(f"/api/jobs/{job}").json())["state"] != "running":
                break
            time.sleep(0.05)
        assert state["result"]["top"][0] == pytest.approx(said)
    finally:
        calibration.unlink()
    bad = client.post("/api/inspect?run=digits-a&eps=2&attack=pgd", content=body,
                      headers={"Content-Type": "image/png"})
    assert bad.status_code == 422 and "eps in (0, 0.5]" in bad.json()["error"]
    assert client.get("/api/jobs/nope").status_code == 404


def test_batched_predictions_equal_one_by_one(runs_dir):
    from cnnlab.serve.batching import Batcher

    run = cnnlab.load_run(runs_dir / "digits-a")
    images = run.data().eval.x[:12].numpy()
    batcher = Batcher(run.predict, max_batch=8, wait_ms=200)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.setdefault(i, batcher.predict(images[i])))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    single = np.stack([run.predict(images[i][None])[0] for i in range(12)])
    assert np.abs(np.stack([results[i] for i in range(12)]) - single).max() < 2e-2  # bf16 on AMX
    assert sum(batcher.sizes) == 12 and max(batcher.sizes) > 1  # some requests shared a call


def test_samples_of_a_folder_run_whose_classes_changed_are_a_422(tmp_path):
    """Found by probing: a class folder added since training made /samples a 500 (IndexError)."""
    folder = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")
    cnnlab.train(cnnlab.TrainConfig(dataset=f"folder:{folder}", model="mlp", epochs=1, image_size=8,
                                    out_dir=str(tmp_path / "runs"), name="f"), log=quiet, report=False)
    client = TestClient(create_app(tmp_path / "runs"))
    assert client.get("/api/runs/f/samples?n=4").status_code == 200
    (folder / "c").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "c" / "0.png")
    client = TestClient(create_app(tmp_path / "runs"))  # a fresh app: the run is read again
    r = client.get("/api/runs/f/samples?n=48")
    assert r.status_code == 422 and "the model knows a, b" in r.json()["error"]


def test_unknown_routes_and_methods_answer_in_the_apis_one_form(runs_dir):
    """Found by probing: they answered {"detail": ...}, where the docs promise {"error": ...}."""
    client = TestClient(create_app(runs_dir))
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and "Not Found: GET /api/nothing-here" in r.json()["error"]
    r = client.delete("/api/runs")
    assert r.status_code == 405 and "error" in r.json()


def test_served_on_this_machine_only_requests_naming_it_are_answered(runs_dir):
    """Found by probing: any Host header was answered, so a web page that rebinds its domain to
    127.0.0.1 could read /api/runs (DNS rebinding)."""
    client = TestClient(create_app(runs_dir, hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1")
    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/runs", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
