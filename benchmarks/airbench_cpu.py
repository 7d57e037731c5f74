"""airbench beside fastnet on the CPU, in one run: same images, same split, same threads.

    pip install airbench==0.1.8                        # the reference; cnnlab never imports it
    python benchmarks/test_split.py                    # the fixed test split (once)
    python benchmarks/airbench_cpu.py                  # airbench94 vs two fastnet recipes, 2 seeds
    python benchmarks/airbench_cpu.py --pairs 95:configs/cifar10_fast93.yaml

The images: benchmarks/test_split.py's file. Both train on the same 40,000 images (cnnlab's
``--val-split 5000`` hold-out of the file's 45,000, handed to airbench in its own file layout)
and are scored on the 5,000 validation images and on the 5,000 test images nothing is ever
chosen on; claims are stated on the test split.

airbench made to run on the CPU without changing its recipe: its own ``train94`` /
``train95`` / ``train96`` with their architecture, schedule, epochs, lookahead and TTA. What
differs is the device: its ``.half().cuda()`` leaves the network in fp32 on the CPU, where its
forward runs under bf16 autocast when fastnet's does (``precision auto`` on a CPU with AMX,
or ``--precision``); its loaders read onto the CPU and hold fp32 pixels, not fp16; CUDA
events become a wall clock; the global RNG is seeded per run. Its time is its own definition
(whitening initialisation plus training epochs, no evaluation); fastnet's is the trainer's
``train_elapsed`` (training epochs; evaluation and checkpoints excluded): both exclude
imports and data loading.

Runs alternate A, B, A, B (each in its own process, one after the other), so a slow moment of
the machine falls on both. Each pair prints test accuracy and wall time with their ratio, and
appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import append_result, machine
from test_split import DEFAULT_OUT, write_split

ROOT = Path(__file__).resolve().parent.parent
VAL = 5000


# ---- one airbench run, in its own process ------------------------------------------------

def airbench_job(name: str, seed: int, folder: Path, precision: str, threads: int) -> dict:
    """Train airbench's ``train<name>`` once on the CPU; its accuracy on both hold-outs."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    clock = _patch_for_cpu(torch, nn)
    import airbench
    from airbench import utils

    # its training function opens cifar10/test.pt itself, relative to here, on device 0
    os.chdir(folder)
    init = utils.CifarLoader.__init__
    init.__defaults__ = (*init.__defaults__[:-1], "cpu")
    lib = sys.modules[f"airbench.lib_airbench{name}"]
    hyp = lib.hyp

    def loader(split: str, train: bool, batch_size: int, **kw):
        out = utils.CifarLoader(str(folder / split), train=train, batch_size=batch_size, gpu="cpu", **kw)
        out.images = out.images.float()  # fp32 pixels: the CPU has no fast fp16
        return out

    bf16 = precision == "bf16"
    make_net = getattr(lib, f"make_net{name}")

    def net() -> nn.Module:
        model = make_net()
        forward = model.forward

        def autocast_forward(x):
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return forward(x).float()
        model.forward = autocast_forward
        return model

    torch.manual_seed(seed)
    train_loader = loader("cifar10", True, hyp["opt"]["batch_size"], aug=hyp["aug"], altflip=True)
    model = getattr(airbench, f"train{name}")(train_loader=train_loader, make_net=net, verbose=False)
    seconds = clock.total
    accs = {}
    for split in ("val", "test"):
        accs[split] = utils.evaluate(model, loader(split, False, 2000), tta_level=hyp["net"]["tta_level"])
    return {"val_acc": accs["val"], "test_acc": accs["test"], "train_s": seconds}


def _patch_for_cpu(torch, nn):
    """The device changes, and a wall clock in place of CUDA events (summed as airbench sums
    its events: every measured interval, i.e. whitening plus training epochs)."""
    class Clock:
        total = 0.0

    class Event:
        def __init__(self, **_):
            self.t = 0.0

        def record(self):
            self.t = time.perf_counter()

        def elapsed_time(self, end) -> float:
            ms = 1e3 * (end.t - self.t)
            Clock.total += ms / 1e3
            return ms

    torch.cuda.Event = Event
    torch.cuda.synchronize = lambda *a, **k: None
    nn.Module.cuda = lambda self, *a, **k: self
    nn.Module.half = lambda self: self  # fp32 weights; bf16 autocast decides the compute
    return Clock


