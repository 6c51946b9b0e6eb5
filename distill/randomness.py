"""Counter-based randomness: every draw is a function of (seed, iteration, phase, global sample index).

So the training stream does not depend on how the global batch is split over processes and accumulation
rounds, and resuming needs no RNG state: the iteration counter says where the stream is.
"""
from __future__ import annotations

import numpy as np
import torch

PHASE_FAKE, PHASE_GEN, PHASE_STEPS = 0, 1, 2  # PHASE_STEPS: the per-iteration step count


def _gen(seed: int, iteration: int, phase: int, index: int, stream: int) -> torch.Generator:
    key = np.random.SeedSequence([seed, iteration, phase, index, stream]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(key[0] % (2**63 - 1)))


def draws(seed: int, iteration: int, phase: int, indices, latent_shape, t_min: int, t_max: int, dropout: float,
          t_of_normal=None):
    """Per sample: z, eps (latent-shaped normals), t in [t_min, t_max], and whether its prompt is dropped.

    ``t_of_normal``: instead of a uniform t, a function of one standard normal draw giving t (logit-normal
    time sampling), clamped to [t_min, t_max]."""
    z, eps, t, drop = [], [], [], []
    for i in indices:
        g = _gen(seed, iteration, phase, int(i), 0)
        z.append(torch.randn(latent_shape, generator=g))
        eps.append(torch.randn(latent_shape, generator=g))
        if t_of_normal is None:
            t.append(int(torch.randint(t_min, t_max + 1, (1,), generator=g)))
        else:
            t.append(min(max(int(t_of_normal(float(torch.randn((), generator=g)))), t_min), t_max))
        drop.append(bool(torch.rand((), generator=g) < dropout))
    return torch.stack(z), torch.stack(eps), torch.tensor(t, dtype=torch.long), drop


def step_noises(seed: int, iteration: int, phase: int, indices, latent_shape, steps: int) -> list[torch.Tensor]:
    """The fresh noise of a few-step generator's steps 2..steps, per sample: ``steps - 1`` tensors [B, *shape]."""
    out = []
    for i in range(1, steps):
        out.append(torch.stack([torch.randn(latent_shape, generator=_gen(seed, iteration, phase, int(j), i))
                                for j in indices]))
    return out


def steps_this_iteration(seed: int, iteration: int, grid: int) -> int:
    """K' ~ U{1..K}: how many generator steps every sample of this iteration (both phases) takes, the same on
    every process (the SiD-DiT code draws it on rank 0 and broadcasts it); K = 1: always 1."""
    if grid == 1:
        return 1
    return 1 + int(torch.randint(grid, (1,), generator=_gen(seed, iteration, PHASE_STEPS, 0, 0)))


def prompt_indices(seed: int, iteration: int, phase: int, global_batch: int, indices, n_prompts: int) -> list[int]:
    """The prompt of each sample: an epoch-wise seeded permutation of the list, read in order."""
    out = []
    for i in indices:
        pos = (2 * iteration + phase) * global_batch + int(i)
        epoch, k = divmod(pos, n_prompts)
        perm = _permutation(seed, epoch, n_prompts)
        out.append(int(perm[k]))
    return out


_PERM_CACHE: dict = {}


def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    key = (seed, epoch, n)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 4:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = np.random.default_rng([seed, epoch, 7]).permutation(n)
    return _PERM_CACHE[key]
