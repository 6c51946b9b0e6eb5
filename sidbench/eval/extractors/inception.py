"""The FID Inception v3 in its two published forms, and random-weight stand-ins of the same architecture.

- ``inception-2015-12-05.pt`` (NVlabs TorchScript of the TF FID graph): ``layers`` maps normalised 299x299
  input to pool3; ``forward(img, return_features=True)`` resizes [0,255] input inside (TF-style bilinear).
  clean-fid's 'clean' mode calls ``layers`` on ``(x - 128) / 128``; 'legacy_tensorflow' calls ``forward``.
- pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: torchvision's Inception3 with the FID blocks,
  fed ``2 * (x / 255) - 1`` at 299x299 (clean-fid's 'legacy_pytorch').

The stand-ins build the same graph (torchvision Inception3 + clean-fid's FID blocks) with seeded random
weights: the same compute and code path as the real networks, numbers that mean nothing.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from cleanfid.inception_pytorch import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2

FEATURE_DIM = 2048


def fid_inception3() -> torchvision.models.Inception3:
    """torchvision Inception3 patched into pytorch-fid's FID architecture (1008 classes, FID blocks)."""
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net


def pool3_trunk(net: torchvision.models.Inception3) -> nn.Sequential:
    """Input (normalised, 299x299) to the 2048-d pool3 map, as pytorch-fid's blocks 0-3."""
    return nn.Sequential(
        net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d,
        net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)),
    )


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Seeded random weights that keep activations in a sane range through ~100 conv layers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return module.eval()


class TFInceptionStandIn(nn.Module):
    """Same interface as the NVlabs TorchScript (``layers``; ``forward(img, return_features)``), random weights."""

    def __init__(self, seed: int = 0):
        super().__init__()
        net = randomize_(fid_inception3(), seed)
        self.layers = pool3_trunk(net)
        self.output = net.fc

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        batch_size, channels, height, width = img.shape
        x = img.to(torch.float32)
        # TF1 resize_bilinear (half-pixel off) expressed as an affine resampling grid to 299x299.
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2] += theta[0, 0] / width - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / height - theta[1, 1] / 299
        theta = theta.to(x.dtype).unsqueeze(0).repeat([batch_size, 1, 1])
        grid = F.affine_grid(theta, [batch_size, channels, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = (x - 128) / 128
        features = self.layers(x).reshape(-1, 2048)
        if return_features:
            return features
        return self.output(features)


class TorchscriptInceptionFeatures(nn.Module):
    """Features of the TF FID Inception (TorchScript or stand-in) on [0,255] input, per clean-fid's wrapper."""

    def __init__(self, base: nn.Module, resize_inside: bool):
        super().__init__()
        self.base = base
        self.resize_inside = resize_inside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize_inside:
            return self.base(x, return_features=True).reshape(x.shape[0], 2048)
        if x.shape[2] != 299 or x.shape[3] != 299:
            raise ValueError(f"clean mode expects 299x299 input (resized outside), got {tuple(x.shape[2:])}")
        return self.base.layers((x - 128) / 128).reshape(x.shape[0], 2048)


class PytorchFidInceptionFeatures(nn.Module):
    """pytorch-fid's InceptionV3 pool3 on [0,255] 299x299 input (x/255, then to [-1, 1])."""

    def __init__(self, net: torchvision.models.Inception3):
        super().__init__()
        self.trunk = pool3_trunk(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(2 * (x / 255) - 1).reshape(x.shape[0], 2048)


def load_torchscript_inception(path: str, map_location: str | torch.device = "cpu") -> nn.Module:
    with warnings.catch_warnings():  # the published file is TorchScript; there is no other way to load it
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=map_location).eval()


def load_pytorch_fid_inception(path: str) -> torchvision.models.Inception3:
    net = fid_inception3()
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()
