"""Per-prompt LPIPS diversity: the mean LPIPS distance between the K images of one prompt, averaged over prompts.

    LPIPS-div = (1/P) sum_p  2 / (K (K - 1))  sum_{i<j} LPIPS(x_pi, x_pj)

LPIPS (Zhang et al. 2018; richzhang/PerceptualSimilarity, pip ``lpips`` 0.1.4, ``net='alex'``, ``version='0.1'``):
inputs in [-1, 1], the ScalingLayer, the five ReLU stages of torchvision's AlexNet, each unit-normalised over
channels, squared differences, the learned 1x1 linear layers (v0.1 ``alex.pth``), the spatial mean, summed over
stages. No resize inside LPIPS: images are compared at the size they arrive (after the protocol pre-resize, if
any). A collapsed generator scores 0. The K images of prompt p are images pK .. pK + K - 1 (the prompt list repeats
each prompt K times, so caption i still pairs with image i).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from sidbench.core.errors import SidbenchError
from sidbench.data.images import pre_resize

DEFINITION = ("mean over prompts of the mean LPIPS (AlexNet, v0.1 linear layers) over all K(K-1)/2 pairs of "
              "that prompt's images")
CHANNELS = (64, 192, 384, 256, 256)
_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))  # lpips' alexnet slices: up to each ReLU


class _Lin(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class Lpips(nn.Module):
    """LPIPS-alex v0.1 with the reference's state-dict keys (``lin{k}.model.1.weight``) for its linear layers."""

    def __init__(self, alexnet_features: nn.Sequential):
        super().__init__()
        self.slices = nn.ModuleList(alexnet_features[a:b] for a, b in _SLICES)  # slicing keeps the layer numbers
        for k, c in enumerate(CHANNELS):
            self.add_module(f"lin{k}", _Lin(c))
        self.register_buffer("shift", torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([.458, .448, .450]).view(1, 3, 1, 1), persistent=False)

    def _stages(self, x):
        h, out = (x - self.shift) / self.scale, []
        for s in self.slices:
            h = s(h)
            out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances [N] between image batches in [-1, 1]."""
        total = 0
        for k, (fa, fb) in enumerate(zip(self._stages(a), self._stages(b))):
            total = total + getattr(self, f"lin{k}")((fa - fb) ** 2).mean((2, 3))
        return total.flatten()

    def lin_state_dict(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if k.startswith("lin")}


def build_lpips(*, alexnet_weights: str | None = None, lin_weights: str | None = None, random_weights: bool = False,
                seed: int = 0) -> tuple[Lpips, dict]:
    """LPIPS from local files (torchvision AlexNet + the v0.1 linear layers), or seeded random weights."""
    import torchvision

    from sidbench.eval.extractors.weights import find_weights

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        alex = torchvision.models.alexnet(weights=None)
        net = Lpips(alex.features)
        if random_weights:
            for k in range(len(CHANNELS)):  # the learned weights are non-negative: keep that property
                w = getattr(net, f"lin{k}").model[1].weight
                w.data = w.data.abs()
    if random_weights:
        info = {"net": "alex", "version": "0.1", "random": True, "seed": seed}
    else:
        apath, asha = find_weights("alexnet-torchvision", alexnet_weights)
        lpath, lsha = find_weights("lpips-alex-v0.1", lin_weights)
        alex.load_state_dict(torch.load(apath, map_location="cpu", weights_only=True))
        lin = torch.load(lpath, map_location="cpu", weights_only=True)
        if set(lin) != set(net.lin_state_dict()):
            raise SidbenchError(f"{lpath}: not the LPIPS v0.1 AlexNet linear layers (keys {sorted(lin)[:3]}...)")
        net.load_state_dict(lin, strict=False)  # the trunk came from alexnet above
        info = {"net": "alex", "version": "0.1", "random": False, "alexnet": str(apath), "alexnet_sha256": asha,
                "lin": str(lpath), "lin_sha256": lsha}
    return net.eval(), info


class LpipsDiversity:
    """The pass's consumer: images buffered per prompt group; a group's pairs are scored once it is complete."""

    def __init__(self, net: Lpips, k: int, info: dict, prompts=None, device="cpu", pre_resize: int | None = None):
        if k < 2:
            raise SidbenchError(f"--images-per-prompt {k}: diversity needs at least 2 images per prompt")
        self.net, self.k, self.info, self.prompts = net.to(device), k, info, prompts
        self.device, self.pre_resize = torch.device(device), pre_resize
        self.pending: dict[int, dict[int, np.ndarray]] = {}
        self.groups: dict[int, float] = {}  # prompt group -> its mean pairwise distance

    def prepare(self, img: np.ndarray) -> np.ndarray:
        return img if self.pre_resize is None else pre_resize(img, self.pre_resize)

    @torch.no_grad()
    def _score(self, group: int, images: list[np.ndarray]) -> None:
        if len({im.shape for im in images}) != 1:
            raise SidbenchError(f"prompt group {group}: its images differ in size; LPIPS compares equal sizes "
                                f"(use --pre-resize)")
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().to(self.device) / 127.5 - 1
        i, j = np.triu_indices(len(images), 1)
        self.groups[group] = float(self.net(x[i], x[j]).double().mean())

    def consume(self, indices: list[int], items: list[np.ndarray]) -> None:
        for idx, img in zip(indices, items):
            g = idx // self.k
            if self.prompts is not None and self.prompts[idx] != self.prompts[g * self.k]:
                raise SidbenchError(f"--images-per-prompt {self.k}: image {idx} has prompt {self.prompts[idx]!r}, "
                                    f"not its group's {self.prompts[g * self.k]!r} (the list repeats each prompt "
                                    f"K times, in a row)")
            self.pending.setdefault(g, {})[idx] = img
            if len(self.pending[g]) == self.k:
                group = self.pending.pop(g)
                self._score(g, [group[i] for i in sorted(group)])

    def result(self, n_images: int) -> dict:
        if n_images % self.k:
            raise SidbenchError(f"{n_images} images are not whole groups of --images-per-prompt {self.k}")
        if self.pending:  # images skipped as unreadable leave a group short: score what is there (>= 2)
            for g, group in sorted(self.pending.items()):
                if len(group) >= 2:
                    self._score(g, [group[i] for i in sorted(group)])
        if not self.groups:
            raise SidbenchError("LPIPS diversity over zero prompt groups")
        vals = np.array([self.groups[g] for g in sorted(self.groups)])
        return {"value": float(vals.mean()), "prompts": len(vals), "images_per_prompt": self.k,
                "pairs_per_prompt": self.k * (self.k - 1) // 2, "std_over_prompts": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                "resolution": f"pre-resize {self.pre_resize}" if self.pre_resize else "native",
                "definition": DEFINITION, "model": dict(self.info)}
