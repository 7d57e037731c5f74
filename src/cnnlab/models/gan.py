"""A generative adversarial network (Goodfellow et al. 2014) in the DCGAN layout (Radford et
al. 2016): a generator that turns noise into images with strided transposed convolutions,
BatchNorm and ReLU, and a discriminator that mirrors it with strided convolutions and leaky
ReLU. The two play a game: the discriminator learns to tell training images from generated
ones, the generator learns to make the discriminator wrong.

``conditional=True`` is the class-conditional variant: the generator reads a label embedding
beside the noise, the discriminator scores (image, label) pairs with a projection (Miyato and
Koyama 2018); ``aux_weight`` adds AC-GAN's auxiliary classifier (Odena et al. 2017): the
discriminator also classifies real images, and the generator is trained to make its images
read as the class it was asked for. The stabilisers the literature settled on are options, each measured in
``benchmarks/gan.py stabilisers``: the non-saturating loss (the default; ``loss="minimax"`` is
the original), spectral normalisation of the discriminator (Miyato et al. 2018), the R1
gradient penalty on real images (Mescheder et al. 2018), two learning rates (TTUR, Heusel et
al. 2017: the trainer's ``d_lr_scale``) and an exponential average of the weights (the
trainer's ``ema``), which the samples are drawn from. ``d_depth`` deepens the discriminator
(``Discriminator``); with it and the discriminator at 4x the rate, the domain FID on 16 px
shapes falls about 14x below DCGAN's pair's in twice its training time (configs/gan_shapes.yaml),
though the samples are still spots of the shapes' colours on textured backgrounds, not squares
and triangles.

Under torchrun each rank steps on its slice of the global batch, with its slice of the global
batch's noise, and averages its gradients over the ranks itself (``average_gradients``).

Images are pixels in [0, 1] outside, [-1, 1] inside (the generator ends in tanh). Sizes are
4 * 2**k (8, 16, 32, 64); other sizes (MNIST's 28) are generated at the next such size and
cropped at the centre.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from cnnlab.config import GAN_LOSSES as LOSSES
from cnnlab.models.generator import ImageGenerator, average_gradients, generated_side, world


class Generator(nn.Module):
    def __init__(self, latent_dim: int, out_channels: int, image_size: int, width: int,
                 num_classes: int = 0):
        super().__init__()
        side = generated_side(image_size)
        ups = int(math.log2(side // 4))
        top = width * 2 ** (ups - 1)
        self.image_size, self.latent_dim, self.top = image_size, latent_dim, top
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.project = nn.Sequential(nn.Linear(latent_dim * (2 if num_classes else 1), top * 16, bias=False),
                                     nn.BatchNorm1d(top * 16), nn.ReLU(inplace=True))
        blocks, c = [], top
        for _ in range(ups):
            out = max(width, c // 2)
            blocks += [nn.ConvTranspose2d(c, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(c, out_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Noise (B, latent_dim) (and labels) -> images in [-1, 1], (B, C, S, S)."""
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        h = self.project(z).view(len(z), self.top, 4, 4)
        x = torch.tanh(self.to_image(self.blocks(h)))
        if x.shape[-1] == self.image_size:
            return x
        crop = (x.shape[-1] - self.image_size) // 2  # 0 where the sizes differ by one (7 of 8)
        return x[..., crop: crop + self.image_size, crop: crop + self.image_size]


