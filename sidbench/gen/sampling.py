"""Sampling: the SiD-LSG one-step (and few-step) generator and N-step teacher baselines, behind one interface.

Image i is made from seed ``seed_offset + i`` whatever the batch size, shard or process count: its
initial noise is drawn alone on the CPU from its own generator. Prompt conditionings are computed once per
batch (through the base's family, ``sidbench.gen.families``); the unconditional one once per sampler.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sidbench.gen.diffusion import FlowMatching, guided_output, is_flow_scheduler, schedule_of
from sidbench.gen.families import Conditioning
from sidbench.core.errors import SidbenchError
from sidbench.gen.models import BaseModel

SCHEDULERS = ("ddim", "dpm++", "euler")      # DDPM teachers
FLOW_SCHEDULERS = ("euler", "dpm++")         # flow-matching teachers


def initial_noise(seeds, shape: tuple[int, ...]) -> torch.Tensor:
    """[B, *shape] float32 standard normal; row k depends on seeds[k] alone."""
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    for k, s in enumerate(seeds):
        out[k] = torch.randn(shape, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float32)
    return out


def step_noise(seeds, shape: tuple[int, ...], step: int) -> torch.Tensor:
    """The fresh noise of a few-step generator's step ``step`` (>= 1) for each image, from its seed alone."""
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    for k, s in enumerate(seeds):
        key = int(np.random.SeedSequence([int(s), int(step)]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))
        out[k] = torch.randn(shape, generator=torch.Generator().manual_seed(key), dtype=torch.float32)
    return out


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW -> uint8 NHWC via clip(x * 127.5 + 128), truncating (SiD-LSG / EDM convention)."""
    x = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class Sampler:
    """Common machinery: prompt conditioning, the unconditional conditioning (cached), VAE decoding.

    ``embedded_guidance``: FLUX.1-dev's guidance input for every network call (None: the family's default)."""

    base: BaseModel
    height: int | None = None
    embedded_guidance: float | None = None
    _uncond: Conditioning | None = field(default=None, repr=False)

    def encode(self, prompts: list[str]) -> Conditioning:
        return self.base.encode(prompts, self.height).with_embedded_guidance(self.embedded_guidance)

    def uncond(self, batch: int) -> Conditioning:
        if self._uncond is None:
            self._uncond = self.base.unconditional(self.height).with_embedded_guidance(self.embedded_guidance)
        return self._uncond.expand(batch)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        vae = self.base.vae
        if vae is None:  # pixel space: the latent is the image
            return to_uint8(latents)
        with torch.no_grad():  # the pipelines' rule: latents / scaling_factor + shift_factor
            img = vae.decode((latents / self.base.latent_scale + self.base.latent_shift).to(vae.dtype)).sample
        return to_uint8(img)

    def noise(self, seeds) -> torch.Tensor:
        return initial_noise(seeds, self.base.latent_shape(self.height)).to(self.base.device)

    def schedule(self):
        """The family's maths at this sampler's image size (FLUX's time shift depends on it)."""
        return schedule_of(self.base, self.base.family.image_seq_len(self.base.latent_shape(self.height)))

    def describe(self) -> dict:
        raise NotImplementedError

    def sample(self, prompts: list[str], seeds) -> np.ndarray:
        raise NotImplementedError


@dataclass
class OneStepSampler(Sampler):
    """SiD: x_g = the x0 estimate of G at t_init from x_in = add_noise(0, z, t_init) (DDPM: sqrt(1-abar) z).

    A few-step generator (trained with ``gen_steps`` K = ``grid``) takes ``steps`` <= K steps: the first ``steps``
    times of its K-step schedule, as the trainer's mixture components; the fresh noise of step i >= 1 of image k
    comes from its seed alone (``step_noise``)."""

    generator: torch.nn.Module | None = None
    t_init: int = 625
    steps: int = 1
    grid: int | None = None

    def __post_init__(self):
        if self.generator is None:
            raise SidbenchError("OneStepSampler needs a generator network")
        self._diffusion = self.schedule()  # the trainer's schedule and x0 rule, built once
        n = self._diffusion.grid_size
        if not 0 <= self.t_init < n:
            raise SidbenchError(f"t_init must be in [0, {n - 1}], got {self.t_init}")
        self.grid = self.steps if self.grid is None else self.grid
        if not 1 <= self.steps <= self.grid:
            raise SidbenchError(f"--gen-steps {self.steps}: this generator was trained for 1..{self.grid} steps "
                                f"(its run's gen_steps)")
        self.generator.requires_grad_(False).eval().to(self.base.device)
        if next(self.generator.parameters()).dtype != self.base.dtype:
            self.generator.to(self.base.dtype)

    def latents(self, z: torch.Tensor, cond: Conditioning, noises=None) -> torch.Tensor:
        """The trainer's own formula (sidbench.gen.diffusion), without gradients."""
        with torch.no_grad():
            return self._diffusion.few_step(self.generator, z, cond, self.t_init, self.steps, self.grid, noises)

    def sample(self, prompts: list[str], seeds) -> np.ndarray:
        shape = self.base.latent_shape(self.height)
        noises = [step_noise(seeds, shape, i).to(self.base.device) for i in range(1, self.steps)]
        return self.decode(self.latents(self.noise(seeds), self.encode(prompts), noises))

    def describe(self) -> dict:
        out = {"kind": "one-step", "t_init": self.t_init}
        if self.grid > 1:
            out.update(kind="few-step", steps=self.steps, step_grid=self.grid,
                       step_times=self._diffusion.step_times(self.t_init, self.grid)[:self.steps],
                       noise_rule="step i >= 1: fresh normal from SeedSequence([seed, i])")
        if isinstance(self._diffusion, FlowMatching):
            out["sigma_t_init"] = float(self._diffusion.sigmas[self.t_init])
        else:
            out["abar_t_init"] = float(self.base.alphas_cumprod[self.t_init])
        if "guidance" in self.uncond(1).tensors:
            out["embedded_guidance"] = float(self.uncond(1).tensors["guidance"][0])
        return out


def default_scheduler(base: BaseModel) -> str:
    """The teacher sampler a base gets by default: DDIM (DDPM families), its own flow solver otherwise."""
    if not is_flow_scheduler(base.scheduler):
        return "ddim"
    return "dpm++" if "DPMSolver" in type(base.scheduler).__name__ else "euler"


@dataclass
class TeacherSampler(Sampler):
    """N-step sampling of the base network with a diffusers scheduler and batched classifier-free guidance.

    DDPM families: ddim, dpm++ or euler on their training schedule. Flow families: euler
    (FlowMatchEulerDiscreteScheduler) or dpm++ (DPM-Solver on flow sigmas, as SANA ships), with the base's shift
    (FLUX: its dynamic shift at this image size)."""

    steps: int = 50
    cfg: float = 1.0
    scheduler_name: str | None = None

    def __post_init__(self):
        if self.scheduler_name is None:
            self.scheduler_name = default_scheduler(self.base)
        flow = is_flow_scheduler(self.base.scheduler)
        allowed = FLOW_SCHEDULERS if flow else SCHEDULERS
        if self.scheduler_name not in allowed:
            raise SidbenchError(f"scheduler {self.scheduler_name!r} is not one for "
                                f"{'a flow-matching' if flow else 'a DDPM'} teacher; expected one of {', '.join(allowed)}")
        if self.steps < 1:
            raise SidbenchError(f"--steps must be at least 1, got {self.steps}")

    def make_scheduler(self):
        from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                               FlowMatchEulerDiscreteScheduler)

        config, device = dict(self.base.scheduler.config), self.base.device
        if not is_flow_scheduler(self.base.scheduler):
            cls = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}
            sch = cls[self.scheduler_name].from_config(config)
            sch.set_timesteps(self.steps, device=device)
            return sch
        fm = self.schedule()
        if self.scheduler_name == "euler":
            if "FlowMatch" in type(self.base.scheduler).__name__:
                sch = FlowMatchEulerDiscreteScheduler.from_config(config)
            else:
                sch = FlowMatchEulerDiscreteScheduler(num_train_timesteps=fm.num_train_timesteps, shift=fm.shift)
        else:
            sch = DPMSolverMultistepScheduler(num_train_timesteps=fm.num_train_timesteps, use_flow_sigmas=True,
                                              prediction_type="flow_prediction", flow_shift=fm.shift, **(
                                                  {k: config[k] for k in ("algorithm_type", "solver_order")
                                                   if k in config} if "DPMSolver" in type(self.base.scheduler).__name__ else {}))
        kw = {"mu": fm.mu} if fm.mu is not None else {}
        sigmas = self.base.family.inference_sigmas(self.steps)  # FLUX's pipeline gives its own
        if sigmas is not None and self.scheduler_name == "euler":
            kw["sigmas"] = sigmas
        sch.set_timesteps(self.steps, device=device, **kw)
        return sch

    def guided_output(self, x: torch.Tensor, t, cond: Conditioning) -> torch.Tensor:
        """out_u + k (out_c - out_u) in one batched call; k = 1: the conditional call alone."""
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        return guided_output(self.base.net, x, t, cond, self.uncond(x.shape[0]), self.cfg)

    def latents(self, z: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The sampler's final latent from initial noise z (as the family's diffusers pipeline computes it)."""
        sch = self.make_scheduler()
        x = z * getattr(sch, "init_noise_sigma", 1.0)  # flow schedulers start at sigma 1: none
        with torch.no_grad():
            for t in sch.timesteps:
                out = self.guided_output(sch.scale_model_input(x, t) if hasattr(sch, "scale_model_input") else x, t, cond)
                x = sch.step(out, t, x).prev_sample
        return x

    def sample(self, prompts: list[str], seeds) -> np.ndarray:
        return self.decode(self.latents(self.noise(seeds), self.encode(prompts)))

    def describe(self) -> dict:
        out = {"kind": "teacher", "steps": self.steps, "cfg": self.cfg, "scheduler": self.scheduler_name}
        if "guidance" in self.uncond(1).tensors:
            out["embedded_guidance"] = float(self.uncond(1).tensors["guidance"][0])
        return out
