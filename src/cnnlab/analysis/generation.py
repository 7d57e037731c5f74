"""Beyond supervised learning: a GAN on the run's own data, measured, and a CNN that tells real
images from generated ones.

The generator is a sub-run (``task: generate``) judged by the run's own classifier: its
embedding gives the domain FID and its labels say which classes the samples show. Two
questions of the course come with it. *Did it copy its training images?* (the near-copy
statistic of cnnlab.evaluate.generation; with ``few`` a second GAN on a few images, which can
memorise them). *Can a CNN tell a generated image from a real one?* A detector (LeNet-5, real
= class 0, generated = class 1) trains on training images and samples of the GAN, and is
scored on held-out real images against fresh samples of that GAN and of a generator it never
saw (the other architecture, another seed): whether detection carries over to a new generator
is the practical deepfake question.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.analysis.registry import Analysis, Claim, SectionContext, register
from cnnlab.errors import CnnlabError
from cnnlab.log import Log
from cnnlab.viz.html import esc, para, table

if TYPE_CHECKING:
    from cnnlab.run import Run

COPY_LIMIT = 0.10
"""Near-copies the claim "it makes new images" allows: twice the 5% of a generator that copies
nothing (a good generator's samples lie a little nearer the data than held-out images)."""


def generation(run: Run, *, epochs: int = 60, head: str = "conditional", width: int = 32,
               unseen_epochs: int = 0, detector_samples: int = 2000, detector_epochs: int = 8,
               few: int = 0, few_epochs: int = 300, diffusion_epochs: int = 0,
               log: Log = print) -> dict:
    """Train a GAN on the run's data (judged by the run's classifier), measure it, and train a CNN
    that tells its images from real ones.

    Args:
        epochs: epochs of the GAN.
        head: conditional (a label embedding in both networks) or dcgan (unconditional).
        width: the generator's and discriminator's base width.
        unseen_epochs: epochs of the generator the detector never sees (the other head, the
            next seed; 0: epochs).
        detector_samples: generated images the detector trains on (as many real ones beside).
        detector_epochs: epochs of the real-vs-generated detector.
        few: also train a GAN on this many training images only, to see memorisation
            (0: skip; 100 shows it).
        few_epochs: epochs of that GAN (few images need many passes).
        diffusion_epochs: also train a class-conditional diffusion model for this many epochs,
            judged alike, to set the two families side by side with their training and
            sampling times (0: skip; on the digits an epoch of it takes about 7 of the GAN's).
    """
    if head not in ("conditional", "dcgan"):
        raise CnnlabError(f"generation --head {head}: choose conditional or dcgan")
    gan = run.subrun(gan_config(run, epochs, head, width), "gan", log)
    other = "dcgan" if head == "conditional" else "conditional"
    unseen = run.subrun(gan_config(run, unseen_epochs or epochs, other, width, seed_offset=1),
                        "gan-unseen", log)
    detector = real_or_generated(run, gan, unseen, detector_samples, detector_epochs, log)
    out = {"gan": summary(gan), "unseen": summary(unseen), "detector": detector, "head": head,
           "dataset": run.config.dataset,
           "subruns": {"gan": str(gan.path.relative_to(run.path)),
                       "gan-unseen": str(unseen.path.relative_to(run.path))}}
    if few:
        small = run.subrun(gan_config(run, few_epochs, head, width, limit_train=few), "gan-few", log)
        out["few"] = summary(small) | {"n_train": few}
        out["subruns"]["gan-few"] = str(small.path.relative_to(run.path))
    if diffusion_epochs:  # the same conditioning as the GAN; one evaluation, at the end
        family = "ddpm-conditional" if head == "conditional" else "ddpm"
        diff = run.subrun(gan_config(run, diffusion_epochs, family, width).derive(
            eval_every=diffusion_epochs), "diffusion", log)
        out["diffusion"] = summary(diff)
        out["subruns"]["diffusion"] = str(diff.path.relative_to(run.path))
        for key, sub in (("gan", gan), ("diffusion", diff)):
            out[key]["sample_s"] = sampling_seconds(sub)
    g = out["gan"]
    log(f"GAN: domain FID {g['fid']:.3f} (floor {g['floor']:.3f}), classes produced "
        f"{100 * g['classes_covered']:.0f}%, near-copies {100 * g['copies']['copy_share']:.1f}%; "
        f"{detector['words']}")
    return out


def gan_config(run: Run, epochs: int, head: str, width: int, seed_offset: int = 0,
               limit_train: int = 0):
    """The generator sub-run's recipe (``cnnlab generate train``'s for ``head``) on the run's
    data and split."""
    from cnnlab.config import TrainConfig, generate_defaults

    c = run.config
    return TrainConfig(**generate_defaults(head)).derive(
        dataset=c.dataset, data_dir=c.data_dir, image_size=c.image_size, val_split=c.val_split,
        val_seed=c.val_seed, limit_train=limit_train or c.limit_train, seed=c.seed + seed_offset,
        head=head, epochs=epochs, eval_every=max(1, epochs // 12), model_kwargs={"width": width},
        judge=str(run.path.resolve()), threads=c.threads, precision=c.precision, device="cpu")


def summary(sub: Run) -> dict:
    """What the section and the claims read of a GAN sub-run."""
    import json

    r = json.loads((sub.path / "generation.json").read_text())
    m = sub.metrics
    return {"fid": r["generated"]["fid"], "floor": r["floor"]["fid"], "kid": r["generated"]["kid"],
            "kid_floor": r["floor"]["kid"], "precision": r["generated"]["precision"],
            "recall": r["generated"]["recall"], "classes_covered": r["labels"]["classes_covered"],
            "collapsed": r["labels"]["collapsed"], "label_agreement": r.get("label_agreement"),
            "label_agreement_n": r.get("label_agreement_n", r["n"]),  # stored before: FID's n, fewer
            "copies": r["copies"]["features"], "copies_pixels": r["copies"]["pixels"],
            "n": r["n"], "train_time_s": m["train_time_s"], "epochs": m["epochs"],
            "training_s": training_seconds(sub),
            "g_params": m.get("g_params"), "d_params": m.get("d_params"),
            "params": sum(m.get("parameters", {}).values()), "head": sub.config.head,
            "sampling_steps": sub.config.sampling_steps}


def training_seconds(sub: Run) -> float:
    """Seconds of training steps alone (``train_elapsed`` of the last epoch; ``train_time_s``
    also counts the evaluations, each a thousand images drawn)."""
    import csv

    rows = list(csv.DictReader((sub.path / "results.csv").read_text().splitlines()))
    return float(rows[-1]["train_elapsed"]) if rows else float(sub.metrics["train_time_s"])


def sampling_seconds(sub: Run, n: int = 1000) -> float:
    """Seconds to draw ``n`` images from a generator sub-run (one GAN pass each, or
    ``sampling_steps`` UNet passes for a diffusion model)."""
    import time

    model = sub.load_model()
    model.sample(8, seed=21)  # warm up (first-call allocations)
    t = time.perf_counter()
    model.sample(n, seed=20)
    return time.perf_counter() - t


def real_or_generated(run: Run, gan: Run, unseen: Run | None, n: int, epochs: int, log: Log) -> dict:
    """Train LeNet-5 to tell training images (0) from the GAN's samples (1); score it on held-out
    real images against fresh samples of the same GAN and of the unseen generator (if any). The
    detector is a sub-run of ``run``."""
    from hashlib import sha256

    import numpy as np
    import torch

    from cnnlab.config import TrainConfig
    from cnnlab.evaluate.stats import accuracy_ci
    from cnnlab.io import save_npz

    data = gan.data()
    real_train, real_test = data.train.x, data.eval.x
    n = min(n, len(real_train))
    g = gan.load_model()
    k = len(real_test)
    pick = torch.randperm(len(real_train), generator=torch.Generator().manual_seed(0))[:n]
    x = torch.cat([real_train[pick], g.sample(n, seed=10)])
    x_test = torch.cat([real_test, g.sample(k, seed=11)])
    # Named by its training images, so the detector sub-run (named by its config, which names
    # this file) is trained again when they change: another n, a retrained generator.
    x = x.permute(0, 2, 3, 1).numpy()  # npz: N x H x W x C
    digest = sha256(x.tobytes()).hexdigest()[:12]
    path = run.path / "analysis" / "generation" / f"real_or_generated-{digest}.npz"
    save_npz(path, x=x, y=np.repeat([0, 1], n), x_test=x_test.permute(0, 2, 3, 1).numpy(),
             y_test=np.repeat([0, 1], k), classes=np.array(["real", "generated"]))
    cfg = TrainConfig(dataset=f"npz:{path}", model="lenet5", epochs=epochs, batch_size=64, lr=0.05,
                      seed=run.config.seed, flip=False, precision=run.config.precision, device="cpu")
    det = run.subrun(cfg, "real-or-generated", log)
    y = np.repeat([0, 1], k)
    same = det.predict(x_test, calibrated=False).argmax(1) == y
    a, b = accuracy_ci(same), None
    words = (f"real or generated: {100 * a.estimate:.1f}% correct on the GAN it trained against "
             f"(95% CI {100 * a.low:.1f}-{100 * a.high:.1f})")
    gap = None
    if unseen is not None:
        b, gap = _on_unseen(det, real_test, unseen, same)
        words += (f", {100 * b.estimate:.1f}% on an unseen generator (CI {100 * b.low:.1f}-"
                  f"{100 * b.high:.1f})")
    words += "; chance is 50%"
    return {"same": a.to_dict(), "unseen": None if b is None else b.to_dict(), "caught_gap": gap,
            "n_train": 2 * n, "n_test": 2 * k,
            "words": words,
            "real_missed": float(1 - same[:k].mean()), "generated_missed": float(1 - same[k:].mean()),
            "subrun": str(det.path.relative_to(run.path))}


def _on_unseen(det: Run, real_test, unseen: Run, same):
    """The detector on the same real images against the unseen generator's samples: its accuracy
    (an Interval) and the difference in generated images caught, unseen minus its own GAN's.
    The real halves of both tests are the same images, so the accuracies differ only in the
    generated halves: two independent samples of k, with Newcombe's interval."""
    import numpy as np
    import torch

    from cnnlab.evaluate.stats import accuracy_ci, proportion_difference_ci

    k = len(real_test)
    x = torch.cat([real_test, unseen.load_model().sample(k, seed=12)])
    other = det.predict(x, calibrated=False).argmax(1) == np.repeat([0, 1], k)
    gap = proportion_difference_ci(int(other[k:].sum()), k, int(same[k:].sum()), k)
    return accuracy_ci(other), gap.to_dict()


def _gan_html(ctx: SectionContext, label: str) -> str:
    """The GAN sub-run's samples, quality and copies, as its own report shows them."""
    import json

    from cnnlab.viz import generation as G

    sub = ctx.run.path / ctx.result["subruns"][label]
    classes = json.loads((sub / "weights" / "meta.json").read_text())["classes"]
    plots = ctx.plots_dir / label
    html = ""
    for title, body in (("Generated images", G.samples_html(sub, classes, plots)),
                        ("Quality and diversity, beside the floor", G.quality_html(sub, classes, plots)),
                        ("Did it copy its training images?", G.copies_html(sub, plots))):
        if body is not None:
            html += f"<h3>{esc(title)}</h3>" + body.replace("<h3>", "<h4>").replace("</h3>", "</h4>")
    return html


def section(ctx: SectionContext) -> str:
    r, d = ctx.result, ctx.result["detector"]
    g, u = r["gan"], r["unseen"]
    html = para(f"A {'class-conditional ' if r['head'] == 'conditional' else ''}DCGAN trained on "
                f"{r['dataset']} for {g['epochs']} epochs ({g['train_time_s']:.0f} s, generator "
                f"{g['g_params']:,} and discriminator {g['d_params']:,} parameters), judged by this "
                "run's classifier: its embedding gives the domain FID, its labels the classes the "
                "samples show. The sub-run is a complete generator run (cnnlab generate sample / "
                f"eval {ctx.result['subruns']['gan']}).")
    html += _gan_html(ctx, "gan")
    html += "<h3>Can a CNN tell real images from generated ones?</h3>"
    rows = [[f"the GAN it trained against ({g['head']})", f"{100 * d['same']['estimate']:.1f}%",
             f"{100 * d['same']['low']:.1f}-{100 * d['same']['high']:.1f}%"],
            [f"a generator it never saw ({u['head']}, another seed; domain FID {u['fid']:.3f})",
             f"{100 * d['unseen']['estimate']:.1f}%",
             f"{100 * d['unseen']['low']:.1f}-{100 * d['unseen']['high']:.1f}%"]]
    html += table(["generated images from", "accuracy", "95% CI (Wilson)"], rows)
    html += para(f"LeNet-5 trained on {d['n_train']:,} images (half real training images, half "
                 f"samples), scored on {d['n_test']:,} (held-out real images and fresh samples, "
                 "half each; chance is 50%). A detector that only works on the generator it was "
                 "trained against protects against that generator only.", note=True)
    if "diffusion" in r:
        html += _families_html(r["gan"], r["diffusion"])
    if "few" in r:
        f = r["few"]
        rows = [[f"{label} training images", f"{100 * s['copies']['copy_share']:.1f}%",
                 f"{100 * s['copies']['ci'][0]:.1f}-{100 * s['copies']['ci'][1]:.1f}%",
                 f"{s['fid']:.3f}"]
                for label, s in ((f"{f['n_train']:,}", f), ("all", g))]
        html += "<h3>Few images: does it copy them?</h3>" + table(
            ["GAN trained on", "near-copies", "95% CI", "domain FID"], rows)
    return html


def _families_html(g: dict, d: dict) -> str:
    """The GAN beside the diffusion model: quality, training and sampling time."""
    cond = "conditional " if g["head"] == "conditional" else ""
    rows = [[name, f"{s['epochs']}", f"{s['training_s']:.0f} s", f"{s['sample_s']:.2f} s",
             f"{s['fid']:.3f} ({s['floor']:.3f})", f"{s['recall']:.2f}",
             f"{100 * s['classes_covered']:.0f}%"]
            for name, s in ((f"GAN ({cond}DCGAN)", g), (f"diffusion ({cond}DDPM, DDIM)", d))]
    html = "<h3>GAN or diffusion, on this budget</h3>" + table(
        ["family", "epochs", "training steps", "drawing 1,000 images", "domain FID (floor)",
         "recall", "classes produced"], rows)
    ratio = d["training_s"] / max(g["training_s"], 1e-9)
    lower = "the GAN" if g["fid"] < d["fid"] else "the diffusion model"
    if 0.8 <= ratio <= 1.25:
        said = (f"After about equal training ({g['training_s']:.0f} s and {d['training_s']:.0f} s "
                f"of steps), {lower} had the lower domain FID on this seed")
    else:
        said = (f"The two trained for unequal times ({ratio:.1f}x), so this is no contest of the "
                f"families; {lower} had the lower domain FID on this seed")
    return html + para(
        f"{said} (one seed each, no interval: benchmarks/gan.py families pairs the two over "
        "seeds). Drawing is where the families differ most: a GAN makes an image in one pass, "
        f"the diffusion model in {d['sampling_steps']} passes of its UNet.", note=True)


AGREE = 0.8
"""The share of a conditional GAN's samples the judge must read as the class asked for."""


def claims(res: dict) -> list[Claim]:
    from cnnlab.evaluate.stats import proportion_ci

    g, d = res["gan"], res["detector"]
    made = g["classes_covered"] == 1.0 and not g["collapsed"]
    agree = g.get("label_agreement")
    said = (f"samples of every class ({100 * g['classes_covered']:.0f}% produced), domain FID "
            f"{g['fid']:.3f} against a real-data floor of {g['floor']:.3f}")
    holds: bool | None = made
    if agree is not None:  # the class asked for, read back by the judge: Wilson over the samples
        n = g.get("label_agreement_n", g["n"])
        ci = proportion_ci(round(agree * n), n)
        said += (f"; the classifier reads the class asked for in {100 * agree:.1f}% of {n:,} "
                 f"samples (95% CI {100 * ci.low:.1f}-{100 * ci.high:.1f}%; needed: {100 * AGREE:.0f}%)")
        holds = made and (True if ci.low >= AGREE else False if ci.high < AGREE else None)
    out = [Claim("A GAN learns to generate images of the data, every class of it", said, holds)]
    c = g["copies"]
    new_images = True if c["ci"][1] <= COPY_LIMIT else False if c["ci"][0] > COPY_LIMIT else None
    out.append(Claim("Its images are new, not copies of training images",
                     f"near-copies {100 * c['copy_share']:.1f}% (95% CI {100 * c['ci'][0]:.1f}-"
                     f"{100 * c['ci'][1]:.1f}%), a limit of {100 * COPY_LIMIT:.0f}%; a generator "
                     f"that copies nothing gives about {100 * c['expected']:.0f}%", new_images))
    same = d["same"]
    out.append(Claim("A CNN can tell generated images from real ones", d["words"],
                     True if same["low"] > 0.5 else None if same["high"] >= 0.5 else False))
    gap = d.get("caught_gap")
    if gap is None and d.get("unseen"):  # stored before the difference had its interval
        unseen = d["unseen"]
        out.append(Claim("Such a detector does worse on a generator it never saw",
                         f"{100 * unseen['estimate']:.1f}% on the unseen generator against "
                         f"{100 * same['estimate']:.1f}% on its own (separate intervals: run the "
                         "analysis again for the difference's)",
                         True if unseen["high"] < same["low"] else None))
    if gap is not None:
        out.append(Claim(
            "Such a detector does worse on a generator it never saw",
            f"it catches {100 * (1 - d['generated_missed'] + gap['estimate']):.1f}% of the unseen "
            f"generator's images against {100 * (1 - d['generated_missed']):.1f}% of its own GAN's: "
            f"{100 * gap['estimate']:+.1f} points (95% CI {100 * gap['low']:+.1f} to "
            f"{100 * gap['high']:+.1f}; the real images are the same in both tests)",
            True if gap["high"] < 0 else False if gap["low"] > 0 else None))
    if "few" in res:
        f = res["few"]["copies"]
        apart = True if f["ci"][0] > c["ci"][1] else False if f["ci"][1] < c["ci"][0] else None
        out.append(Claim("A GAN trained on few images copies them",
                         f"near-copies {100 * f['copy_share']:.1f}% on {res['few']['n_train']} images "
                         f"(CI {100 * f['ci'][0]:.1f}-{100 * f['ci'][1]:.1f}%) against "
                         f"{100 * c['copy_share']:.1f}% on all", apart))
    return out


def applies(config) -> bool:
    """A classifier that can judge (not DP-trained, not on permuted pixels), on images a
    generator of 4 * 2**k pixels can make."""
    return config.task == "classify" and not config.dp_epsilon and not config.permute_pixels


QUICK = {"epochs": 30, "detector_samples": 2000, "detector_epochs": 12}
"""``cnnlab run``'s budget on the digits: a conditional GAN and an unconditional one (the
unseen generator) for 30 epochs each (about 11 s each), the detector on 2,000 images. The
unseen generator trains as long as the seen one: trained half as long (15 epochs, with R1) its
domain FID was 9.6 against 1.0, and the detector caught it more often than its own GAN (88.5%
against 80.4%), which measured the unseen generator's flaws, not how detection generalises."""


def quick_skip(run: Run) -> str:
    """The quick budget's two GANs are sized for the digits (8x8, 1,437 training images: about 11
    s each). On other data they train at the run's own size, which the run's classifier judges:
    on the 32x32 shapes an epoch took 11 s at one thread, so the two took 11 minutes and ended
    at a domain FID of 235, a failure no quick budget should show. There the main job leaves
    them to ``--full`` and to the experiment verb, and says so."""
    if run.config.dataset.partition(":")[0] == "digits":
        return ""
    return (f"the quick budget's GANs are sized for the digits (about 11 s each); on "
            f"{run.config.dataset} they train at its size (on the 32x32 shapes 11 minutes, for a "
            f"domain FID of 235): run `cnnlab experiment generation {run.path}` or `cnnlab run --full`")


ANALYSIS = register(Analysis(
    name="generation", title="Generating images (GANs), and telling them from real",
    compute=generation, section=section, order=92, verb=("experiment", "generation"),
    quick=QUICK, full={"epochs": 100, "few": 100, "detector_samples": 2000, "detector_epochs": 10,
                       "diffusion_epochs": 14},
    claims=claims, applies=applies, quick_skip=quick_skip, needs=("torchmetrics", "generate"),
    bounds={"epochs": (1, 100_000), "width": (4, 512), "unseen_epochs": (0, 100_000),
            "detector_samples": (10, 1e6), "detector_epochs": (1, 10_000), "few": (0, 1e6),
            "few_epochs": (1, 100_000), "diffusion_epochs": (0, 100_000)},
    takes="about 35 s on the digits at the quick budget, 2 CPU cores",
))
