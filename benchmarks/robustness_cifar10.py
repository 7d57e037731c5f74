"""Clean and robust accuracy of a trained run, and PGD throughput ours versus torchattacks.

    python benchmarks/robustness_cifar10.py runs/bench/RUN --n 1000 --throughput-n 5000

Robust accuracy at eps = 8/255 (L-inf) on n random validation images: PGD-20 (step
2/255, Madry et al. 2018), apgd-ens = APGD-CE + APGD-DLR (100 steps each; two of AutoAttack's four),
and both together (robust only if every attack fails). Then seconds for PGD-10 over
throughput-n images, our implementation against torchattacks.PGD, in one process.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from common import append_result, machine

import cnnlab
from cnnlab.robustness.attacks import pgd
from cnnlab.robustness.evaluate import robust_accuracy

EPS = 8 / 255


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--throughput-n", type=int, default=5000)
    a = p.parse_args()
    run = cnnlab.load_run(a.run)
    cfg, data = run.config, run.data()
    model = run.load_model()
    val = data.eval.sample(a.n, seed=0)  # random: the file is sorted by class
    x, y = val.x.float() / 255, val.y
    torch.manual_seed(0)
    t0 = time.process_time()
    r_pgd = robust_accuracy(model, x, y, ["pgd"], EPS, steps=20, step_size=2 / 255)
    t_pgd = time.process_time() - t0
    t0 = time.process_time()
    r_aa = robust_accuracy(model, x, y, ["apgd-ens"], EPS)
    t_aa = time.process_time() - t0
    robust_both = float((r_pgd["robust_mask"] & r_aa["robust_mask"]).float().mean())
    kind = f"adversarially trained ({cfg.adv}, eps {cfg.adv_eps * 255:.0f}/255)" if cfg.adv else "standard"
    line = (f"{cfg.model} {kind}, {cfg.epochs} epochs: clean {100 * r_pgd['clean_accuracy']:.2f}%, "
            f"PGD-20 {100 * r_pgd['robust_accuracy']:.2f}% ({t_pgd:.0f} CPU-s), APGD-CE+DLR "
            f"{100 * r_aa['robust_accuracy']:.2f}% ({t_aa:.0f} CPU-s), all {100 * robust_both:.2f}% "
            f"on {a.n} val images; training took {run.metrics['train_time_s'] / 60:.1f} min")
    print(line)
    append_result("robust accuracy, CIFAR-10 val, eps 8/255", line, " ".join(["python", *sys.argv]),
                  machine())
    if a.throughput_n:
        val = data.eval.sample(a.throughput_n, seed=0)
        throughput(model, val.x.float() / 255, val.y)


def throughput(model, x, y) -> None:
    import torchattacks

    model.eval()
    batches = range(0, len(x), 250)
    t0 = time.perf_counter()
    for i in batches:
        pgd(model, x[i: i + 250], y[i: i + 250], EPS, steps=10, step_size=2 / 255)
    ours = time.perf_counter() - t0
    ref = torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=10, random_start=True)
    t0 = time.perf_counter()
    for i in batches:
        ref(x[i: i + 250], y[i: i + 250])
    theirs = time.perf_counter() - t0
    line = (f"PGD-10 over {len(x)} images: ours {ours:.1f} s, torchattacks "
            f"{torchattacks.__version__} {theirs:.1f} s")
    print(line)
    append_result("PGD-10 throughput", line, " ".join(["python", *sys.argv]), machine())


if __name__ == "__main__":
    main()
