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


def _status_mb(*keys: str) -> dict[str, float]:
    """Lines of /proc/self/status (Linux) in MiB, read at once so they describe the same moment; {} elsewhere."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in keys:
                    out[key] = int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return out


def peak_rss_mb() -> float | None:
    """The process's resident-set peak since start or since the last ``reset_peak_rss`` (Linux VmHWM), in MiB;
    None where /proc has no such line."""
    return _status_mb("VmHWM").get("VmHWM")


def reset_peak_rss() -> bool:
    """Start a new resident-set peak at the current size (Linux: ``5`` to /proc/self/clear_refs), so a phase's own
    peak can be read; False where it did not take (then only the lifetime peak is known). Some kernels and
    sandboxes accept the write and keep the old peak, so success is read back: the peak must now be the current
    size (an old peak equal to the current size reads right either way)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    now = _status_mb("VmHWM", "VmRSS")
    return len(now) == 2 and now["VmHWM"] - now["VmRSS"] < 4.0  # MiB: the pages touched between write and read
