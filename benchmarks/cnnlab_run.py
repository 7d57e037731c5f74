"""Wall time of the main job, `cnnlab run` on the embedded digits, from a warm venv.

    python benchmarks/cnnlab_run.py

Runs the real command in a subprocess (so imports count) and appends a row to RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import append_result, machine


def main() -> None:
    out = tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "cnnlab", "run", "--out-dir", out, "--name", "bench"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    run = Path(out) / "bench"
    acc = json.loads((run / "metrics.json").read_text())["accuracy"]
    models = json.loads((run / "analysis" / "mlp_vs_cnn.json").read_text())["models"]
    accs = ", ".join(f"{m['model']} {100 * m['accuracy']:.2f}%" for m in models)
    print(f"cnnlab run: {wall:.1f} s wall; LeNet-5 test accuracy {100 * acc:.2f}%; {accs}")
    append_result("`cnnlab run` on digits (whole lecture)",
                  f"{wall:.1f} s wall; test accuracy {accs}", "cnnlab run", machine())


if __name__ == "__main__":
    main()
