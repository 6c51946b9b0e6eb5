"""EMA of the generator with the reference's ramped half-life (in images)."""
from __future__ import annotations

import torch


def ema_beta(batch: int, cur_nimg: int, ema_mimg: float, rampup: float = 0.05) -> float:
    """beta = 0.5 ** (batch / h), h = min(ema_mimg * 1e6, cur_nimg * rampup)."""
    h = min(ema_mimg * 1e6, cur_nimg * rampup)
    return 0.5 ** (batch / max(h, 1e-8))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, beta: float) -> None:
    for pe, pn in zip(ema.parameters(), net.parameters()):
        pe.copy_(pn.detach().to(pe.dtype).lerp(pe, beta))
    for be, bn in zip(ema.buffers(), net.buffers()):
        be.copy_(bn)
