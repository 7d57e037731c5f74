"""Wall time of the main job, `cnnlab run` on the embedded digits, from a warm venv.

    python benchmarks/cnnlab_run.py                       # torch's default thread count
    python benchmarks/cnnlab_run.py --threads 1 --busy    # one thread, with another busy process

Runs the real command in a subprocess (so imports count) and appends a row to RESULTS.md with
the time of each step as `cnnlab run` prints it, and every claim of the report's opening table
with what this run measured (the README's rows marked `cnnlab run` cite these rows).
``--busy`` keeps one core busy with another process during the run: what a laptop user's
machine looks like.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import append_result, machine

import cnnlab
from cnnlab.analysis import load_results
from cnnlab.config import TrainConfig
from cnnlab.evaluate.predict import use_bf16
from cnnlab.report.claims import STATUS, collect_claims


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=None, help="default: cnnlab run's own (1)")
    p.add_argument("--busy", action="store_true", help="keep one core busy during the run")
    a = p.parse_args()
    out = tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "cnnlab", "run", "--out-dir", out, "--name", "bench"]
    cmd += [] if a.threads is None else ["--threads", str(a.threads)]
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if a.busy else None
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    finally:
        if hog is not None:
            hog.kill()
    steps = next(line for line in proc.stdout.splitlines() if line.startswith("time: "))
    models = load_results(Path(out) / "bench", "mlp_vs_cnn")[0][0].result["models"]
    accs = ", ".join(f"{m['model']} {100 * m['accuracy']:.2f}%" for m in models)
    load = "one other busy process" if a.busy else "quiet"
    threads = "cnnlab run's default 1" if a.threads is None else a.threads or "torch's default"
    bf16 = use_bf16(TrainConfig(), "cpu")
    claims = collect_claims(cnnlab.load_run(Path(out) / "bench"))
    shown = sum(c.holds is True for *_, c in claims)
    verdicts = "; ".join(f"{c.claim} ({STATUS[c.holds][0]}): {c.verdict}" for *_, c in claims)
    line = (f"{wall:.1f} s wall ({load}, threads {threads}, precision auto = "
            f"{'bf16' if bf16 else 'fp32'}); {steps}; test accuracy {accs}; "
            f"{shown} of {len(claims)} claims shown: {verdicts}")
    print(line)
    append_result("`cnnlab run` on digits (whole lecture)", line, " ".join(["python", *sys.argv]),
                  machine())


if __name__ == "__main__":
    main()
