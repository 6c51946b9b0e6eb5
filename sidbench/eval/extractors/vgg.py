"""VGG16 fc2 features for precision/recall (registry name ``vgg16-fc2``), and a random-weight stand-in.

What the published implementations feed their k-NN manifolds:

- NVIDIA's ``pr50k3`` (stylegan2-ada-pytorch ``metrics/precision_recall.py``) runs its own TorchScript
  ``vgg16.pt`` (not in our weights table: nothing here runs it), called with ``return_features=True``; the network
  resizes and normalises inside, so its features are not those of the torchvision model below.
- torch-fidelity's default PR extractor is torchvision's ImageNet VGG16, layer ``fc2_relu``, fed uint8
  images resized to 224x224 with its TF1-style bilinear interpolation
  (``interpolate_bilinear_2d_like_tensorflow1x``), then normalised with the ImageNet mean/std.

Ours: torchvision's VGG16 (state dict ``vgg16-397923af.pth``, weights entry ``vgg16-torchvision``), output
ReLU(fc2) = ``classifier[:5]`` in eval mode (fc1, ReLU, Dropout as identity, fc2, ReLU), 4096-d. Input is
float NCHW RGB in [0, 255] of any size; it is resized to 224x224 with torch's bilinear interpolation
(``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``, skipped when already 224x224) and
normalised with the ImageNet mean/std. So at 224x224 input our features equal torch-fidelity's; at other
sizes the two resizes differ (torch's half-pixel-centre bilinear vs TF1's corner-aligned-scale bilinear).
``LAYER``, ``RESIZE`` and ``NORMALISATION`` below (and ``VGG16Fc2.describe()``) name these choices for results.

The random-weight stand-in is the same graph with seeded He-normal weights (``inception.randomize_``):
the same compute and code path, numbers that mean nothing.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from sidbench.core.errors import SidbenchError
from sidbench.eval.extractors.inception import randomize_

FEATURE_DIM = 4096
INPUT_SIZE = 224
LAYER = "fc2_relu"
RESIZE = ("torch bilinear to 224x224 (F.interpolate, align_corners=False, antialias=False; "
          "none when already 224x224)")
NORMALISATION = "x / 255, then ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def describe() -> dict:
    return {"network": "torchvision vgg16", "layer": LAYER, "dim": FEATURE_DIM, "resize": RESIZE,
            "normalisation": NORMALISATION, "input": "float NCHW RGB in [0, 255], any size"}


class VGG16Fc2(nn.Module):
    """ReLU(fc2) of a torchvision VGG16 on [0, 255] images of any size."""

    def __init__(self, net: torchvision.models.VGG):
        super().__init__()
        self.features = net.features
        self.avgpool = net.avgpool
        self.fc = net.classifier[:5]            # fc1, ReLU, Dropout (identity in eval), fc2, ReLU
        # 255 * mean/std formed in float64, then rounded: the same constants as torchvision's normalize gets.
        self.register_buffer("mean", torch.tensor([255 * v for v in IMAGENET_MEAN]).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor([255 * v for v in IMAGENET_STD]).reshape(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got {tuple(x.shape)}")
        x = x.to(torch.float32)
        if x.shape[2] != INPUT_SIZE or x.shape[3] != INPUT_SIZE:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=False)
        x = (x - self.mean) / self.std
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(x)

    def describe(self) -> dict:
        return describe()


def vgg16_net() -> torchvision.models.VGG:
    """An uninitialised torchvision VGG16 (built on the meta device: no time spent on a default init)."""
    with torch.device("meta"):
        net = torchvision.models.vgg16(weights=None, init_weights=False)
    return net.to_empty(device="cpu")


def load_torchvision_vgg16(path: str) -> VGG16Fc2:
    """Features from a torchvision ``vgg16`` state dict (e.g. vgg16-397923af.pth)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise SidbenchError(f"{path}: expected a torchvision vgg16 state dict, got a {type(state).__name__}")
    net = vgg16_net()
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise SidbenchError(f"{path} is not a torchvision vgg16 state dict: {str(e).splitlines()[0]}") from None
    return VGG16Fc2(net).eval()


def random_vgg16(seed: int = 0) -> VGG16Fc2:
    """Same architecture, seeded random weights (the whole VGG16 is drawn, so a saved state dict matches)."""
    return VGG16Fc2(randomize_(vgg16_net(), seed)).eval()
