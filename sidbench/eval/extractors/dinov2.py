"""DINOv2 ViT/14 CLS features for FD-DINOv2 (Stein et al. 2023), as dgm-eval and EDM2 compute them.

The network is the torch-hub ``dinov2_vit{s,b,l}14`` backbone (facebookresearch/dinov2): patch 14, a 37x37
position grid (trained at 518 px), LayerScale, plain MLP blocks, no registers. The feature is the CLS token after
the final LayerNorm, not L2-normalised (the hub model's ``forward``). Written here, not taken from timm or
transformers, because at 224 px the hub resamples the position grid with its own rule (bicubic, no antialias,
``scale_factor = (16 + 0.1) / 37``: the "+0.1" of dino issue 8), which neither library reproduces; the state-dict
keys are the hub checkpoint's, so ``dinov2_vit*14_pretrain.pth`` loads as it is (strict).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The hub's three MLP-block sizes (vit_giant2 uses SwiGLU blocks and is not offered).
ARCHS = {"vits14": (384, 12, 6), "vitb14": (768, 12, 12), "vitl14": (1024, 24, 16)}


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn, self.mlp = Attention(dim, heads), Mlp(dim, int(dim * mlp_ratio))
        self.ls1, self.ls2 = LayerScale(dim), LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def resample_position_grid(pos_embed: torch.Tensor, h_patches: int, w_patches: int) -> torch.Tensor:
    """The hub's ``interpolate_pos_encoding``: the MxM patch grid to h x w by bicubic ``scale_factor`` (n + 0.1) / M."""
    cls, grid = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    m = int(math.sqrt(grid.shape[1]))
    if m * m != grid.shape[1]:
        raise ValueError(f"position embedding of {grid.shape[1]} patches is not a square grid")
    if (h_patches, w_patches) == (m, m):
        return pos_embed
    grid = grid.reshape(1, m, m, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((h_patches + 0.1) / m, (w_patches + 0.1) / m), mode="bicubic",
                         antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, h_patches * w_patches, -1)
    return torch.cat([cls, grid], dim=1).to(pos_embed.dtype)


class DinoV2(nn.Module):
    """The hub's DinoVisionTransformer (MLP blocks): images normalised by the caller -> post-norm CLS token."""

    def __init__(self, dim: int = 1024, depth: int = 24, heads: int = 16, patch: int = 14, grid: int = 37):
        super().__init__()
        self.patch = patch
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # in the checkpoint; unused without masks
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], dim=1)
        t = t + resample_position_grid(self.pos_embed, h, w)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)[:, 0]


class DinoV2Features(nn.Module):
    """float32 NCHW in [0, 255] (already resized to 224) -> /255, ImageNet mean/std -> CLS features."""

    def __init__(self, net: DinoV2):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def build(arch: str = "vitl14") -> DinoV2:
    dim, depth, heads = ARCHS[arch]
    return DinoV2(dim, depth, heads)


def random_dinov2(arch: str, seed: int) -> DinoV2Features:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build(arch)
        for name, p in net.named_parameters():  # timm-style init, enough for a random-weight network
            if p.dim() > 1 or name.endswith(("cls_token", "pos_embed")):
                nn.init.trunc_normal_(p, std=0.02)
    return DinoV2Features(net)


def load_dinov2(path: str, arch: str) -> DinoV2Features:
    net = build(arch)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return DinoV2Features(net)
