"""How good, how diverse and how original a generator's images are, each beside its floor.

Every measure compares images in a feature space. By default it is the embedding of a cnnlab
classifier trained on the same data (the *judge*): the resulting FID is a **domain FID**, which
ranks generators on this data but is not comparable with the Inception FIDs papers publish
(``inception_features`` gives those, from the weights file torch-fidelity uses). Libraries do
the statistics: FID and KID are torchmetrics' (Heusel et al. 2017; Binkowski et al. 2018),
precision, recall, density and coverage the ``prdc`` package's (Kynkäänniemi et al. 2019;
Naeem et al. 2020). The features are computed once and handed to torchmetrics through an
identity "feature extractor".

Each number comes with its **floor**: the same measure between the two halves of the held-out
real images, at the n of the samples' comparison (with the first half). FID is biased upwards
at a small n, so a generator's FID means something only beside the floor at equal n; and the
judge has seen the training images, so they are not a fair half.

The floor says where real images sit; the **yardsticks** say how far slightly spoilt real
images sit (blurred by 3x3, with pixel noise): a judge that reads texture can put them many
times the floor away, and a generator's FID reads differently on such a scale.

- ``label_histogram``: the judge's classes of the samples against the real ones (entropy, the
  share of classes produced); a generator that makes few classes is flagged as collapsed.
- ``memorisation``: did it copy? Each sample's distance to its nearest training image, against
  the same distance for held-out real images: the share of samples nearer to a training
  image than all but 5% of held-out images are. A generator that does not copy gives about
  5%; one that reproduces training images gives far more. In features and in pixels.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.evaluate.stats import proportion_ci

COPY_QUANTILE = 0.05
"""The held-out images' nearest-training-image distance below which a sample counts as a copy."""


class _Given(nn.Module):
    """An identity "feature extractor": torchmetrics' FID and KID on features computed once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@torch.inference_mode()
def judge_outputs(judge: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu",
                  batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings (N, D) float64, predicted classes (N,)) of uint8 images by a cnnlab classifier."""
    judge.eval()
    feats, preds = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i: i + batch_size].to(device).float().div_(255)
        f = judge.forward_features(xb)
        emb = judge.forward_head(f, pre_logits=True)
        feats.append(emb.double().cpu())
        preds.append(judge.forward_head(f).argmax(1).cpu())
    if not feats:
        return torch.zeros(0, getattr(judge, "num_features", 1), dtype=torch.float64), torch.zeros(0).long()
    return torch.cat(feats), torch.cat(preds)


def fid_weights_path(weights: str | Path) -> Path:
    """The user's Inception weights file, or the one line that says where to put it."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CnnlabError(f"--fid-weights {path}: no such file; place torch-fidelity's "
                          "pt_inception-2015-12-05-6726825d.pth there (the published FID's "
                          "Inception weights), or leave --fid-weights out for the domain FID")
    return path


def inception_net(weights: str | Path) -> nn.Module:
    """torch-fidelity's Inception-v3 (the published protocol's feature extractor) with the weights
    of the user's file. torch-fidelity would unpickle the file itself (weights_only=False):
    cnnlab reads it (the hash in its name checked, plain tensors only) and hands the tensors over."""
    from unittest import mock

    from cnnlab.training.transfer import read_weights_file

    path = fid_weights_path(weights)
    tensors = read_weights_file(path, log=lambda line: None, flag="--fid-weights")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # (heavy)

    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.torch.load", lambda *a, **k: tensors):
        try:
            return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                               feature_extractor_weights_path=str(path)).eval()
        except RuntimeError as e:  # load_state_dict: missing or misshapen tensors
            raise CnnlabError(f"--fid-weights {path}: its tensors are not those of torch-fidelity's "
                              f"Inception-v3 ({str(e).splitlines()[0]}); give its "
                              "pt_inception-2015-12-05-6726825d.pth") from None


def inception_features(x: torch.Tensor, weights: str | Path | nn.Module, batch_size: int = 100
                       ) -> torch.Tensor:
    """The published protocol's 2048-D Inception pool features of uint8 images, from the weights
    file torch-fidelity uses (pt_inception-2015-12-05-6726825d.pth), which the user places
    (nothing is downloaded), or from an ``inception_net`` already built from it."""
    net = weights if isinstance(weights, nn.Module) else inception_net(weights)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = x[i: i + batch_size]
            xb = xb.expand(-1, 3, -1, -1) if xb.shape[1] == 1 else xb
            out.append(net(xb)[0].double())
    return torch.cat(out)


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 50) -> dict:
    """FID and KID (mean and std over subsets) between two sets of features (torchmetrics).

    Under torchrun every rank scores the same full sets, so the metrics do not gather their
    states over the ranks (``sync_on_compute=False``): a gather would count each image N times."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    d = real.shape[1]
    fid = FrechetInceptionDistance(feature=_Given(d), sync_on_compute=False)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    subset = max(2, min(len(real), len(fake), 2000) // 2)  # subsets of half (at most 1,000): a spread
    with warnings.catch_warnings():  # that it keeps the features: these are small
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Given(d), subsets=kid_subsets, subset_size=subset,
                                      sync_on_compute=False)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng():  # its subsets are drawn from torch's global generator: seeded
        torch.manual_seed(0)       # here, the same sets give the same KID (and training's own
        kid_mean, kid_std = kid.compute()  # random stream is left as it was)
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


