"""The analytic world of ``gmm_world`` for a rectified-flow teacher: exact velocities, no trained network.

Data: class c is N(m_c, diag v_c); the empty prompt is their equal-weight mixture. With x_t = (1 - s) x0 + s eps
(s = sigma_t), x_t | class ~ N((1 - s) m, (1 - s)^2 v + s^2), so with r = x_t - (1 - s) m and var that variance:
E[eps | x_t] = s r / var and E[x0 | x_t] = m + (1 - s) v r / var; the velocity is their difference. The nets take
the flow networks' time input, sigma * 1000, and the trainer runs on them through a BaseModel whose scheduler is
diffusers' FlowMatchEulerDiscreteScheduler.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn

from gmm_world import ClassTokenizer, OneHotEncoder


def gaussian_velocity(x, s, m, v):
    """E[eps - x0 | x_t] for x0 ~ N(m, diag v); x [B, D], s [B, 1]."""
    var = (1 - s) ** 2 * v + s ** 2
    r = x - (1 - s) * m
    return s * r / var - (m + (1 - s) * v * r / var)


def gaussian_logpdf(x, s, m, v):
    var = (1 - s) ** 2 * v + s ** 2
    return (-0.5 * (x - (1 - s) * m) ** 2 / var - 0.5 * var.log()).sum(-1)


class _Net(nn.Module):
    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.config = SimpleNamespace(in_channels=dim, sample_size=1)

    def classes(self, encoder_hidden_states):
        return encoder_hidden_states[:, 0].argmax(-1)

    @staticmethod
    def s(t, like):  # the flow networks' timestep is sigma * 1000
        return (t.float() / 1000).expand(like.shape[0]).view(-1, 1) if t.dim() == 0 else (t.float() / 1000).view(-1, 1)


class MixtureVelocityTeacher(_Net):
    def __init__(self, means, variances):
        means, variances = torch.as_tensor(means).float(), torch.as_tensor(variances).float()
        super().__init__(means.shape[1], means.shape[0])
        self.register_buffer("m", means)
        self.register_buffer("v", variances)

    def forward(self, x, t, encoder_hidden_states):
        xf, s, c = x.flatten(1), self.s(t, x), self.classes(encoder_hidden_states)
        C = self.n_classes
        per = torch.stack([gaussian_velocity(xf, s, self.m[j].expand_as(xf), self.v[j].expand_as(xf)) for j in range(C)], 1)
        logp = torch.stack([gaussian_logpdf(xf, s, self.m[j].expand_as(xf), self.v[j].expand_as(xf)) for j in range(C)], 1)
        mix = (torch.softmax(logp, 1).unsqueeze(-1) * per).sum(1)
        out = torch.where((c == C).view(-1, 1), mix, per[torch.arange(len(c)), c.clamp(max=C - 1)])
        return SimpleNamespace(sample=out.view_as(x))


class GaussianFamilyVelocity(_Net):
    """The fake score: one learnable Gaussian per prompt (the empty prompt too), exact for the generator below."""

    def __init__(self, means, variances):
        means, variances = torch.as_tensor(means).float(), torch.as_tensor(variances).float()
        super().__init__(means.shape[1], means.shape[0] - 1)
        self.m = nn.Parameter(means.clone())
        self.log_v = nn.Parameter(variances.log().clone())

    def forward(self, x, t, encoder_hidden_states):
        xf, s, c = x.flatten(1), self.s(t, x), self.classes(encoder_hidden_states)
        return SimpleNamespace(sample=gaussian_velocity(xf, s, self.m[c], self.log_v[c].exp()).view_as(x))


class AffineFlowGenerator(_Net):
    """x_g = mu_c + s_c z per prompt, as the velocity the one-step rule x_g = x_in - sigma G expects (x_in = sigma z)."""

    def __init__(self, mu, scale):
        mu, scale = torch.as_tensor(mu).float(), torch.as_tensor(scale).float()
        super().__init__(mu.shape[1], mu.shape[0] - 1)
        self.mu = nn.Parameter(mu.clone())
        self.log_s = nn.Parameter(scale.log().clone())

    def forward(self, x, t, encoder_hidden_states):
        xf, s, c = x.flatten(1), self.s(t, x), self.classes(encoder_hidden_states)
        x_g = self.mu[c] + self.log_s[c].exp() * (xf / s)
        return SimpleNamespace(sample=((xf - x_g) / s).view_as(x))


class FlowWorld:
    """Data, a flow-matching BaseModel for the trainer, and SiD's start: the teacher's one step at t_init."""

    def __init__(self, means, variances, *, shift: float = 3.0, t_init: int = 625):
        from diffusers import FlowMatchEulerDiscreteScheduler

        from sidbench.gen.diffusion import FlowMatching
        from sidbench.gen.models import BaseModel

        self.means, self.variances = torch.tensor(means).float(), torch.tensor(variances).float()
        self.C, self.D = self.means.shape
        self.scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        self.teacher = MixtureVelocityTeacher(self.means, self.variances)
        self.base = BaseModel(self.teacher, None, OneHotEncoder(self.C), ClassTokenizer(self.C), self.scheduler,
                              "flow-world", torch.device("cpu"), torch.float32)
        mix_m = self.means.mean(0)
        mix_v = (self.variances + self.means ** 2).mean(0) - mix_m ** 2
        all_m, all_v = torch.cat([self.means, mix_m[None]]), torch.cat([self.variances, mix_v[None]])
        self.fake = GaussianFamilyVelocity(all_m, all_v)
        # E[x0 | x_t = s z] for the Gaussian: m + (1 - s) v (s z - (1 - s) m) / var, affine in z.
        s = float(FlowMatching.from_config(self.scheduler.config).sigmas[t_init])
        var = (1 - s) ** 2 * all_v + s ** 2
        self.generator = AffineFlowGenerator(all_m - (1 - s) ** 2 * all_v * all_m / var, s * (1 - s) * all_v / var)

    def prompts(self) -> list[str]:
        return [f"class{c}" for c in range(self.C)]

    def sample_stats(self, net):
        return net.mu.detach()[: self.C].clone(), (2 * net.log_s.detach()[: self.C]).exp()
