"""The SiD-LSG losses as one small callable: phase A (fake score) and phase B (generator).

Phase A: the fake score's guided output (k1) regressed on its training target (eps; v for v-prediction bases,
    weighted per sample by snr / (snr + 1) as the reference does) at noised generator samples.
Phase B: with y_fake, y_real the x0 estimates of the fake score (k2) and the teacher (k4) at the same x_t,
    loss = sum((y_real - y_fake) * ((y_real - x_g) - alpha (y_real - y_fake)) / w) / B,
    w = mean_{C,H,W} |x_g - y_real| (no grad, fp32, clamped to >= w_min). Nothing is detached: gradients
    reach the generator through x_t in both estimates. Samples whose x_g, y_real or y_fake holds a NaN are
    dropped from the sum and counted (the reference drops them silently).
Both losses are sums divided by the GLOBAL batch B, so accumulation rounds and processes add up exactly.
Each guidance scale can be limited to a timestep interval (scale 1 outside it): an option beyond the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sidbench.gen.diffusion import Diffusion, FlowMatching, Interval, guided_output
from sidbench.gen.families import as_conditioning

# Timestep bands of the per-band diagnostics (low / mid / high noise).
T_BANDS = (("low", 0, 332), ("mid", 333, 665), ("high", 666, 999))


@dataclass
class SiDLoss:
    diffusion: Diffusion | FlowMatching
    k1: float = 1.5                       # fake score, phase A
    k2: float = 1.5                       # fake score, phase B
    k4: float = 1.5                       # teacher, phase B
    alpha: float = 1.0
    w_min: float = 1e-5
    interval1: Interval = None            # where k1 applies (None: every t)
    interval2: Interval = None            # where k2 applies
    interval4: Interval = None            # where k4 applies
    weighting: str = "sid"                # phase-B weight: "sid" (1/w) or "1-minus-sigma" (100 (1 - sigma), SiD-DiT)
    fake_text: bool = True                # False: the fake score sees only the empty prompt (Zero-CFG)

    def _fake_cond(self, cond, uncond, n: int):
        return cond if self.fake_text else as_conditioning(uncond).expand(n)

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.diffusion.abar(t, like)

    def fake_score_loss(self, fake, x_g, t, eps, cond, uncond, global_batch: int):
        """Phase A. Returns (loss summed over this chunk / B, per-sample NaN mask, per-sample squared error)."""
        d = self.diffusion
        x0 = x_g.detach().float()
        x_t = d.add_noise(x0, eps, t)
        pred = guided_output(fake, x_t, t, self._fake_cond(cond, uncond, len(x_t)), uncond, self.k1, self.interval1,
                             net_t=d.net_timestep(t))
        per_sample = ((pred - d.target(x0, eps, t)) ** 2).flatten(1).sum(1)
        weight = d.fake_loss_weight(t, x0)  # the family's own (v: snr / (snr + 1), as the reference)
        if weight is not None:
            per_sample = per_sample * weight
        bad = torch.isnan(pred).flatten(1).any(1) | ~torch.isfinite(per_sample)
        return per_sample[~bad].sum() / global_batch, bad, per_sample.detach()

    def generator_loss(self, fake, teacher, x_g, t, eps, cond, uncond, global_batch: int):
        """Phase B. Returns (loss / B, diagnostics: w, the per-sample fake-vs-teacher gap, the NaN-dropped mask)."""
        d = self.diffusion
        x_g32 = x_g.float()
        x_t = d.add_noise(x_g32, eps, t)
        y_fake = d.x0_estimate(fake, x_t, t, self._fake_cond(cond, uncond, len(x_t)), uncond, self.k2, self.interval2)
        y_real = d.x0_estimate(teacher, x_t, t, cond, uncond, self.k4, self.interval4)
        bad = (torch.isnan(x_g32) | torch.isnan(y_real) | torch.isnan(y_fake)).flatten(1).any(1)
        keep = ~bad
        x_g32, y_real, y_fake = x_g32[keep], y_real[keep], y_fake[keep]
        with torch.no_grad():
            if self.weighting == "1-minus-sigma":  # the SiD-DiT code: data-independent, x100 ("lsg")
                w = 1 / (100 * (1 - d.sigma(t[keep], x_g32))).clamp_min(self.w_min)
            else:
                w = (x_g32 - y_real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(self.w_min)
        diff = y_real - y_fake
        loss = (diff * ((y_real - x_g32) - self.alpha * diff) / w).sum() / global_batch
        return loss, {"w": w.detach().flatten(), "gap": diff.detach().abs().mean(dim=(1, 2, 3)), "t": t[keep],
                      "dropped": bad}