def label_agreement(read: torch.Tensor, num_classes: int) -> float:
    """The share of a conditional generator's samples whose class the judge reads (``read``) as
    the one asked for; ``sample()`` asks for the classes in turn (0, 1, .., k-1, 0, ..)."""
    return float((read == torch.arange(len(read)) % num_classes).float().mean())


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict:
    """Precision and recall of the distribution, density and coverage (the ``prdc`` package)."""
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it prints the
        # two set sizes, and its sklearn call (8 joblib workers) can warn, once per worker, that
        # sklearn's configuration does not reach them: harmless here, and hundreds of lines
        warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed")
        out = compute_prdc(real_features=real.numpy(), fake_features=fake.numpy(), nearest_k=k)
    return {key: float(v) for key, v in out.items()}


def label_histogram(fake_classes: torch.Tensor, real_classes: torch.Tensor, num_classes: int,
                    produced_share: float = 0.1) -> dict:
    """The judge's class histogram of the samples against the real images': each share, the
    entropy of each (bits), the share of classes produced (a class counts when it gets at least
    ``produced_share`` of its real share) and ``collapsed``: a class missing, or the samples'
    entropy below 80% of the real images'."""
    def shares(c: torch.Tensor) -> np.ndarray:
        counts = np.bincount(c.numpy(), minlength=num_classes).astype(float)
        return counts / max(1.0, counts.sum())

    fake, real = shares(fake_classes), shares(real_classes)

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    produced = fake >= produced_share * real
    covered = float(produced[real > 0].mean()) if (real > 0).any() else 0.0
    h_fake, h_real = entropy(fake), entropy(real)
    return {"fake": fake.tolist(), "real": real.tolist(), "entropy": h_fake, "real_entropy": h_real,
            "classes_covered": covered, "collapsed": bool(covered < 1.0 or h_fake < 0.8 * h_real)}


