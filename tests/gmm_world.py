"""An analytic text-to-image world for known-answer tests of SiD and its guidance.

Data: class c ("prompt" c) is a Gaussian N(m_c, diag v_c) in D dimensions (shaped [D, 1, 1] like a latent);
the empty prompt is the equal-weight mixture of the classes. Every score is exact at every t:
for x0 ~ N(m, v), x_t = sqrt(a) x0 + sqrt(1 - a) eps gives E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) m) / (a v + 1 - a),
and the mixture's is the posterior-weighted sum. No network is trained as a teacher.

The stand-ins have the UNet call signature ``net(x, t, encoder_hidden_states=...)`` and a ``config``, so the
real ``Trainer`` (phases, loss, EMA, randomness) runs on them unchanged through a ``BaseModel``.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn as nn


def gaussian_eps(x, a, m, v):
    """E[eps | x_t] for x0 ~ N(m, diag v); x [B, D], a [B, 1], m/v [B, D]."""
    return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * v + 1 - a)


def gaussian_logpdf(x, a, m, v):
    var = a * v + 1 - a
    return (-0.5 * (x - a.sqrt() * m) ** 2 / var - 0.5 * var.log()).sum(-1)


class _Net(nn.Module):
    def __init__(self, alphas_cumprod: torch.Tensor, dim: int, n_classes: int):
        super().__init__()
        self.register_buffer("abar", alphas_cumprod.float().clone())
        self.n_classes = n_classes
        self.config = SimpleNamespace(in_channels=dim, sample_size=1)

    def classes(self, encoder_hidden_states):  # one-hot [B, 1, C + 1] -> class index, C = the empty prompt
        return encoder_hidden_states[:, 0].argmax(-1)

    def a(self, t, like):
        return self.abar.to(like.device)[t.expand(like.shape[0]) if t.dim() == 0 else t].view(-1, 1)


class MixtureTeacher(_Net):
    """Exact eps of the data: class c -> its Gaussian; the empty prompt -> the mixture."""

    def __init__(self, alphas_cumprod, means, variances):
        means, variances = torch.as_tensor(means).float(), torch.as_tensor(variances).float()
        super().__init__(alphas_cumprod, means.shape[1], means.shape[0])
        self.register_buffer("m", means)
        self.register_buffer("v", variances)

    def forward(self, x, t, encoder_hidden_states):
        xf, a, c = x.flatten(1), self.a(t, x), self.classes(encoder_hidden_states)
        C = self.n_classes
        per = torch.stack([gaussian_eps(xf, a, self.m[j].expand_as(xf), self.v[j].expand_as(xf)) for j in range(C)], 1)
        logp = torch.stack([gaussian_logpdf(xf, a, self.m[j].expand_as(xf), self.v[j].expand_as(xf)) for j in range(C)], 1)
        r = torch.softmax(logp, 1).unsqueeze(-1)
        mix = (r * per).sum(1)
        cond = per[torch.arange(len(c)), c.clamp(max=C - 1)]
        out = torch.where((c == C).view(-1, 1), mix, cond)
        return SimpleNamespace(sample=out.view_as(x))


class GaussianFamilyScore(_Net):
    """The fake score: one learnable Gaussian per prompt, the empty prompt included (exact for the generator below)."""

    def __init__(self, alphas_cumprod, means, variances):
        means, variances = torch.as_tensor(means).float(), torch.as_tensor(variances).float()
        super().__init__(alphas_cumprod, means.shape[1], means.shape[0] - 1)
        self.m = nn.Parameter(means.clone())
        self.log_v = nn.Parameter(variances.log().clone())

    def forward(self, x, t, encoder_hidden_states):
        xf, a, c = x.flatten(1), self.a(t, x), self.classes(encoder_hidden_states)
        return SimpleNamespace(sample=gaussian_eps(xf, a, self.m[c], self.log_v[c].exp()).view_as(x))


class MixtureFamilyScore(_Net):
    """A fake score for a few-step generator: per prompt, an equal-weight mixture of J learnable Gaussians (the
    exact family for the uniform mixture of J Gaussian step outputs), its eps the posterior-weighted sum."""

    def __init__(self, alphas_cumprod, means, variances):
        means, variances = torch.as_tensor(means).float(), torch.as_tensor(variances).float()  # [C + 1, J, D]
        super().__init__(alphas_cumprod, means.shape[2], means.shape[0] - 1)
        self.m = nn.Parameter(means.clone())
        self.log_v = nn.Parameter(variances.log().clone())

    def forward(self, x, t, encoder_hidden_states):
        xf, a, c = x.flatten(1), self.a(t, x), self.classes(encoder_hidden_states)
        m, v = self.m[c], self.log_v[c].exp()  # [B, J, D]
        per = torch.stack([gaussian_eps(xf, a, m[:, j], v[:, j]) for j in range(m.shape[1])], 1)
        logp = torch.stack([gaussian_logpdf(xf, a, m[:, j], v[:, j]) for j in range(m.shape[1])], 1)
        return SimpleNamespace(sample=(torch.softmax(logp, 1).unsqueeze(-1) * per).sum(1).view_as(x))


class AffineGenerator(_Net):
    """A one-step generator x_g = mu_c + s_c * z per prompt, written as the eps-output the trainer's formula expects:
    with x_in = sqrt(1 - a) z at t_init, it returns (x_in - sqrt(a) x_g) / sqrt(1 - a)."""

    def __init__(self, alphas_cumprod, mu, scale):
        mu, scale = torch.as_tensor(mu).float(), torch.as_tensor(scale).float()
        super().__init__(alphas_cumprod, mu.shape[1], mu.shape[0] - 1)
        self.mu = nn.Parameter(mu.clone())
        self.log_s = nn.Parameter(scale.log().clone())

    def sample_map(self, z, c):
        return self.mu[c] + self.log_s[c].exp() * z

    def forward(self, x, t, encoder_hidden_states):
        xf, a, c = x.flatten(1), self.a(t, x), self.classes(encoder_hidden_states)
        x_g = self.sample_map(xf / (1 - a).sqrt(), c)
        return SimpleNamespace(sample=((xf - a.sqrt() * x_g) / (1 - a).sqrt()).view_as(x))


class StepAffineGenerator(_Net):
    """A few-step generator exact for Gaussian data: at its j-th step time t_j, x0 = alpha_{j,c} + beta_{j,c} * x_t
    per prompt c (an affine map of its input), returned in the eps form the trainer's formula expects."""

    def __init__(self, alphas_cumprod, times, alpha, beta):
        alpha, beta = torch.as_tensor(alpha).float(), torch.as_tensor(beta).float()
        super().__init__(alphas_cumprod, alpha.shape[2], alpha.shape[1] - 1)
        self.register_buffer("times", torch.as_tensor(times, dtype=torch.long))
        self.alpha, self.beta = nn.Parameter(alpha.clone()), nn.Parameter(beta.clone())

    def forward(self, x, t, encoder_hidden_states):
        xf, a, c = x.flatten(1), self.a(t, x), self.classes(encoder_hidden_states)
        t = t.expand(len(xf)) if t.dim() == 0 else t
        j = (t.view(-1, 1) == self.times.view(1, -1)).float().argmax(1)  # which step this time is
        x0 = self.alpha[j, c] + self.beta[j, c] * xf
        return SimpleNamespace(sample=((xf - a.sqrt() * x0) / (1 - a).sqrt()).view_as(x))

    def stats(self, steps: int, n_classes: int):
        """Per-class mean and variance of the ``steps``-step output, in closed form: D_1 = alpha_0 + beta_0 x_0 with
        x_0 = sqrt(1 - a_0) z; x_i = sqrt(a_i) D_i + sqrt(1 - a_i) n_i; D_{i+1} = alpha_i + beta_i x_i."""
        al, be = self.alpha.detach()[:, :n_classes], self.beta.detach()[:, :n_classes]
        a = self.abar[self.times].view(-1, 1, 1)
        mean, var = al[0], be[0] ** 2 * (1 - a[0])
        for i in range(1, steps):
            mean = al[i] + be[i] * a[i].sqrt() * mean
            var = be[i] ** 2 * (a[i] * var + 1 - a[i])
        return mean, var


