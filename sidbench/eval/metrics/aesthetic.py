"""LAION aesthetic predictor v2: a linear head on L2-normalised CLIP ViT-L/14 (OpenAI) image embeddings.

    aesthetic(x) = MLP(e / |e|),  e = CLIP ViT-L/14 encode_image(preprocess(x)),

the reference's `simple_inference.py` (christophschuhmann/improved-aesthetic-predictor @ 6934dd8, weights
`sac+logos+ava1-l14-linearMSE.pth`): CLIP's own preprocessing (PIL bicubic resize of the short side to 224,
centre crop, OpenAI mean/std), the embedding normalised, then 768 -> 1024 -> 128 -> 64 -> 16 -> 1 linear layers
with dropouts and no activations (so one affine map in eval mode), trained by MSE on ratings of about 1-10.
Per image and mean; the images pass as they are (no protocol round trip: the reference scores files as loaded).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from sidbench.core.device import AUTO, resolve_device
from sidbench.core.errors import SidbenchError

DEFINITION = "LAION aesthetic predictor v2: linear MLP on L2-normalised CLIP ViT-L/14 (OpenAI) image embeddings"


class AestheticHead(torch.nn.Module):
    """The reference's ``MLP``: its state-dict keys (layers.0, .2, .4, .6, .7) load as they are."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))

    def forward(self, x):
        return self.layers(x)


@dataclass
class AestheticScorer:
    clip: torch.nn.Module
    preprocess: object
    head: AestheticHead
    info: dict
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    total: float = 0.0
    n: int = 0

    @torch.no_grad()
    def update(self, images_uint8) -> torch.Tensor:
        pix = torch.stack([self.preprocess(Image.fromarray(np.asarray(im))) for im in images_uint8]).to(self.device)
        e = self.clip.encode_image(pix).float()
        e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # the reference's normalized() (0 norms -> 1)
        s = self.head(e).squeeze(-1).double()
        self.total += float(s.sum())
        self.n += len(s)
        return s

    def reset(self) -> None:
        self.total, self.n = 0.0, 0

    def result(self) -> dict:
        if self.n == 0:
            raise SidbenchError("aesthetic score over zero images")
        return {"value": self.total / self.n, "n": self.n, "definition": DEFINITION, "model": dict(self.info)}


def load_aesthetic_scorer(*, clip_weights: str | None = None, head_weights: str | None = None,
                          random_weights: bool = False, seed: int = 0, model_name: str = "ViT-L-14",
                          device: str | torch.device = AUTO) -> AestheticScorer:
    """The predictor from local weights (the weights table), or for tests seeded random weights of the same
    architecture (``model_name`` lets tests use a smaller CLIP; the head takes its embedding width)."""
    device = resolve_device(device)  # before any loading
    from sidbench.eval.extractors.clip_embed import openai_clip
    from sidbench.eval.extractors.weights import find_weights

    if random_weights:
        clip, preprocess = openai_clip(model_name, None, seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = AestheticHead(int(clip.visual.output_dim))
        info = {"clip": model_name, "head": None, "random": True, "seed": seed}
    else:
        if model_name != "ViT-L-14":
            raise SidbenchError("the aesthetic predictor's head was trained on CLIP ViT-L/14 (OpenAI) embeddings")
        cpath, csha = find_weights("openai-clip-ViT-L-14", clip_weights)
        hpath, hsha = find_weights("laion-aesthetic-v2", head_weights)
        clip, preprocess = openai_clip("ViT-L-14", str(cpath))  # QuickGELU, as OpenAI trained it
        head = AestheticHead(768)
        head.load_state_dict(torch.load(hpath, map_location="cpu", weights_only=True))
        info = {"clip": "ViT-L-14 (OpenAI)", "clip_weights": str(cpath), "clip_sha256": csha, "head": str(hpath),
                "head_sha256": hsha, "random": False, "seed": None}
    device = torch.device(device)
    return AestheticScorer(clip.to(device).eval(), preprocess, head.to(device).eval(), info, device)