def nearest(queries: torch.Tensor, keys: torch.Tensor,
            batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query's nearest key (Euclidean), in batches."""
    dist, idx = [], []
    keys = keys.double()
    for i in range(0, len(queries), batch):
        d = torch.cdist(queries[i: i + batch].double(), keys)
        m = d.min(1)
        dist.append(m.values)
        idx.append(m.indices)
    return torch.cat(dist), torch.cat(idx)


def memorisation(train: torch.Tensor, heldout: torch.Tensor, samples: torch.Tensor,
                 quantile: float = COPY_QUANTILE) -> dict:
    """Did the generator copy its training images? ``train``, ``heldout`` and ``samples`` are
    vectors (features or flattened pixels). A sample is a near-copy when it is nearer to its
    nearest training image than all but ``quantile`` of held-out real images are to theirs.
    Returns the share of near-copies with its Wilson interval (about ``quantile`` when the
    generator does not copy), the threshold, and each sample's nearest training image."""
    d_held, _ = nearest(heldout, train)
    d_fake, idx = nearest(samples, train)
    threshold = float(torch.quantile(d_held, quantile))
    copies = int((d_fake < threshold).sum())
    ci = proportion_ci(copies, len(samples))
    return {"copy_share": ci.estimate, "ci": [ci.low, ci.high], "expected": quantile,
            "threshold": threshold, "n": len(samples), "median_distance": float(d_fake.median()),
            "median_heldout_distance": float(d_held.median()), "distance": d_fake.tolist(),
            "nearest": idx.tolist()}


def pixels(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).double() / 255


def halves(n_heldout: int, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of two disjoint halves of the held-out images, drawn by one fixed permutation (a
    split's order can follow the classes or the writers), each cut to the n of the samples'
    comparison: the samples are compared with the first half, the floor is the second half
    against the first."""
    order = torch.randperm(n_heldout, generator=torch.Generator().manual_seed(0))
    half = n_heldout // 2
    n = min(half, n_samples)
    return order[:n], order[half: half + n]


YARDSTICKS = {"blurred (3x3 box)": "blur", "pixel noise (sd 12/255)": "noise"}
"""Real images, slightly spoilt: their FID against the same reference says how strict this
feature space is. A judge that reads texture puts blurred real images far from real ones."""


def spoilt(x: torch.Tensor, how: str, seed: int = 0) -> torch.Tensor:
    """uint8 images (N, C, H, W) blurred by a 3x3 box ("blur", edges repeated) or with Gaussian
    pixel noise of standard deviation 12/255 ("noise", seeded)."""
    import torch.nn.functional as F

    f = x.double()
    if how == "blur":
        f = F.avg_pool2d(F.pad(f, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    elif how == "noise":
        f = f + 12 * torch.randn(f.shape, generator=torch.Generator().manual_seed(seed), dtype=f.dtype)
    else:
        raise ValueError(f"unknown spoiling {how!r}: blur or noise")
    return f.round().clamp(0, 255).to(torch.uint8)


def yardsticks(judge: nn.Module, heldout: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
               ref: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, float]:
    """The FID of the floor's second half, spoilt each way of ``YARDSTICKS``, against ``ref``
    (the first half's features): where a generator's FID sits between real images (the floor)
    and real images a little blurred or noisy."""
    out = {}
    for name, how in YARDSTICKS.items():
        f, _ = judge_outputs(judge, spoilt(heldout[second], how), device)
        out[name] = fid_kid(ref, f[: len(first)])["fid"]
    return out


def score(judge: nn.Module, samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor,
          num_classes: int, device: torch.device | str = "cpu", copies: bool = True) -> dict:
    """Every measure of ``samples`` (uint8) against real images the generator never saw, with
    the floor. The held-out images are cut in two halves: the samples are measured against the
    first, and the floor is the same measure of the second half against the first, at the same
    n. (Not training images against held-out ones: the judge was trained on the training
    images, so its features tell them apart from new images, and that floor would sit too
    high.) Beside the floor, its ``yardsticks``: the second half blurred and noisy. With
    ``copies``, the memorisation statistic in features and in pixels, against every image of
    ``train``."""
    first, second = halves(len(heldout), len(samples))
    n = len(first)
    f_fake, c_fake = judge_outputs(judge, samples, device)
    f_held, c_held = judge_outputs(judge, heldout, device)
    ref, other = f_held[first], f_held[second]
    gen = fid_kid(ref, f_fake[:n]) | prdc(ref, f_fake[:n])
    floor = fid_kid(ref, other) | prdc(ref, other)
    out = {"features": "domain (the judge classifier's embedding)", "n": n, "generated": gen,
           "floor": floor, "labels": label_histogram(c_fake, c_held, num_classes),
           "yardsticks": yardsticks(judge, heldout, first, second, ref, device)}
    if copies:
        f_train, _ = judge_outputs(judge, train, device)
        out["copies"] = {"features": memorisation(f_train, f_held, f_fake),
                         "pixels": memorisation(pixels(train), pixels(heldout), pixels(samples))}
    return out