def airbench_files(split_file: Path, folder: Path) -> None:
    """train.pt with the 40,000 training images, val/ and test/ with the two hold-outs, in
    airbench's layout (uint8 N x 32 x 32 x 3, labels, classes).

    The training images are written in a seeded random order, as the official training file
    is: airbench initialises its whitening from the first 5,000, and the benchmark copy is
    sorted by class (its first 5,000 would all be airplanes)."""
    import torch

    from cnnlab.data import load_dataset, prepare_data

    data = prepare_data(f"npz:{split_file}", "", 0, VAL, seed=0)
    test = load_dataset(f"npz:{split_file}").test
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    for sub, ds, name in (("cifar10", data.train.subset(order), "train.pt"),
                          ("cifar10", data.eval, "test.pt"), ("val", data.eval, "test.pt"),
                          ("test", test, "test.pt")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        torch.save({"images": ds.x.permute(0, 2, 3, 1).contiguous(), "labels": ds.y.long(),
                    "classes": list(ds.classes)}, folder / sub / name)


# ---- one fastnet run: the real command ---------------------------------------------------

def fastnet_job(recipe: str, seed: int, split_file: Path, out: Path) -> dict:
    import csv

    import cnnlab

    config, _, extra = recipe.partition(":")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in
             (kv.split("=", 1) for kv in filter(None, extra.split(",")))]
    name = f"{Path(config).stem}-s{seed}-{int(time.time())}"
    subprocess.run([sys.executable, "-m", "cnnlab", "train", "--config", config, "--dataset",
                    f"npz:{split_file}", "--val-split", str(VAL), "--seed", str(seed),
                    "--threads", "2", "--out-dir", str(out), "--name", name, *flags],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = cnnlab.load_run(out / name)
    with open(run.path / "results.csv") as f:
        train_s = float(list(csv.DictReader(f))[-1]["train_elapsed"])
    return {"val_acc": run.metrics["accuracy"], "test_acc": run.evaluate()["accuracy"],
            "train_s": train_s, "precision": run.metrics.get("precision", "")}


# ---- the A/B run -------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10/train.npz"),
                   help="the benchmark copy (the split file is derived from it)")
    p.add_argument("--pairs", nargs="+", default=["94:configs/cifar10_fast.yaml",
                                                  "94:configs/cifar10_fast90_bf16.yaml:epochs=10"],
                   help="AIRBENCH:CONFIG[:flag=value,...], e.g. 94:configs/cifar10_fast.yaml")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="airbench's compute (auto: bf16 where cnnlab's auto picks it)")
    p.add_argument("--job", help=argparse.SUPPRESS)  # internal: one airbench run
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.job:
        print(json.dumps(airbench_job(a.job, a.seed, Path(a.folder), a.precision, 2)))
        return
    split_file = DEFAULT_OUT
    sha = write_split(Path(a.data), split_file)
    work = Path(tempfile.mkdtemp(prefix="airbench-cpu-"))
    airbench_files(split_file, work)
    precision = a.precision
    if precision == "auto":
        from cnnlab.config import TrainConfig
        from cnnlab.evaluate.predict import use_bf16

        precision = "bf16" if use_bf16(TrainConfig(precision="auto"), "cpu") else "fp32"
    results = {pair: {"A": [], "B": []} for pair in a.pairs}
    for seed in range(a.seeds):
        for pair in a.pairs:
            name, _, recipe = pair.partition(":")
            out = subprocess.run([sys.executable, __file__, "--job", name, "--seed", str(seed),
                                  "--folder", str(work), "--precision", precision], check=True,
                                 capture_output=True, text=True, cwd=work)
            results[pair]["A"].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"airbench{name} seed {seed}: {results[pair]['A'][-1]}", flush=True)
            results[pair]["B"].append(fastnet_job(recipe, seed, split_file, work / "runs"))
            print(f"fastnet {recipe} seed {seed}: {results[pair]['B'][-1]}", flush=True)
    for pair, r in results.items():
        name, _, recipe = pair.partition(":")
        words = summary(f"airbench{name}", r["A"], recipe, r["B"], precision)
        print(words)
        append_result(f"airbench{name} against fastnet on the CPU, same 40,000 images, same "
                      f"threads (2), A/B alternating", f"{words}; split sha256 {sha[:12]}",
                      " ".join(["python", *sys.argv]), machine())  # its load before and after


def summary(a_name: str, a: list[dict], recipe: str, b: list[dict], precision: str) -> str:
    def mean(rows, key):
        return statistics.mean(r[key] for r in rows)

    def accs(rows, key):
        return "/".join(f"{100 * r[key]:.2f}" for r in rows)

    ratio = mean(b, "train_s") / mean(a, "train_s")
    holds = mean(b, "test_acc") >= mean(a, "test_acc") and ratio <= 0.5
    return (f"{a_name} ({precision}): test {100 * mean(a, 'test_acc'):.2f}% ({accs(a, 'test_acc')}), "
            f"val {100 * mean(a, 'val_acc'):.2f}%, {mean(a, 'train_s'):.0f} s; fastnet {recipe}: test "
            f"{100 * mean(b, 'test_acc'):.2f}% ({accs(b, 'test_acc')}), val {100 * mean(b, 'val_acc'):.2f}%, "
            f"{mean(b, 'train_s'):.0f} s; time ratio {ratio:.2f}: target (test accuracy at least "
            f"airbench's in at most 0.5x its time) {'met' if holds else 'missed'}")


if __name__ == "__main__":
    main()
