"""The demo world's metric network as a registered feature extractor (``world-cnn``) and weight file.

Importing ``sidbench.demo`` registers both, so ``sidbench eval --extractor world-cnn`` works on demo images
with the network the package ships (``assets/world_cnn.safetensors``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from sidbench.eval.extractors.registry import ExtractorSpec, known_extractors, register_extractor
from sidbench.eval.extractors.weights import WEIGHTS, WeightsSpec, register_weights

NAME = "world-cnn"
SHIPPED = Path(__file__).resolve().parent / "assets" / "world_cnn.safetensors"


def world_cnn(path: str | None, seed: int = 0) -> torch.nn.Module:
    """The trained network from ``path``, or (``path`` None) a random one drawn from its own RNG."""
    from sidbench.demo.toymodels import WorldCNN, load_metric_net

    with torch.random.fork_rng(devices=[]):  # building it never moves the caller's random stream
        torch.manual_seed(seed)
        return WorldCNN().eval() if path is None else load_metric_net(path)


if NAME not in WEIGHTS:
    register_weights(WeightsSpec(NAME, SHIPPED.name, "(not downloadable: shipped in the package; rebuilt by "
                                 "`sidbench demo --rebuild-teacher`)", "the demo world's Fréchet distance and "
                                 "adherence (128-d CNN)", bundled=str(SHIPPED)))
if NAME not in known_extractors():
    register_extractor(ExtractorSpec(
        name=NAME,
        description="the demo world's metric network: 3-conv CNN, 128-d features of 16x16 images (no resize)",
        dim=128,
        modes=(),
        weights_name=NAME,
        load=lambda path, mode: world_cnn(path),
        random=lambda seed, mode: world_cnn(None, seed),
    ))
