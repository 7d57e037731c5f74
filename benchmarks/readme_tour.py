"""The README's tour of the CLI as a new user types it, on small budgets, beside a busy process.

    python benchmarks/readme_tour.py            # one core kept busy by another process
    python benchmarks/readme_tour.py --quiet    # nothing else running

Runs each command of the tour in a subprocess (imports count), in order, in a scratch
folder: one small digits run (the tour's runs/NAME), then every verb on it. Budgets are cut
where a default takes minutes (epochs, images, shadows), and the CIFAR-10 recipe runs on a
tiny npz in the CIFAR layout (no download). Prints each command, its exit status and wall
time, and appends one row to RESULTS.md; a command that fails is named in the row.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import append_result, machine
from PIL import Image


def torchvision_resnet18(out: Path) -> Path:
    """A weights file as torchvision publishes it (random weights; nothing is downloaded)."""
    import hashlib

    import torch
    import torchvision

    tmp = out / "w.pth"
    torch.save(torchvision.models.resnet18().state_dict(), tmp)
    path = out / f"resnet18-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(path)
    return path


def tour(out: Path) -> list[tuple[str, list[str]]]:
    run, cnn = str(out / "runs" / "t"), [sys.executable, "-m", "cnnlab"]
    npz = out / "my_images.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, x=rng.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8), y=np.arange(600) % 10)
    photos = out / "photos"
    for c in ("cat", "dog"):
        (photos / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(photos / c / f"{i}.png")
    image = photos / "cat" / "0.png"
    runs = ["--out-dir", str(out / "runs")]
    weights = torchvision_resnet18(out)
    return [
        ("--help", cnn + ["--help"]),
        ("run (main job, small)", cnn + ["run", "--epochs", "3", "--limit-train", "400", "--name", "main"]
         + runs),
        ("models", cnn + ["models"]),
        ("datasets", cnn + ["datasets"]),
        ("train digits (the tour's run)", cnn + ["train", "--epochs", "4", "--checkpoints", "4",
                                                 "--name", "t"] + runs),
        ("train --config cifar10_resnet20 (npz)", cnn + ["train", "--config", "configs/cifar10_resnet20.yaml",
                                                         "--dataset", f"npz:{npz}", "--epochs", "1",
                                                         "--threads", "1"] + runs),
        ("train npz --val-split", cnn + ["train", "--dataset", f"npz:{npz}", "--val-split", "100", "--model",
                                         "resnet20", "--epochs", "1"] + runs),
        ("train folder --init-from", cnn + ["train", "--dataset", f"folder:{photos}", "--init-from",
                                            str(out / "runs" / "main"), "--epochs", "2", "--name", "small"]
         + runs),
        ("train timm:resnet18 --pretrained .pth", cnn + ["train", "--model", "timm:resnet18", "--pretrained",
                                                          str(weights), "--dataset", f"folder:{photos}",
                                                          "--image-size", "32", "--epochs", "2"] + runs),
        ("lr-find folder", cnn + ["lr-find", "--dataset", f"folder:{photos}", "--model", "resnet20",
                                  "--out", str(out / "lr_find.png")]),
        ("train --lr auto", cnn + ["train", "--lr", "auto", "--epochs", "2"] + runs),
        ("experiment transfer", cnn + ["experiment", "transfer", str(out / "runs" / "small")]),
        ("evaluate", cnn + ["evaluate", run, "--out", str(out / "metrics.json")]),
        ("predict folder", cnn + ["predict", run, str(photos), "--out", str(out / "preds.csv")]),
        ("report", cnn + ["report", run]),
        ("export --quantize int8", cnn + ["export", run, "--quantize", "int8"]),
        ("predict model.onnx", cnn + ["predict", f"{run}/export/model.onnx", str(image)]),
        ("experiment mlp-vs-cnn", cnn + ["experiment", "mlp-vs-cnn", run]),
        ("experiment permutation", cnn + ["experiment", "permutation", run, "--dataset", "shapes", "--cnn",
                                          "resnet20", "--seeds", "2", "--limit-train", "500",
                                          "--epochs", "2"]),
        ("explain filters --image", cnn + ["explain", "filters", run, "--image", str(image)]),
        ("explain attributions", cnn + ["explain", "attributions", run, "--methods", "saliency,gradcam",
                                        "--index", "3", "--n", "8"]),
        ("tree", cnn + ["tree", run]),
        ("value --noise --retrain --export-review", cnn + ["value", run, "--noise", "0.1", "--retrain", "0.1",
                                                           "--folds", "0", "--export-review",
                                                           str(out / "review.csv")]),
        ("explain influence", cnn + ["explain", "influence", run]),
        ("calibrate", cnn + ["calibrate", run]),
        ("audit bias", cnn + ["audit", "bias", run]),
        ("audit energy --folder", cnn + ["audit", "energy", run, "--folder", str(out / "runs")]),
        ("audit privacy (small)", cnn + ["audit", "privacy", run, "--members", "300", "--nonmembers", "600",
                                         "--shadows", "2", "--epochs", "4"]),
        ("audit provenance", cnn + ["audit", "provenance", run]),
        ("audit --bias --energy --provenance", cnn + ["audit", run, "--bias", "--energy", "--provenance"]),
        ("train --dp-epsilon 8", cnn + ["train", "--epochs", "2", "--limit-train", "500", "--dp-epsilon", "8",
                                        "--dp-delta", "1e-5", "--dp-clip", "1.0"] + runs),
        ("run --country FRA (reused)", cnn + ["run", "--name", "main", "--country", "FRA"] + runs),
        ("experiment spurious (small)", cnn + ["experiment", "spurious", run, "--seeds", "2", "--limit-train",
                                               "600", "--epochs", "2", "--image-size", "16"]),
        ("train shapes:bias --groups dro", cnn + ["train", "--dataset", "shapes:bias=0.95", "--groups", "dro",
                                                  "--epochs", "1", "--limit-train", "500"] + runs),
        ("attack", cnn + ["attack", run, "--attacks", "fgsm,pgd,apgd-ens", "--eps", "8/255", "--n", "100",
                          "--curve-n", "50"]),
        ("calibrate --train-on digits", cnn + ["calibrate", "--train-on", "digits"] + runs),
        ("train --adv pgd", cnn + ["train", "--adv", "pgd", "--epochs", "1", "--limit-train", "300"] + runs),
        ("generate train --head conditional", cnn + ["generate", "train", "--head", "conditional", "--epochs",
                                                     "3", "--judge", run, "--name", "gan"] + runs),
        ("generate sample --label 7", cnn + ["generate", "sample", str(out / "runs" / "gan"), "-n", "16",
                                             "--out", str(out / "grid.png"), "--label", "7"]),
        ("generate eval", cnn + ["generate", "eval", str(out / "runs" / "gan"), "-n", "100"]),
        ("generate train --config configs/gan_shapes.yaml", cnn + [
            "generate", "train", "--config", "configs/gan_shapes.yaml", "--epochs", "1", "--limit-train",
            "400", "--eval-every", "1"] + runs),
        ("experiment generation", cnn + ["experiment", "generation", run]),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quiet", action="store_true", help="no busy process beside the tour")
    a = p.parse_args()
    root = Path(__file__).resolve().parent.parent
    hog = None if a.quiet else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    rows, failed = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for what, cmd in tour(Path(tmp)):
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                                      stdin=subprocess.DEVNULL)
                wall = time.perf_counter() - t0
                status = "" if proc.returncode == 0 else f" (exit {proc.returncode})"
                rows.append(f"{what} {wall:.1f} s{status}")
                if proc.returncode:
                    failed.append(f"{what}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
                print(f"{wall:7.1f} s  exit {proc.returncode}  {what}", flush=True)
                if proc.returncode:
                    print("         " + failed[-1], flush=True)
    finally:
        if hog:
            hog.kill()
    where = "quiet" if a.quiet else "beside one busy process"
    line = "; ".join(rows) + (f". Failed: {' | '.join(failed)}" if failed else ". Every command exited 0")
    append_result(f"README tour on small budgets, {where}", line,
                  " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