class ClassTokenizer:
    """'class3' -> id 3, '' -> id C (the empty prompt)."""

    def __init__(self, n_classes):
        self.n_classes, self.model_max_length = n_classes, 1

    def __call__(self, prompts, **_):
        ids = [self.n_classes if p == "" else int(p.removeprefix("class")) for p in prompts]
        return SimpleNamespace(input_ids=torch.tensor(ids).view(-1, 1))


class OneHotEncoder(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.n_classes = n_classes
        self.config = SimpleNamespace(max_position_embeddings=1)
        self.dtype = torch.float32

    def forward(self, ids):
        return (torch.nn.functional.one_hot(ids, self.n_classes + 1).float(),)


class GMMWorld:
    """The data, the base model the trainer loads, and the networks SiD starts from (the teacher's one step)."""

    def __init__(self, means, variances, t_init: int = 625):
        from diffusers import DDPMScheduler

        from sidbench.gen.models import BaseModel
        from sidbench.gen.tiny import SD_SCHEDULER

        self.means, self.variances = torch.tensor(means).float(), torch.tensor(variances).float()
        self.C, self.D = self.means.shape
        self.scheduler = DDPMScheduler(**SD_SCHEDULER)
        ab = self.scheduler.alphas_cumprod
        self.teacher = MixtureTeacher(ab, self.means, self.variances)
        self.base = BaseModel(self.teacher, None, OneHotEncoder(self.C), ClassTokenizer(self.C), self.scheduler,
                              "gmm-world", torch.device("cpu"), torch.float32)
        # The empty prompt's moment-matched Gaussian: where the fake score's unconditional branch starts.
        mix_m = self.means.mean(0)
        mix_v = (self.variances + self.means ** 2).mean(0) - mix_m ** 2
        all_m, all_v = torch.cat([self.means, mix_m[None]]), torch.cat([self.variances, mix_v[None]])
        self.fake = GaussianFamilyScore(ab, all_m, all_v)
        # SiD's generator starts as the teacher's one step at t_init: x0_hat = E[x0 | x_t = sqrt(1 - a) z], affine in z.
        a = float(ab[t_init])
        den = a * all_v + 1 - a
        self.generator = AffineGenerator(ab, all_m * (1 - a) / den, math.sqrt(a * (1 - a)) * all_v / den)

    def few_step_generator(self, times) -> StepAffineGenerator:
        """The teacher's own x0 estimate at each step time (exact posterior mean of each prompt's Gaussian)."""
        ab = self.scheduler.alphas_cumprod
        all_m, all_v = self.fake.m.detach(), self.fake.log_v.detach().exp()
        alpha, beta = [], []
        for t in times:
            a = float(ab[t])
            b = math.sqrt(a) * all_v / (a * all_v + 1 - a)
            alpha.append(all_m - b * math.sqrt(a) * all_m)
            beta.append(b)
        return StepAffineGenerator(ab, times, torch.stack(alpha), torch.stack(beta))

    def mixture_fake(self, gen: "StepAffineGenerator") -> MixtureFamilyScore:
        """The exact score of the generator's initial mixture of its 1..J-step outputs, per prompt."""
        stats = [gen.stats(k, self.C + 1) for k in range(1, len(gen.times) + 1)]
        return MixtureFamilyScore(self.scheduler.alphas_cumprod, torch.stack([m for m, _ in stats], 1),
                                  torch.stack([v for _, v in stats], 1))

    def prompts(self) -> list[str]:
        return [f"class{c}" for c in range(self.C)]

    def sample_stats(self, net):
        """Per-class mean and variance of a generator, in closed form from its affine map (mu, s^2)."""
        return net.mu.detach()[: self.C].clone(), (2 * net.log_s.detach()[: self.C]).exp()
