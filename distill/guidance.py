"""Classifier-free guidance on a score network, in one batched call."""
from __future__ import annotations

import torch


def guided_eps(net: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
               k: float) -> torch.Tensor:
    """eps_u + k (eps_c - eps_u); k = 1 is the conditional call alone (one network call per sample)."""
    if k == 1.0:
        return net(x_t, t, encoder_hidden_states=cond).sample
    out = net(torch.cat([x_t, x_t]), torch.cat([t, t]),
              encoder_hidden_states=torch.cat([uncond.expand_as(cond), cond])).sample
    eps_u, eps_c = out.chunk(2)
    return eps_u + k * (eps_c - eps_u)
