"""Load on the web app's /api/predict: N concurrent clients on loopback for a fixed time.

    python benchmarks/serve_load.py [--clients 8] [--seconds 20] [--run runs/NAME]

Without --run, trains a ResNet-20 on 32x32 shapes for one epoch (latency does not depend on
the weights), serves its folder with uvicorn on 127.0.0.1, and fires PNG uploads of
evaluation images from N client threads, each waiting for its answer before the next.
Prints and appends to RESULTS.md: requests/s, p50 and p99 latency, errors. Target: no error
and p99 under 500 ms for ResNet-20 on 2 cores at 8 clients.
"""

from __future__ import annotations

import argparse
import io
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from common import append_result, machine
from PIL import Image

import cnnlab
from cnnlab.serve.app import create_app


def prediction_during_attack(port: int, name: str, body: bytes) -> str:
    """Start an explain-and-attack job, then time one prediction while it runs."""
    base = f"http://127.0.0.1:{port}"
    job = httpx.post(f"{base}/api/inspect?run={name}&eps=0.03", content=body,
                     headers={"Content-Type": "image/png"}, timeout=30).json()["job"]
    t0 = time.perf_counter()
    r = httpx.post(f"{base}/api/predict?run={name}", content=body, headers={"Content-Type": "image/png"})
    ms = 1000 * (time.perf_counter() - t0)
    running = httpx.get(f"{base}/api/jobs/{job}").json()["state"] == "running"
    t1 = time.perf_counter()
    while httpx.get(f"{base}/api/jobs/{job}").json()["state"] == "running":
        time.sleep(0.05)
    return (f"a prediction sent as an explain-and-attack job started: status {r.status_code} in "
            f"{ms:.0f} ms, {'while the job was still running' if running else 'after the job ended'} "
            f"(the job ended {1000 * (time.perf_counter() - t1):.0f} ms later)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--run", default="")
    p.add_argument("--no-batching", action="store_true", help="one model call per request")
    a = p.parse_args()
    if a.run:
        run = cnnlab.load_run(a.run)
    else:
        run = cnnlab.train(cnnlab.TrainConfig(dataset="shapes", image_size=32, limit_train=1000,
                                              model="resnet20", epochs=1, out_dir=tempfile.mkdtemp(),
                                              name="resnet20"), log=lambda s: None, report=False)
    bodies = []
    for img in run.data().eval.x[:64].numpy():
        buf = io.BytesIO()
        Image.fromarray(img.transpose(1, 2, 0).squeeze()).save(buf, format="PNG")
        bodies.append(buf.getvalue())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(create_app(Path(run.path).parent, batching=not a.no_batching),
                                           host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/api/predict?run={run.path.name}"
    httpx.post(url, content=bodies[0], headers={"Content-Type": "image/png"})  # load the model
    during = prediction_during_attack(port, run.path.name, bodies[0])
    latencies, errors, stop = [], [], time.perf_counter() + a.seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=30) as c:
            i = k
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = c.post(url, content=bodies[i % len(bodies)], headers={"Content-Type": "image/png"})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append(r.status_code)
                i += a.clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server.should_exit = True
    ms = 1000 * np.array(latencies)
    line = (f"{run.meta['model']} ({run.meta['input_shape']}), {a.clients} clients, "
            f"{'no batching, ' if a.no_batching else 'server-side batching, '}{wall:.0f} s: "
            f"{len(ms) / wall:.1f} requests/s, p50 {np.percentile(ms, 50):.0f} ms, p99 "
            f"{np.percentile(ms, 99):.0f} ms, {len(errors)} errors of {len(ms)}; {during}")
    print(line)
    append_result("web app load, POST /api/predict on loopback", line, " ".join(["python", *sys.argv]),
                  machine())


if __name__ == "__main__":
    main()
