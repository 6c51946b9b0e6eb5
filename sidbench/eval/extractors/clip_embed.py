"""CLIP image embeddings as features: OpenAI checkpoints loaded into open_clip, and the CMMD extractor.

OpenAI's CLIP files (``ViT-L-14.pt``, ``ViT-L-14-336px.pt``) are TorchScript archives of a QuickGELU network;
open_clip's plain model names build GELU, so a file loaded under ``ViT-L-14`` without QuickGELU gives other
embeddings. ``openai_clip`` builds the QuickGELU architecture and loads the archive's state dict, the one way
every metric here gets an OpenAI CLIP.
"""
from __future__ import annotations

import torch
import torch.nn as nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _state_dict_of(path: str) -> dict:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates jit.load; the files are TorchScript
            sd = torch.jit.load(path, map_location="cpu").state_dict()  # OpenAI's released files
    except RuntimeError:
        sd = torch.load(path, map_location="cpu", weights_only=True)  # a plain state dict of the same network
        sd = sd.get("state_dict", sd)
    return {k: v for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}


def openai_clip(model_name: str, path: str | None = None, *, seed: int = 0):
    """(model, preprocess) of an OpenAI CLIP architecture with QuickGELU: from ``path``, or seeded random weights."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, precision="fp32",
                                                                     force_quick_gelu=True)
    if path is not None:
        model.load_state_dict(_state_dict_of(str(path)), strict=True)
    return model.eval(), preprocess


class ClipImageEmbedding(nn.Module):
    """float32 NCHW in [0, 255] at the model's size -> /255, OpenAI mean/std -> L2-normalised image embedding."""

    def __init__(self, clip_model):
        super().__init__()
        self.visual = clip_model.visual
        self.register_buffer("mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, x):
        e = self.visual((x - self.mean) / self.std).float()
        return e / e.norm(dim=-1, keepdim=True)


def embedding_dim(clip_model) -> int:
    return int(clip_model.visual.output_dim)
