"""Devices named by the user, checked before anything is loaded onto them; ``auto`` picks the best one here."""
from __future__ import annotations

import os
import platform

import torch

from sidbench.core.errors import SidbenchError

AUTO = "auto"  # every heavy verb's default: the launcher's GPU, else cuda, else mps, else cpu


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or an error that says why it cannot be used here (bad name, no CUDA, no such GPU)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise SidbenchError(f"--device {device!r}: not a device name ({e}); expected auto, cpu, cuda, cuda:N "
                            f"or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
            raise SidbenchError(f"--device {device}: this torch ({torch.__version__}) is {build}; use --device cpu, "
                                f"or install a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SidbenchError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible")
    if dev.type == "mps" and not _mps_available():
        raise SidbenchError(f"--device {device}: this torch ({torch.__version__}) has no usable MPS backend "
                            f"(Apple GPUs only); use --device cpu")
    return dev


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def launcher_local_rank() -> int | None:
    """This process's GPU slot under torchrun / accelerate launch (LOCAL_RANK), None for a plain process."""
    value = os.environ.get("LOCAL_RANK")
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise SidbenchError(f"LOCAL_RANK={value!r} is not a number: launch with torchrun or accelerate launch, "
                            f"or unset it") from None


def resolve_device(requested: str | torch.device | None = AUTO) -> torch.device:
    """The device a run uses. ``auto`` (or None): ``cuda:LOCAL_RANK`` under a launcher where CUDA is available,
    else ``cuda``'s first GPU, else ``mps`` where torch has it, else ``cpu``. An explicit name is checked
    (``check_device``); a bare ``cuda`` under a launcher is that process's GPU, as launchers mean it."""
    rank = launcher_local_rank()
    if requested is None or str(requested) == AUTO:
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            if rank is not None and rank >= count:
                raise SidbenchError(f"--device auto: the launcher gave this process LOCAL_RANK {rank}, but only "
                                    f"{count} GPU(s) are visible; launch at most {count} process(es) per machine, "
                                    f"or pass --device cpu")
            return torch.device("cuda", rank or 0)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    dev = check_device(requested)
    if dev.type == "cuda" and dev.index is None:
        return check_device(f"cuda:{rank or 0}")
    return dev


def _cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(dev: str | torch.device) -> dict[str, str]:
    """What results record of a device: {"device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3"}."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    elif dev.type == "mps":
        name = f"Apple GPU (MPS), {platform.machine()}"
    else:
        name = _cpu_name()
    return {"device": str(dev), "device_name": name}


def device_line(info: dict[str, str]) -> str:
    """The start line of a heavy verb: which device it runs on (with the rank under a launcher)."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE", "1")
    who = f"rank {rank}/{world}: " if rank is not None and world != "1" else ""
    return f"{who}device {info['device']} ({info['device_name']})"


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
