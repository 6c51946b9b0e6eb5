"""Devices named by the user, checked before anything is loaded onto them."""
from __future__ import annotations

import torch

from sidbench.core.errors import SidbenchError


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or an error that says why it cannot be used here (bad name, no CUDA, no such GPU)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise SidbenchError(f"--device {device!r}: not a device name ({e}); expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
            raise SidbenchError(f"--device {device}: this torch ({torch.__version__}) is {build}; use --device cpu, "
                                f"or install a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SidbenchError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible")
    return dev
