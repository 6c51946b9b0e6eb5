"""A small, checked registry of feature extractors.

Each entry knows its weight file (from the weights table) and how to build a random-weight network of
the same architecture. Unknown names fail with the list of known ones. Every extractor is a callable
on float32 NCHW images in [0, 255] (already resized for its FID mode) returning float32 [B, dim].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from sidbench.core.device import AUTO, resolve_device
from sidbench.core.errors import SidbenchError
from sidbench.eval.extractors import inception, vgg
from sidbench.eval.extractors.weights import find_weights


@dataclass
class Extractor:
    name: str
    module: Callable[[torch.Tensor], torch.Tensor]
    dim: int
    weights: dict                      # {"name", "file", "sha256", "random", "seed"}
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @torch.no_grad()  # not inference_mode: TorchScript modules reject inference tensors
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.module(x.to(self.device, non_blocking=True))
        return feats.float().reshape(x.shape[0], self.dim)

    @property
    def is_random(self) -> bool:
        return bool(self.weights.get("random"))

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "weights": dict(self.weights), "device": str(self.device)}

    @classmethod
    def from_module(cls, name: str, module: Callable, dim: int, *, weights: dict | None = None,
                    device: str | torch.device = "cpu") -> "Extractor":
        """Wrap any network (e.g. the demo's world-trained one) in the same interface."""
        if isinstance(module, nn.Module):
            module = module.to(device).eval()
        return cls(name, module, dim, weights or {"name": None, "random": None}, torch.device(device))


@dataclass(frozen=True)
class ExtractorSpec:
    name: str
    description: str
    dim: int
    modes: tuple[str, ...]                       # FID modes it serves (empty: not an FID extractor)
    weights_name: str | None                     # key in the weights table
    load: Callable[[str, str], nn.Module]        # (weight file, mode) -> module
    random: Callable[[int, str], nn.Module]      # (seed, mode) -> module of the same architecture
    resize: str | None = None                    # a network resize of sidbench.data.preprocess (not an FID mode)


_REGISTRY: dict[str, ExtractorSpec] = {}


def register_extractor(spec: ExtractorSpec, *, replace: bool = False) -> None:
    """Add a feature extractor by name; a name already taken is an error unless ``replace`` says so."""
    if spec.name in _REGISTRY and not replace:
        raise SidbenchError(f"an extractor named {spec.name!r} is already registered ({_REGISTRY[spec.name].description}); "
                            f"pick another name, or pass replace=True to override it")
    _REGISTRY[spec.name] = spec


def known_extractors() -> dict[str, ExtractorSpec]:
    return dict(_REGISTRY)


def get_spec(name: str) -> ExtractorSpec:
    if name not in _REGISTRY:
        raise SidbenchError(f"unknown feature extractor {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def default_fid_extractor(mode: str) -> str:
    return "inception-v3-pt" if mode == "legacy_pytorch" else "inception-v3-tf"


def build_extractor(name: str, *, mode: str | None = None, weights: str | None = None, random_weights: bool = False,
                    seed: int = 0, device: str | torch.device = AUTO) -> Extractor:
    """Build a registered extractor from its real weights (local file) or, for tests, random weights; on
    ``device`` (``auto``: the GPU where there is one)."""
    device = resolve_device(device)
    spec = get_spec(name)
    mode = mode or (spec.modes[0] if spec.modes else "")
    if spec.modes and mode not in spec.modes:
        raise SidbenchError(f"extractor {name} serves FID modes {', '.join(spec.modes)}, not {mode!r}")
    if random_weights:
        module = spec.random(seed, mode)
        winfo = {"name": spec.weights_name, "file": None, "sha256": None, "random": True, "seed": seed}
    else:
        path, sha = find_weights(spec.weights_name, weights)
        module = spec.load(str(path), mode)
        winfo = {"name": spec.weights_name, "file": str(path), "sha256": sha, "random": False, "seed": None}
    return Extractor(name, module.to(device).eval(), spec.dim, winfo, device)


register_extractor(ExtractorSpec(
    name="inception-v3-tf",
    description="TF FID Inception v3 pool3 (NVlabs TorchScript inception-2015-12-05.pt), as clean-fid",
    dim=inception.FEATURE_DIM,
    modes=("clean", "legacy_tensorflow"),
    weights_name="inception-2015-12-05",
    load=lambda path, mode: inception.TorchscriptInceptionFeatures(
        inception.load_torchscript_inception(path), resize_inside=(mode == "legacy_tensorflow")),
    random=lambda seed, mode: inception.TorchscriptInceptionFeatures(
        inception.TFInceptionStandIn(seed), resize_inside=(mode == "legacy_tensorflow")),
))

register_extractor(ExtractorSpec(
    name="inception-v3-pt",
    description="pytorch-fid InceptionV3 pool3 (pt_inception-2015-12-05-6726825d.pth), clean-fid legacy_pytorch",
    dim=inception.FEATURE_DIM,
    modes=("legacy_pytorch",),
    weights_name="pt_inception-2015-12-05",
    load=lambda path, mode: inception.PytorchFidInceptionFeatures(inception.load_pytorch_fid_inception(path)),
    random=lambda seed, mode: inception.PytorchFidInceptionFeatures(inception.randomize_(inception.fid_inception3(), seed)),
))


register_extractor(ExtractorSpec(
    name="vgg16-fc2",
    description=(f"torchvision VGG16 {vgg.LAYER} (4096-d, vgg16-397923af.pth) for precision/recall; "
                 f"resize: {vgg.RESIZE}; {vgg.NORMALISATION}"),
    dim=vgg.FEATURE_DIM,
    modes=(),
    weights_name="vgg16-torchvision",
    load=lambda path, mode: vgg.load_torchvision_vgg16(path),
    random=lambda seed, mode: vgg.random_vgg16(seed),
))



def _dinov2_spec(arch: str) -> ExtractorSpec:
    from sidbench.eval.extractors import dinov2

    return ExtractorSpec(
        name=f"dinov2-{arch}",
        description=(f"DINOv2 {arch} (torch hub dinov2_{arch}, LVD-142M) post-LayerNorm CLS token, "
                     f"hub position-grid resampling, ImageNet normalisation (FD-DINOv2, dgm-eval / EDM2)"),
        dim=dinov2.ARCHS[arch][0], modes=(), weights_name=f"dinov2_{arch}",
        load=lambda path, mode: dinov2.load_dinov2(path, arch),
        random=lambda seed, mode: dinov2.random_dinov2(arch, seed),
        resize="squash-pil-224")


for _arch in ("vits14", "vitb14", "vitl14"):
    register_extractor(_dinov2_spec(_arch))


def _cmmd_clip(path: str | None, seed: int = 0) -> nn.Module:
    from sidbench.eval.extractors.clip_embed import ClipImageEmbedding, openai_clip

    return ClipImageEmbedding(openai_clip("ViT-L-14-336", path, seed=seed)[0])


register_extractor(ExtractorSpec(
    name="clip-vit-l14-336",
    description="OpenAI CLIP ViT-L/14@336px image embedding, L2-normalised (CMMD, Jayasumana et al. 2024)",
    dim=768, modes=(), weights_name="openai-clip-ViT-L-14-336",
    load=lambda path, mode: _cmmd_clip(path),
    random=lambda seed, mode: _cmmd_clip(None, seed),
    resize="crop-pil-336"))
