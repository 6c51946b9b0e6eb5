"""Make torchvision importable beside a torch whose build its compiled ops do not match.

PyPI's Linux torchvision wheels link the CUDA torch library; next to the CPU torch wheel their
``_C`` extension fails to load and ``import torchvision`` dies in ``register_fake("torchvision::nms")``.
We use no compiled torchvision op (no nms, no image decoders), so when, and only when, the
extension cannot load, we declare the two operator schemas torchvision's Python code needs at
import. Where the extension loads (any matched install, any GPU box) this does nothing.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import torch

# Kept alive for the life of the process: dropping the Library object unregisters the schemas.
_fragment = None

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def _extension_path() -> str | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    folder = os.path.dirname(spec.origin)
    for name in sorted(os.listdir(folder)):
        if name.startswith("_C") and name.endswith((".so", ".pyd")):
            return os.path.join(folder, name)
    return None


def _has_nms() -> bool:
    return hasattr(torch.ops.torchvision, "nms")


def install() -> bool:
    """Declare the schemas if torchvision's extension cannot load. Returns True if it acted."""
    global _fragment
    if "torchvision" in sys.modules or _fragment is not None or _has_nms():
        return False
    path = _extension_path()
    if path is None:  # torchvision absent: nothing to guard
        return False
    try:
        torch.ops.load_library(path)
    except OSError:
        pass
    if _has_nms():
        return False
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _fragment.define(schema)
    return True


ACTED = install()
