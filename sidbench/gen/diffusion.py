"""The diffusion maths in one place: noising, guided network outputs, x0 estimates, the one- and few-step generator.

The samplers, the trainer, the losses and the tests all call these functions, so what is trained and what is
evaluated cannot drift apart. Two families share one interface (``schedule_of(base)`` picks it), each with the
trainer's integer time grid t in 0..N-1 and the rule ``x_t = a_t x0 + s_t eps``:
- ``Diffusion``, DDPM discrete time (SD1.5, SD2.1, SDXL): a = sqrt(abar_t), s = sqrt(1 - abar_t); the network
  predicts eps, v or x0 and takes t itself.
- ``FlowMatching``, rectified flow (SD3/SD3.5, FLUX.1, SANA): a = 1 - sigma_t, s = sigma_t; the network
  predicts the velocity eps - x0 and takes sigma_t * N, on the grid of diffusers' FlowMatchEulerDiscreteScheduler.

x0 follows the model's own scheduler config as ``DDPMScheduler.step(...).pred_original_sample`` does (the
reference computes every x0 that way): ``thresholding`` (dynamic, per sample) or else ``clip_sample``.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from sidbench.core.errors import SidbenchError
from sidbench.gen.families import Conditioning, as_conditioning

Interval = tuple[int, int] | None  # inclusive timestep range where guidance applies; None: every t


def add_noise(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, abar broadcastable to x0 (per sample: [B, 1, 1, 1])."""
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def abar_at(alphas_cumprod: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """abar_t per sample as float32 [B, 1, 1, 1] on ``like``'s device."""
    return alphas_cumprod.to(like.device)[t].to(torch.float32).view(-1, *([1] * (like.dim() - 1)))


def parse_interval(spec) -> Interval:
    """'' / None / 'none' -> None; 'LO,HI' or (LO, HI) -> (LO, HI) with 0 <= LO <= HI <= 999."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none", "all")):
        return None
    try:
        lo, hi = (int(v) for v in (spec.split(",") if isinstance(spec, str) else spec))
    except (TypeError, ValueError):
        raise SidbenchError(f"a guidance interval is 'T_LO,T_HI' (inclusive timesteps) or 'none', got {spec!r}") from None
    if not 0 <= lo <= hi <= 999:
        raise SidbenchError(f"a guidance interval needs 0 <= T_LO <= T_HI <= 999, got {lo},{hi}")
    return lo, hi


def guidance_scale_per_sample(k: float, t: torch.Tensor, interval: Interval) -> torch.Tensor:
    """k where t lies in the interval, 1 elsewhere (Kynkaanniemi et al. 2024: guidance in a limited interval)."""
    k_t = torch.full(t.shape, float(k), dtype=torch.float32, device=t.device)
    if interval is not None:
        k_t = torch.where((t >= interval[0]) & (t <= interval[1]), k_t, torch.ones_like(k_t))
    return k_t


def net_dtype(net: torch.nn.Module) -> torch.dtype:
    p = next(net.parameters(), None)
    return p.dtype if p is not None else torch.float32


def guided_output(net: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond, uncond, k: float,
                  interval: Interval = None, net_t: torch.Tensor | None = None) -> torch.Tensor:
    """out_u + k (out_c - out_u) from one batched call; the conditional call alone where k = 1 for every sample.

    ``cond`` and ``uncond`` are Conditionings (``sidbench.gen.families``; a bare tensor is SD's hidden states),
    ``uncond`` one row or a batch. ``t`` is the grid index (intervals are on it); ``net_t`` what the network
    takes as its time (default t). The input is cast to the network's dtype and the output returned in float32,
    as the reference does.
    """
    dtype = net_dtype(net)
    cond = as_conditioning(cond)
    k_t = guidance_scale_per_sample(k, t, interval)
    net_t = t if net_t is None else net_t
    if bool((k_t == 1).all()):
        return cond.to(dtype=dtype).call(net, x_t.to(dtype), net_t).float()
    both = Conditioning.cat([as_conditioning(uncond).expand(len(cond)), cond]).to(dtype=dtype)
    out_u, out_c = both.call(net, torch.cat([x_t, x_t]).to(dtype), torch.cat([net_t, net_t])).float().chunk(2)
    return out_u + k_t.view(-1, *([1] * (out_u.dim() - 1))) * (out_c - out_u)


def x0_from_output(output: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The network's clean-latent estimate before any clipping (abar broadcastable to x_t)."""
    a, s = abar.sqrt(), (1 - abar).sqrt()
    if prediction_type == "epsilon":
        return (x_t - s * output) / a
    if prediction_type == "v_prediction":
        return a * x_t - s * output
    if prediction_type == "sample":
        return output
    raise SidbenchError(f"unsupported prediction type {prediction_type!r}; expected epsilon, v_prediction or sample")


def training_target(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """What the network is trained to output at x_t = add_noise(x0, eps, abar)."""
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return abar.sqrt() * eps - (1 - abar).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise SidbenchError(f"unsupported prediction type {prediction_type!r}; expected epsilon, v_prediction or sample")


def snr(abar: torch.Tensor) -> torch.Tensor:
    return abar / (1 - abar)


def clip_x0(x0: torch.Tensor, config: Mapping | None) -> torch.Tensor:
    """Dynamic thresholding or clip_sample, exactly when and as the scheduler config asks (DDPMScheduler.step)."""
    config = config or {}
    if config.get("thresholding", False):
        b = x0.shape[0]
        flat = x0.float().reshape(b, -1)
        s = torch.quantile(flat.abs(), float(config.get("dynamic_thresholding_ratio", 0.995)), dim=1)
        s = s.clamp(min=1, max=float(config.get("sample_max_value", 1.0))).unsqueeze(1)
        return (flat.clamp(-s, s) / s).reshape(x0.shape).to(x0.dtype)
    if config.get("clip_sample", False):
        r = float(config.get("clip_sample_range", 1.0))
        return x0.clamp(-r, r)
    return x0


class _Family:
    """What both families do the same way from their own rules (``x0``, ``net_timestep``, ``generator_input``)."""

    grid_size: int

    def x0_estimate(self, net: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond, uncond,
                    k: float, interval: Interval = None) -> torch.Tensor:
        """The guided network's x0 estimate at (x_t, t), vectorised over the batch."""
        out = guided_output(net, x_t, t, cond, uncond, k, interval, net_t=self.net_timestep(t))
        return self.x0(out, x_t, t)

    def one_step(self, generator: torch.nn.Module, z: torch.Tensor, cond, t_init: int) -> torch.Tensor:
        """x_g = the x0 estimate of G at t_init from x_in = add_noise(0, z, t_init) (differentiable; float32)."""
        if not 0 <= t_init < self.grid_size:
            raise SidbenchError(f"t_init must be in [0, {self.grid_size - 1}], got {t_init}")
        return self._generator_x0(generator, self.generator_input(z, t_init), t_init, cond)

    def _generator_x0(self, generator: torch.nn.Module, x_in: torch.Tensor, t_i: int, cond) -> torch.Tensor:
        t = torch.full((x_in.shape[0],), t_i, device=x_in.device, dtype=torch.long)
        dtype = net_dtype(generator)
        out = as_conditioning(cond).to(dtype=dtype).call(generator, x_in.to(dtype), self.net_timestep(t)).float()
        return self.x0(out, x_in, t)

    def step_times(self, t_init: int, grid: int) -> list[int]:
        """The few-step generator's times t_0 = t_init > t_1 > ... > t_{K-1} on a K-step grid (E16 / E15 in
        docs/spec/few-step-sid.md)."""
        raise NotImplementedError

    def few_step(self, generator: torch.nn.Module, z: torch.Tensor, cond, t_init: int, steps: int = 1,
                 grid: int | None = None, noises=None) -> torch.Tensor:
        """D_steps of the few-step generator: D_0 = 0; x_i = add_noise(D_i, n_i, t_i) (n_0 = z, n_i = noises[i - 1]
        fresh normals); D_{i+1} = the x0 estimate of G at (x_i, t_i), on the first ``steps`` times of the
        ``grid``-step schedule (default: ``steps``). One step is ``one_step``. Gradients, where enabled, flow
        through the last step only: the earlier ones run without them (the SiD-DiT code's rule)."""
        grid = steps if grid is None else grid
        if not 1 <= steps <= grid:
            raise SidbenchError(f"a few-step generator takes 1..{grid} steps on its {grid}-step grid, got {steps}")
        if steps > 1 and (noises is None or len(noises) < steps - 1):
            raise SidbenchError(f"{steps} steps need {steps - 1} fresh noise tensor(s) after z")
        times = self.step_times(t_init, grid)[:steps]
        d = None
        for i, t_i in enumerate(times):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i == steps - 1):
                if i == 0:
                    d = self.one_step(generator, z, cond, t_i)
                else:
                    t = torch.full((z.shape[0],), t_i, device=z.device, dtype=torch.long)
                    d = self._generator_x0(generator, self.add_noise(d, noises[i - 1].to(d), t), t_i, cond)
        return d


class Diffusion(_Family):
    """A base model's schedule and parametrisation: what every x0 estimate and noising needs."""

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon",
                 scheduler_config: Mapping | None = None):
        self.alphas_cumprod = alphas_cumprod.to(torch.float64)
        self.grid_size = len(self.alphas_cumprod)
        self.prediction_type = prediction_type
        self.scheduler_config = dict(scheduler_config or {})

    @classmethod
    def of(cls, base) -> "Diffusion":
        """From a loaded ``BaseModel``."""
        return cls(base.alphas_cumprod, base.prediction_type, dict(base.scheduler.config))

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return abar_at(self.alphas_cumprod, t, like)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return add_noise(x0, eps, self.abar(t, x0))

    def x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 from a network output, clipped as the scheduler config says."""
        raw = x0_from_output(output, x_t.float(), self.abar(t, x_t), self.prediction_type)
        return clip_x0(raw, self.scheduler_config)

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return training_target(x0, eps, self.abar(t, x0), self.prediction_type)

    def net_timestep(self, t: torch.Tensor) -> torch.Tensor:
        return t  # DDPM networks take the grid index itself

    def fake_loss_weight(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
        """Per-sample weight of the phase-A squared error (None: 1): the reference weights the v loss by
        snr / (snr + 1), and leaves the eps loss unweighted."""
        if self.prediction_type != "v_prediction":
            return None
        s = snr(self.abar(t, like)).flatten()
        return s / (s + 1)

    def generator_input(self, z: torch.Tensor, t_init: int) -> torch.Tensor:
        """x_in = add_noise(0, z, t_init) = sqrt(1 - abar) z: the one-step generator's input."""
        abar = self.alphas_cumprod[t_init].to(z.device, torch.float32)
        return (1 - abar).sqrt() * z.float()

    def step_times(self, t_init: int, grid: int) -> list[int]:
        """t_i = floor(t_init (1 - i/K)), i < K: the SiD-LSG code's DDPM rule (``sid_sd_sampler``)."""
        return [int(t_init * (1 - i / grid)) for i in range(grid)]


class FlowMatching(_Family):
    """Rectified flow: x_t = (1 - sigma_t) x0 + sigma_t eps, the network predicting the velocity v = eps - x0.

    Grid index t in 0..N-1 has sigma_t = shift((t + 1) / N), the training grid of diffusers'
    ``FlowMatchEulerDiscreteScheduler`` (its ``sigmas``, read from the high end): the static shift
    shift * s / (1 + (shift - 1) s) (SD3: 3.0), or with ``mu`` FLUX's exponential time shift
    e^mu / (e^mu + 1/s - 1). The network takes sigma_t * N as its timestep. x0 = x_t - sigma_t v.
    """

    prediction_type = "flow"

    def __init__(self, shift: float = 1.0, num_train_timesteps: int = 1000, mu: float | None = None,
                 scheduler_config: Mapping | None = None):
        n = int(num_train_timesteps)
        s = torch.arange(1, n + 1, dtype=torch.float64) / n
        if mu is not None:
            s = math.exp(mu) / (math.exp(mu) + (1 / s - 1))
        elif shift != 1.0:
            s = shift * s / (1 + (shift - 1) * s)
        self.sigmas = s  # float64, index t -> sigma_t, increasing in t
        self.num_train_timesteps, self.shift, self.mu = n, float(shift), mu
        self.grid_size = n
        self.scheduler_config = dict(scheduler_config or {})

    @classmethod
    def from_config(cls, config: Mapping, *, image_seq_len: int | None = None) -> "FlowMatching":
        """From a FlowMatchEulerDiscreteScheduler config; dynamic shifting (FLUX) needs the image's token count."""
        config = dict(config)
        mu = None
        if config.get("use_dynamic_shifting", False):
            if image_seq_len is None:
                raise SidbenchError("this flow-matching scheduler shifts time by the image size (FLUX's dynamic "
                                    "shifting): give the image's token count (image_seq_len)")
            lo, hi = int(config.get("base_image_seq_len", 256)), int(config.get("max_image_seq_len", 4096))
            b0, b1 = float(config.get("base_shift", 0.5)), float(config.get("max_shift", 1.15))
            mu = b0 + (b1 - b0) * (image_seq_len - lo) / (hi - lo)
        return cls(float(config.get("shift", 1.0)), int(config.get("num_train_timesteps", 1000)), mu, config)

    def sigma(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """sigma_t per sample as float32 [B, 1, ...] on ``like``'s device."""
        return self.sigmas.to(like.device)[t].to(torch.float32).view(-1, *([1] * (like.dim() - 1)))

    def net_timestep(self, t: torch.Tensor) -> torch.Tensor:
        return (self.sigmas.to(t.device)[t] * self.num_train_timesteps).to(torch.float32)

    def index_of(self, sigma: float) -> int:
        """The grid time whose sigma is nearest to ``sigma``."""
        i = int(torch.searchsorted(self.sigmas, torch.tensor([float(sigma)], dtype=torch.float64)))
        near = [j for j in (i - 1, i) if 0 <= j < len(self.sigmas)]
        return min(near, key=lambda j: abs(float(self.sigmas[j]) - sigma))

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.sigma(t, x0)
        return (1 - s) * x0 + s * eps

    def x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x_t.float() - self.sigma(t, x_t) * output

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return eps - x0

    def fake_loss_weight(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
        return None  # the velocity loss unweighted, as flow-matching teachers are trained

    def generator_input(self, z: torch.Tensor, t_init: int) -> torch.Tensor:
        """x_in = add_noise(0, z, t_init) = sigma z: the one-step generator's input."""
        return self.sigmas[t_init].to(z.device, torch.float32) * z.float()

    def step_times(self, t_init: int, grid: int) -> list[int]:
        """sigma_i = sigma_{t_init} (1 - i/K), i < K, at the nearest grid time: the SiD-DiT code's rule (with
        t_init = 999: sigma 1, 0.75, 0.5, 0.25 for K = 4)."""
        s0 = float(self.sigmas[t_init])
        return [t_init] + [self.index_of(s0 * (1 - i / grid)) for i in range(1, grid)]


def is_flow_scheduler(scheduler) -> bool:
    """A rectified-flow training grid: FlowMatch* schedulers, or DPM-Solver on flow sigmas (SANA's folders)."""
    config = scheduler.config
    return "FlowMatch" in type(scheduler).__name__ or bool(config.get("use_flow_sigmas")) \
        or config.get("prediction_type") == "flow_prediction"


def schedule_of(base, image_seq_len: int | None = None) -> "Diffusion | FlowMatching":
    """The family's maths for a loaded base model: rectified flow when its scheduler is a flow-matching one.

    ``image_seq_len``: the image token count FLUX's dynamic shift depends on (default: the base's own size)."""
    if is_flow_scheduler(base.scheduler):
        config = dict(base.scheduler.config)
        if "flow_shift" in config and "shift" not in config:  # DPMSolverMultistepScheduler's name for it
            config["shift"] = config["flow_shift"]
        seq = image_seq_len if image_seq_len is not None else getattr(base, "image_seq_len", None)
        return FlowMatching.from_config(config, image_seq_len=seq)
    return Diffusion.of(base)