class Discriminator(nn.Module):
    """DCGAN's discriminator: a 3x3 convolution, then strided 4x4 convolutions that halve the
    side down to 4x4, each doubling the channels. ``depth`` > 1 puts ``depth - 1`` more 3x3
    convolutions at each side before it is halved: a deeper critic (on 16 px shapes, with 4x
    the rate, a 14x lower domain FID than DCGAN's in twice the time: benchmarks/RESULTS.md,
    2026-12-07)."""

    def __init__(self, in_channels: int, image_size: int, width: int, num_classes: int = 0,
                 spectral_norm: bool = False, classify: bool = False, depth: int = 1):
        super().__init__()
        sn = _sn if spectral_norm else (lambda m: m)
        norm = nn.Identity if spectral_norm else nn.BatchNorm2d  # DCGAN's BatchNorm, or SN alone
        downs = int(math.log2(generated_side(image_size) // 4))
        layers, c = [sn(nn.Conv2d(in_channels, width, 3, 1, 1)), nn.LeakyReLU(0.2, inplace=True)], width
        for _ in range(downs):
            for _ in range(depth - 1):
                layers += [sn(nn.Conv2d(c, c, 3, 1, 1, bias=spectral_norm)), norm(c),
                           nn.LeakyReLU(0.2, inplace=True)]
            layers += [sn(nn.Conv2d(c, c * 2, 4, 2, 1, bias=spectral_norm)), norm(c * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            c *= 2
        self.body = nn.Sequential(*layers)
        self.side = generated_side(image_size)
        self.features = c * 16
        self.score = sn(nn.Linear(self.features, 1))
        self.embed = sn(_projection(num_classes, self.features)) if num_classes else None
        self.classify = nn.Linear(self.features, num_classes) if classify else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] (and labels) -> one logit per image: real (high) or generated."""
        return self.scores(x, y)[0]

    def scores(self, x: torch.Tensor, y: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(real-or-generated logits, the auxiliary classifier's class logits or None)."""
        pad = self.side - x.shape[-1]
        if pad:  # the size the strided body reduces to 4x4
            x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        h = self.body(x).flatten(1)
        out = self.score(h).squeeze(1)
        if self.embed is not None:  # the projection: <embed(y), h>
            out = out + (self.embed(y) * h).sum(1)
        return out, (self.classify(h) if self.classify is not None else None)


def _projection(num_classes: int, features: int) -> nn.Embedding:
    """The projection's class vectors, initialised as ``nn.Linear`` initialises the score layer
    beside them (uniform within 1/sqrt(features)): the projection is one linear score per class.
    ``nn.Embedding``'s N(0, 1) made <embed(y), h> about sqrt(features) times the score's scale:
    at initialisation on CIFAR-10 (4,096 features) a standard deviation of 50 against the
    score's 0.3; the discriminator's loss saturated (generator loss 41 in the first epoch) and
    the generator collapsed within each class. Spectral norm divides the scale out, so this
    matters for the BatchNorm discriminator."""
    embed = nn.Embedding(num_classes, features)
    bound = 1 / math.sqrt(features)
    nn.init.uniform_(embed.weight, -bound, bound)
    return embed


class GAN(ImageGenerator):
    """Generator and discriminator in one module, so one checkpoint, one EMA and one optimizer
    (two parameter groups) hold both; ``train_step`` is the task's step of the trainer."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, num_classes: int = 10,
                 conditional: bool = False, latent_dim: int = 64, width: int = 32,
                 spectral_norm: bool = False, loss: str = "nonsaturating", r1_gamma: float = 0.0,
                 r1_every: int = 1, aux_weight: float = 0.0, d_depth: int = 1, mean=None, std=None):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"GAN loss must be one of {', '.join(LOSSES)}")
        k = num_classes if conditional else 0
        self.generator = Generator(latent_dim, in_channels, image_size, width, k)
        self.discriminator = Discriminator(in_channels, image_size, width, k, spectral_norm,
                                           classify=bool(aux_weight and conditional), depth=d_depth)
        self.num_classes, self.conditional = num_classes, conditional
        self.in_channels, self.image_size, self.latent_dim = in_channels, image_size, latent_dim
        self.loss_name, self.r1_gamma, self.r1_every = loss, r1_gamma, max(1, r1_every)
        # the discriminator's steps so far: which of them pays for R1 (a buffer, so a checkpoint
        # keeps it; read through a host-side copy, so a GPU step never waits to read it)
        self.register_buffer("d_steps", torch.zeros((), dtype=torch.long))
        self._d_steps = 0
        self.aux_weight = aux_weight if conditional else 0.0
        self.batchnorm = not spectral_norm  # the discriminator's normalisation (see Discriminator)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before lazy R1 have no step counter: they load as at step 0
        state_dict.setdefault(prefix + "d_steps", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._d_steps = int(state_dict[prefix + "d_steps"])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The discriminator's logits for images in [0, 1] (what a GAN's forward scores); the
        conditional one scores them as class 0 when no labels are given."""
        if self.conditional and y is None:
            y = torch.zeros(len(x), dtype=torch.long, device=x.device)
        return self.discriminator(x * 2 - 1, y if self.conditional else None)

    def optimizer_groups(self, d_lr_scale: float = 1.0) -> list[dict]:
        """Two parameter groups for one optimizer: the generator's and the discriminator's, with
        its own learning-rate scale (TTUR); no weight decay."""
        return [{"params": list(self.generator.parameters()), "weight_decay": 0.0, "lr_scale": 1.0},
                {"params": list(self.discriminator.parameters()), "weight_decay": 0.0,
                 "lr_scale": d_lr_scale}]

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] from noise (and labels, for the conditional GAN)."""
        return (self.generator(z, y if self.conditional else None) + 1) / 2

    def parameter_counts(self) -> dict[str, int]:
        return {"generator": sum(p.numel() for p in self.generator.parameters()),
                "discriminator": sum(p.numel() for p in self.discriminator.parameters())}

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor, optimizer: torch.optim.Optimizer,
                   autocast: AbstractContextManager) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One discriminator step, then one generator step, on a batch of real images in [0, 1].
        Returns (the summed loss, for the trainer's finite check; {d_loss, g_loss, d_real, d_fake})."""
        d, g = self.discriminator, self.generator
        n, device = len(xb), xb.device
        real = xb * 2 - 1
        y_real = yb if self.conditional else None
        size = world()[1]
        z, y_fake = self._latents(n, device)
        with autocast:  # one generator pass serves both steps (as PyTorch's DCGAN example does)
            fake = g(z, y_fake)
        # 1. The discriminator: real images high, generated ones low (the generator held still).
        r1 = self.r1_gamma and self._d_steps % self.r1_every == 0
        self._d_steps += 1
        self.d_steps += 1
        if r1:
            real.requires_grad_(True)
        with autocast:
            s_real, s_fake, c_real = self._d_scores(real, y_real, fake.detach(), y_fake)
        s_real, s_fake = s_real.float(), s_fake.float()
        loss_d = self._d_loss(s_real, s_fake)
        if c_real is not None:  # AC-GAN: the discriminator learns the classes of real images
            loss_d = loss_d + self.aux_weight * F.cross_entropy(c_real.float(), yb)
        if r1:  # R1: the discriminator's gradient on real images, kept small (every r1_every
            # steps, r1_every times as strong: StyleGAN2's lazy regularisation)
            grad, = torch.autograd.grad(s_real.sum(), real, create_graph=True)
            penalty = grad.float().pow(2).flatten(1).sum(1).mean()
            loss_d = loss_d + self.r1_gamma * self.r1_every / 2 * penalty
        optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        average_gradients(d, size)
        optimizer.step()  # the generator has no gradients: Adam leaves it alone
        # 2. The generator: make the updated (and frozen) discriminator score its images as real.
        d.requires_grad_(False)
        with autocast:
            s_gen, c_gen = d.scores(fake, y_fake)
        loss_g = self._g_loss(s_gen.float())
        if c_gen is not None:  # ... and the generator, to be read as the class it was asked for
            loss_g = loss_g + self.aux_weight * F.cross_entropy(c_gen.float(), y_fake)
        optimizer.zero_grad(set_to_none=True)
        loss_g.backward()
        average_gradients(g, size)
        optimizer.step()
        d.requires_grad_(True)
        parts = {"d_loss": loss_d.detach(), "g_loss": loss_g.detach(),
                 "d_real": torch.sigmoid(s_real.detach()).mean(),
                 "d_fake": torch.sigmoid(s_fake.detach()).mean()}
        return loss_d.detach() + loss_g.detach(), parts

    def _latents(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Noise and labels for the global batch, this rank's slice (one process: all of it),
        so N ranks draw what one process would: every rank holds the same RNG state."""
        rank, size = world()
        mine = slice(rank * n, (rank + 1) * n)
        y = self.random_labels(n * size, device)
        return self.noise(n * size, device=device)[mine], None if y is None else y[mine]

    def _d_scores(self, real, y_real, fake, y_fake):
        """(real scores, generated scores, the real images' class logits or None)."""
        d, n = self.discriminator, len(real)
        if self.batchnorm:  # DCGAN's BatchNorm: real and generated batches normalised apart
            s_real, c_real = d.scores(real, y_real)
            return s_real, d(fake, y_fake), c_real
        # no batch statistics: one pass over both halves gives the same scores
        both, c_both = d.scores(torch.cat([real, fake]),
                                None if y_real is None else torch.cat([y_real, y_fake]))
        return both[:n], both[n:], None if c_both is None else c_both[:n]

    def _d_loss(self, s_real: torch.Tensor, s_fake: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "hinge":
            return F.relu(1 - s_real).mean() + F.relu(1 + s_fake).mean()
        # -log sigmoid(real) - log(1 - sigmoid(fake)), written with softplus for stability
        return F.softplus(-s_real).mean() + F.softplus(s_fake).mean()

    def _g_loss(self, s_gen: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "minimax":  # minimise log(1 - D(G(z))): vanishing gradients early
            return -F.softplus(s_gen).mean()
        if self.loss_name == "hinge":
            return -s_gen.mean()
        return F.softplus(-s_gen).mean()  # non-saturating: maximise log D(G(z))
