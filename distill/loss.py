"""The SiD-LSG losses as one small callable: phase A (fake score) and phase B (generator).

Phase A: plain epsilon MSE of the fake score at guidance k1 on noised generator samples.
Phase B: with y_fake, y_real the x0 estimates of the fake score (k2) and the teacher (k4) at the same x_t,
    loss = sum((y_real - y_fake) * ((y_real - x_g) - alpha (y_real - y_fake)) / w) / B,
    w = mean_{C,H,W} |x_g - y_real| (no grad, fp32, clamped to >= w_min). Nothing is detached: gradients
    reach the generator through x_t in both estimates.
Both losses are sums divided by the GLOBAL batch B, so accumulation rounds and processes add up exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.guidance import guided_eps
from sidbench.sampling import x0_from_output


def add_noise(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, abar per sample ([B, 1, 1, 1])."""
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


@dataclass
class SiDLoss:
    alphas_cumprod: torch.Tensor          # float64 [T]
    k1: float = 1.5                       # fake score, phase A
    k2: float = 1.5                       # fake score, phase B
    k4: float = 1.5                       # teacher, phase B
    alpha: float = 1.0
    w_min: float = 1e-5
    prediction_type: str = "epsilon"

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(like.device)[t].to(torch.float32).view(-1, 1, 1, 1)

    def x0(self, net, x_t, t, cond, uncond, k) -> torch.Tensor:
        """x0 estimate of a guided network, vectorised over the batch."""
        out = guided_eps(net, x_t, t, cond, uncond, k).float()
        return x0_from_output(out, x_t.float(), self.abar(t, x_t), self.prediction_type)

    def fake_score_loss(self, fake, x_g, t, eps, cond, uncond, global_batch: int):
        """Phase A. Returns (loss summed over this chunk / B, per-sample NaN mask of the output)."""
        x_t = add_noise(x_g.detach(), eps, self.abar(t, x_g))
        pred = guided_eps(fake, x_t, t, cond, uncond, self.k1).float()
        if self.prediction_type == "v_prediction":  # the target the network is trained to output
            a = self.abar(t, x_g)
            target = a.sqrt() * eps - (1 - a).sqrt() * x_g.detach()
        else:
            target = eps
        per_sample = ((pred - target) ** 2).flatten(1).sum(1)
        bad = ~torch.isfinite(per_sample)
        return per_sample[~bad].sum() / global_batch, bad

    def generator_loss(self, fake, teacher, x_g, t, eps, cond, uncond, global_batch: int):
        """Phase B. Returns (loss / B, dict of diagnostics: w and the fake-vs-teacher gap)."""
        x_t = add_noise(x_g, eps, self.abar(t, x_g))
        y_fake = self.x0(fake, x_t, t, cond, uncond, self.k2)
        y_real = self.x0(teacher, x_t, t, cond, uncond, self.k4)
        x_g32 = x_g.float()
        with torch.no_grad():
            w = (x_g32 - y_real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(self.w_min)
        diff = y_real - y_fake
        loss = (diff * ((y_real - x_g32) - self.alpha * diff) / w).sum() / global_batch
        return loss, {"w": w.detach().flatten(), "gap": diff.detach().abs().mean(dim=(1, 2, 3))}
