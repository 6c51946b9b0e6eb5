"""Resize chains before the feature network, one per FID mode, matching clean-fid's resizers.

Every chain takes a uint8 RGB HWC image and returns float32 CHW values in [0, 255]; the feature
extractor does the network's own normalisation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sidbench.core.errors import SidbenchError
from sidbench.data.images import pre_resize as _pre_resize

FID_MODES = {
    "clean": "per-channel PIL bicubic in float ('F' mode) to 299x299, clipped to [0,255], not quantised",
    "legacy_tensorflow": "no resize outside the network; the TorchScript Inception resizes inside (TF-style bilinear)",
    "legacy_pytorch": "torch F.interpolate bilinear (align_corners=False) in float to 299x299, clipped to [0,255]",
}
INCEPTION_SIZE = 299
# Resize chains that are not FID modes: networks that resize inside (VGG16 for precision/recall).
OTHER_MODES = {"inside-network": "no resize outside the network; it resizes inside (see the extractor)"}
# Resizes of the other feature networks, named "<rule>-<size>" (e.g. squash-pil-224 for FD-DINOv2).
NETWORK_RESIZES = {
    "squash-pil": "PIL bicubic (antialiased) of the uint8 image to {s}x{s}, squashed, no crop, kept uint8 "
                  "(dgm-eval's default and EDM2 resize_mode='pil')",
    "squash-torch": "torch bicubic, antialias=True, on float 0..255 to {s}x{s}, squashed, not clamped or rounded "
                    "(EDM2's default resize_mode='torch')",
    "crop-pil": "centre crop to the short side (box ((w-l)//2, (h-l)//2), l = min(w, h)), then PIL bicubic of "
                "the uint8 image to {s}x{s} (the CMMD reference's io_util)",
}


def network_resize(mode: str) -> tuple[str, int] | None:
    """("squash-pil", 224) for "squash-pil-224"; None when ``mode`` is not a network resize."""
    rule, _, size = mode.rpartition("-")
    return (rule, int(size)) if rule in NETWORK_RESIZES and size.isdigit() and int(size) >= 8 else None


def _resize_network(img: np.ndarray, rule: str, size: int) -> np.ndarray:
    if rule == "squash-torch":
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None]
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        return x[0].numpy().transpose(1, 2, 0)
    im = Image.fromarray(img)
    if rule == "crop-pil":
        w, h = im.size
        side = min(w, h)
        im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    return np.asarray(im.resize((size, size), resample=Image.BICUBIC)).astype(np.float32)


def _resize_pil_float(img: np.ndarray, size: int) -> np.ndarray:
    """clean-fid 'clean': each channel as a float32 'F' image, bicubic, clipped; HWC float32."""
    chans = []
    for c in range(3):
        ch = Image.fromarray(img[:, :, c].astype(np.float32))
        chans.append(np.asarray(ch.resize((size, size), resample=Image.BICUBIC)).clip(0, 255))
    return np.stack(chans, axis=2).astype(np.float32)


def _resize_torch_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x[0].numpy().transpose(1, 2, 0).clip(0, 255)


@dataclass(frozen=True)
class Preprocess:
    """Optional protocol pre-resize (centre crop + Lanczos, uint8), then the FID mode's resize."""

    mode: str = "clean"
    pre_resize: int | None = None

    def __post_init__(self):
        if self.mode not in FID_MODES and self.mode not in OTHER_MODES and network_resize(self.mode) is None:
            raise SidbenchError(f"unknown FID mode {self.mode!r}; expected one of {', '.join(FID_MODES)}")
        if self.pre_resize is not None and self.pre_resize < 8:
            raise SidbenchError(f"--pre-resize must be an image size in pixels, got {self.pre_resize}")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """uint8 HWC -> float32 CHW in [0, 255]."""
        if self.pre_resize is not None:
            img = _pre_resize(img, self.pre_resize)
        if self.mode == "clean":
            out = _resize_pil_float(img, INCEPTION_SIZE)
        elif self.mode == "legacy_pytorch":
            out = _resize_torch_bilinear(img, INCEPTION_SIZE)
        elif network_resize(self.mode) is not None:
            out = _resize_network(img, *network_resize(self.mode))
        else:
            out = img.astype(np.float32)
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def _network_description(self) -> str:
        rule, size = network_resize(self.mode)
        return NETWORK_RESIZES[rule].format(s=size)

    def describe(self) -> dict:
        return {
            "pre_resize": self.pre_resize,
            "pre_resize_method": ("centre crop to the short edge (torchvision rounding), PIL LANCZOS, uint8"
                                  if self.pre_resize else None),
            "fid_mode": self.mode,
            "resize": FID_MODES.get(self.mode) or OTHER_MODES.get(self.mode) or self._network_description(),
        }
