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
        if self.mode not in FID_MODES and self.mode not in OTHER_MODES:
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
        else:
            out = img.astype(np.float32)
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def describe(self) -> dict:
        return {
            "pre_resize": self.pre_resize,
            "pre_resize_method": ("centre crop to the short edge (torchvision rounding), PIL LANCZOS, uint8"
                                  if self.pre_resize else None),
            "fid_mode": self.mode,
            "resize": FID_MODES.get(self.mode) or OTHER_MODES[self.mode],
        }
