"""A denoising diffusion model (Ho et al. 2020), the other family of image generators, through
``diffusers``: its ``UNet2DModel`` learns to predict the noise that was added to an image, and
sampling starts from pure noise and removes it step by step with DDIM (Song et al. 2021), a
deterministic sampler that needs tens of steps where DDPM takes a thousand.

Training is one regression, not a game: take a real image x0, a random time t of the 1,000-step
noise schedule (the cosine schedule of Nichol and Dhariwal 2021) and fresh noise e; make
x_t = sqrt(a_t) x0 + sqrt(1 - a_t) e; minimise ||e - unet(x_t, t)||^2. Nothing can collapse or
win, which is why diffusion displaced GANs; the price is paid at sampling, where every image
costs ``sampling_steps`` passes of the UNet instead of one.

``conditional=True`` gives the UNet a class embedding (added to its time embedding), so it
draws the class asked for. The UNet is small and without attention layers (CPU budgets):
``width`` channels at full resolution, twice as many below, at most 4 levels (down to 4x4 up
to 32 px). Sizes other than 4 * 2**k are padded up and cropped, as the GAN does.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.models.generator import ImageGenerator, average_gradients, generated_side, world

TRAIN_STEPS = 1000
"""Steps of the noise schedule the model trains on (DDPM's T)."""


class Diffusion(ImageGenerator):
    """A UNet denoiser with its noise schedule; ``train_step`` is the task's step of the trainer,
    ``generate`` the DDIM sampler."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, num_classes: int = 10,
                 conditional: bool = False, width: int = 32, sampling_steps: int = 25,
                 mean=None, std=None):
        super().__init__()
        try:
            from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
        except ImportError:
            raise CnnlabError("the diffusion heads need the diffusers package: pip install "
                              "'cnnlab[diffusion]' (make run and make test install it)") from None

        if width % 8:
            raise CnnlabError("the diffusion UNet's width must be a multiple of 8 (its GroupNorm "
                             "has 8 groups)")
        self.side = generated_side(image_size)
        levels = min(4, int(math.log2(self.side // 4)) + 1)  # 8 px: 8, 4; 16 px: 16, 8, 4; ...
        self.unet = UNet2DModel(
            sample_size=self.side, in_channels=in_channels, out_channels=in_channels,
            layers_per_block=1, block_out_channels=(width,) + (2 * width,) * (levels - 1),
            down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
            norm_num_groups=8, num_class_embeds=num_classes if conditional else None)
        self.schedule = DDPMScheduler(num_train_timesteps=TRAIN_STEPS,
                                      beta_schedule="squaredcos_cap_v2")
        # DDIM's steps "trailing": the first at t = 999, where x_t is pure noise, as sampling
        # starts ("leading", the default, starts at 960 for 25 steps and at 0 for one)
        self.sampler = DDIMScheduler.from_config(self.schedule.config, timestep_spacing="trailing")
        self.num_classes, self.conditional = num_classes, conditional
        self.in_channels, self.image_size = in_channels, image_size
        self.latent_dim = in_channels * self.side * self.side  # the noise is an image
        self.sampling_steps = sampling_steps

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """The noise the UNet sees in ``x_t`` (images in [-1, 1]) at times ``t`` (default 0); a
        conditional model reads class 0 when no labels are given."""
        x_t = self._pad(x_t)
        n = len(x_t)
        t = torch.zeros(n, dtype=torch.long, device=x_t.device) if t is None else t
        if self.conditional and y is None:
            y = torch.zeros(n, dtype=torch.long, device=x_t.device)
        return self.unet(x_t, t, class_labels=y if self.conditional else None).sample

    ema_warmup = True
    """The trainer's EMA of the weights warms up (cnnlab.training.trainer.make_ema): measured
    budgets here are a few hundred steps, where a plain EMA still holds the random start."""
    final_samples = 2000
    """Samples of the final label histogram: every one costs ``sampling_steps`` UNet passes (the
    GAN's 10,000 would take minutes on a CPU)."""

    def optimizer_groups(self, d_lr_scale: float = 1.0) -> list[dict]:
        """One group, no weight decay (``d_lr_scale`` is the GAN's; there is no discriminator)."""
        return [{"params": list(self.parameters()), "weight_decay": 0.0, "lr_scale": 1.0}]

    def parameter_counts(self) -> dict[str, int]:
        return {"denoiser": sum(p.numel() for p in self.parameters())}

    def between(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Spherical interpolation: a straight line between two noise images passes through
        points of smaller norm than noise has (halfway, 1/sqrt(2) as long), which the denoiser
        never saw; along the great circle every point is as long as noise is."""
        omega = torch.arccos((F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1, keepdim=True)
                             .clamp(-1 + 1e-7, 1 - 1e-7))
        return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.side - x.shape[-1]
        return F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)) if pad else x

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] from noise images (flattened, (B, latent_dim)) by DDIM in
        ``sampling_steps`` steps (eta 0: the same noise always gives the same image)."""
        ddim = self.sampler
        ddim.set_timesteps(self.sampling_steps)
        x = z.view(len(z), self.in_channels, self.side, self.side)
        for t in ddim.timesteps:
            x = ddim.step(self(x, t.to(x.device).expand(len(x)), y), t, x).prev_sample
        crop = (self.side - self.image_size) // 2
        x = x[..., crop: crop + self.image_size, crop: crop + self.image_size]
        return ((x.clamp(-1, 1) + 1) / 2).float()

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor, optimizer: torch.optim.Optimizer,
                   autocast: AbstractContextManager) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step of noise prediction on a batch of real images in [0, 1]."""
        x0 = self._pad(xb * 2 - 1)
        n, device = len(x0), x0.device
        rank, size = world()  # N ranks draw what one process would (as the GAN's noise)
        mine = slice(rank * n, (rank + 1) * n)
        noise = torch.randn((n * size, *x0.shape[1:]), device=device)[mine]
        t = torch.randint(0, TRAIN_STEPS, (n * size,), device=device)[mine]
        x_t = self.schedule.add_noise(x0, noise, t)
        with autocast:
            pred = self(x_t, t, yb if self.conditional else None)
        loss = F.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self, size)
        optimizer.step()
        return loss.detach(), {}  # one loss, no parts: the run's train_loss is the denoising loss
