"""Sampling: the SiD-LSG one-step generator and N-step teacher baselines, behind one interface.

Image i is made from seed ``seed_offset + i`` whatever the batch size, shard or process count: its
initial noise is drawn alone on the CPU from its own generator. Prompt embeddings are computed once per
batch; the empty-prompt embedding once per sampler.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sidbench.gen.diffusion import FlowMatching, guided_output, schedule_of
from sidbench.core.errors import SidbenchError
from sidbench.gen.models import BaseModel

SCHEDULERS = ("ddim", "dpm++", "euler")


def initial_noise(seeds, shape: tuple[int, ...]) -> torch.Tensor:
    """[B, *shape] float32 standard normal; row k depends on seeds[k] alone."""
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    for k, s in enumerate(seeds):
        out[k] = torch.randn(shape, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float32)
    return out


def encode_prompts(base: BaseModel, prompts: list[str]) -> torch.Tensor:
    """CLIP text encoder hidden states, as Stable Diffusion conditions on them (padded to max length)."""
    limit = min(int(base.tokenizer.model_max_length), int(base.text_encoder.config.max_position_embeddings))
    tok = base.tokenizer(list(prompts), padding="max_length", max_length=limit, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return base.text_encoder(tok.input_ids.to(base.device))[0]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW -> uint8 NHWC via clip(x * 127.5 + 128), truncating (SiD-LSG / EDM convention)."""
    x = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class Sampler:
    """Common machinery: prompt embeddings, the empty-prompt embedding (cached), VAE decoding."""

    base: BaseModel
    height: int | None = None
    _uncond: torch.Tensor | None = field(default=None, repr=False)

    def uncond(self, batch: int) -> torch.Tensor:
        if self._uncond is None:
            self._uncond = encode_prompts(self.base, [""])
        return self._uncond.expand(batch, -1, -1)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        vae = self.base.vae
        if vae is None:  # pixel space: the latent is the image
            return to_uint8(latents)
        with torch.no_grad():
            img = vae.decode((latents / self.base.latent_scale).to(vae.dtype)).sample
        return to_uint8(img)

    def noise(self, seeds) -> torch.Tensor:
        return initial_noise(seeds, self.base.latent_shape(self.height)).to(self.base.device)

    def describe(self) -> dict:
        raise NotImplementedError

    def sample(self, prompts: list[str], seeds) -> np.ndarray:
        raise NotImplementedError


@dataclass
class OneStepSampler(Sampler):
    """SiD-LSG: x_g = (x_in - sqrt(1-abar) G(x_in, t_init, c)) / sqrt(abar), x_in = sqrt(1-abar) z."""

    generator: torch.nn.Module | None = None
    t_init: int = 625

    def __post_init__(self):
        if self.generator is None:
            raise SidbenchError("OneStepSampler needs a generator UNet")
        self._diffusion = schedule_of(self.base)  # the trainer's schedule and x0 rule, built once
        n = self._diffusion.grid_size
        if not 0 <= self.t_init < n:
            raise SidbenchError(f"t_init must be in [0, {n - 1}], got {self.t_init}")
        self.generator.requires_grad_(False).eval().to(self.base.device)
        if next(self.generator.parameters()).dtype != self.base.dtype:
            self.generator.to(self.base.dtype)

    def latents(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The trainer's own one-step formula (sidbench.gen.diffusion), without gradients."""
        with torch.no_grad():
            return self._diffusion.one_step(self.generator, z, cond, self.t_init)

    def sample(self, prompts: list[str], seeds) -> np.ndarray:
        cond = encode_prompts(self.base, prompts)
        return self.decode(self.latents(self.noise(seeds), cond))

    def describe(self) -> dict:
        if isinstance(self._diffusion, FlowMatching):
            return {"kind": "one-step", "t_init": self.t_init, "sigma_t_init": float(self._diffusion.sigmas[self.t_init])}
        return {"kind": "one-step", "t_init": self.t_init,
                "abar_t_init": float(self.base.alphas_cumprod[self.t_init])}


@dataclass
class TeacherSampler(Sampler):
    """N-step sampling of the base UNet with a diffusers scheduler and batched classifier-free guidance."""

    steps: int = 50
    cfg: float = 1.0
    scheduler_name: str = "ddim"

    def __post_init__(self):
        if self.scheduler_name not in SCHEDULERS:
            raise SidbenchError(f"unknown scheduler {self.scheduler_name!r}; expected one of {', '.join(SCHEDULERS)}")
        if self.steps < 1:
            raise SidbenchError(f"--steps must be at least 1, got {self.steps}")

    def make_scheduler(self):
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

        cls = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}
        sch = cls[self.scheduler_name].from_config(self.base.scheduler.config)
        sch.set_timesteps(self.steps, device=self.base.device)
        return sch

    def guided_eps(self, x: torch.Tensor, t, cond: torch.Tensor) -> torch.Tensor:
        """eps_u + k (eps_c - eps_u) in one batched call; k = 1: the conditional call alone."""
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        return guided_output(self.base.unet, x, t, cond, self.uncond(x.shape[0]), self.cfg)

    def sample(self, prompts: list[str], seeds) -> np.ndarray:
        cond = encode_prompts(self.base, prompts)
        sch = self.make_scheduler()
        x = self.noise(seeds) * sch.init_noise_sigma
        with torch.no_grad():
            for t in sch.timesteps:
                eps = self.guided_eps(sch.scale_model_input(x, t), t, cond)
                x = sch.step(eps, t, x).prev_sample
        return self.decode(x)

    def describe(self) -> dict:
        return {"kind": "teacher", "steps": self.steps, "cfg": self.cfg, "scheduler": self.scheduler_name}
