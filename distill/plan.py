"""``sidbench distill --plan``: the memory per device a run will need, before it starts, and whether it fits.

Static part, from the teacher's architecture built on the meta device (no weights): the teacher's weights
(replicated, or divided over the processes with fsdp + teacher sharding), the generator and the fake score with
fp32 master weights, gradients and Adam's two moments (Adam divided by the processes under zero1, everything
under fsdp), the EMA (divided under fsdp), and the frozen text encoders and VAE (fp32 weights, as the trainer
loads them). Activations: measured on the real architecture at full size, on fake tensors (torch's FakeTensorMode
with its MemTracker: shapes and dtypes only, no arithmetic), one forward + backward at batch 1 and at batch 2 in
the run's precision (bf16 autocast or fp32) and with or without gradient checkpointing: a fixed part (under
autocast, the cached bf16 copies of the weights) and a per-sample part. Counted for phase B, the larger phase:
the generator's graph, plus the fake score's and the teacher's (kept for the backward to x_t), each with its
batch doubled when its guidance needs the unconditional branch; the fixed part is counted for the generator
only, the one network whose weights require gradients in phase B.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace

import torch

from sidbench.core.errors import SidbenchError

GIB = 2 ** 30
ALIASES = {"sd15": "SD1.5 UNet", "sd21": "SD2.1 UNet", "sdxl": "SDXL UNet", "sd3-medium": "SD3-Medium MMDiT",
           "sd3.5-medium": "SD3.5-Medium MMDiT-X", "sd3.5-large": "SD3.5-Large MMDiT", "flux.1-dev": "FLUX.1-dev",
           "sana-600m": "SANA 600M", "sana-1600m": "SANA 1600M"}
VAE_CHANNELS = {"SD3-Medium MMDiT": 16, "SD3.5-Medium MMDiT-X": 16, "SD3.5-Large MMDiT": 16, "FLUX.1-dev": 16}


@dataclass(frozen=True)
class Setup:
    processes: int = 1
    batch_per_device: int = 1
    precision: str = "fp32"
    sharding: str = "none"
    teacher_sharding: str = "replicate"
    grad_checkpointing: bool = False
    cfg_fake: bool = True       # k2 != 1: the fake score's guided call doubles its batch
    cfg_teacher: bool = True    # k4 != 1

    @classmethod
    def of(cls, cfg, processes: int) -> "Setup":
        return cls(processes, cfg.batch_per_device, cfg.precision, cfg.sharding, cfg.teacher_sharding,
                   cfg.grad_checkpointing, cfg.cfg_eval_fake != 1, cfg.cfg_eval_real != 1)

    def describe(self) -> str:
        teacher = {"replicate": "replicated", "shard": "sharded"}[self.teacher_sharding]
        shard = self.sharding + (f" (teacher {teacher})" if self.sharding == "fsdp" else "")
        return (f"{self.processes} process(es), batch {self.batch_per_device}/device, {self.precision}, "
                f"sharding {shard}, checkpointing {'on' if self.grad_checkpointing else 'off'}")


def architecture_of(base: str) -> str | None:
    """A known architecture's name for ``base``: its name or alias (sd15, sdxl, sd3.5-large, flux.1-dev, ...)."""
    from sidbench.gen.architectures import ARCHITECTURES

    return base if base in ARCHITECTURES else ALIASES.get(base.lower())


def _fake(x):
    if torch.is_tensor(x):
        return torch.empty(x.shape, dtype=x.dtype)
    if isinstance(x, dict):
        return {k: _fake(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_fake(v) for v in x)
    return x


def activation_bytes(name: str, *, precision: str = "fp32", grad_checkpointing: bool = False,
                     batch: int = 1) -> int:
    """Peak activation (and temporary) bytes of one forward + backward of architecture ``name`` at ``batch``,
    measured on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from sidbench.gen.architectures import ARCHITECTURES

    a = ARCHITECTURES[name]
    with FakeTensorMode():
        return measure_activations(a.build(), _fake(a.example_inputs(batch)), precision=precision,
                                   grad_checkpointing=grad_checkpointing)


def activation_fit(name: str, *, precision: str = "fp32", grad_checkpointing: bool = False) -> tuple[int, int]:
    """(fixed, per-sample) bytes from the measurements at batch 1 and 2: under bf16 autocast the cached bf16
    copies of the weights are a fixed cost, the activations grow with the batch."""
    one = activation_bytes(name, precision=precision, grad_checkpointing=grad_checkpointing, batch=1)
    two = activation_bytes(name, precision=precision, grad_checkpointing=grad_checkpointing, batch=2)
    return max(one - (two - one), 0), two - one


def measure_activations(net: torch.nn.Module, inputs: tuple, *, precision: str = "fp32",
                        grad_checkpointing: bool = False) -> int:
    """Peak bytes of activations and temporaries (torch's MemTracker) of one training forward + backward of
    ``net`` on ``inputs`` ((args, kwargs)): real tensors, or fake ones for a network too large to run."""
    from torch.distributed._tools.mem_tracker import MemTracker

    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if grad_checkpointing:
        net.enable_gradient_checkpointing()
    net.train()
    args, kwargs = inputs
    tracker = MemTracker()
    tracker.track_external(net)
    with tracker, torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
        out = net(*args, **kwargs)
        out = out[0] if isinstance(out, tuple) else getattr(out, "sample", out)
        out.float().pow(2).mean().backward()
    peak = tracker.get_tracker_snapshot("peak")
    return int(sum(v.get(k, 0) for v in peak.values() for k in v if str(k).endswith(("ACT", "TEMP"))))


def static_parts(params: int, buffers: int, frozen: int, s: Setup) -> dict:
    """Bytes per device of each static part (fp32 master weights; fp16-pure holds every network in fp16, no EMA);
    the arithmetic is ``sid_static_bytes``'s, with the frozen text encoders and VAE at fp32."""
    from sidbench.gen.architectures import sid_static_bytes

    wb = 2 if s.precision == "fp16-pure" else 4
    b = sid_static_bytes(params, buffers=buffers, encoder_params=frozen, weights_bytes=wb, train_bytes=wb,
                         encoder_bytes=4, ema=s.precision != "fp16-pure", processes=s.processes, sharding=s.sharding,
                         teacher_sharded=s.teacher_sharding == "shard")
    return {"teacher": b["teacher"], "generator + fake score: weights and gradients": b["weights and gradients"],
            "Adam moments, both nets": b["Adam"], "EMA": b["EMA"], "text encoders + VAE (frozen, fp32)": b["text encoders"]}


def phase_b_activations(s: Setup, trained: tuple[int, int], teacher: tuple[int, int]) -> float:
    """Phase B's activations per device: the generator's graph, the fake score's and the teacher's (each kept for
    the backward to x_t, its batch doubled when its guidance needs the unconditional branch), from (fixed,
    per-sample) fits. The fixed part (autocast's cached copies of weights that require gradients) is the
    generator's alone: in phase B the fake score and the teacher are frozen, and their casts are not cached."""
    b = s.batch_per_device
    return (trained[0] + b * trained[1]) + (2 if s.cfg_fake else 1) * b * trained[1] \
        + (2 if s.cfg_teacher else 1) * b * teacher[1]


def plan(name: str, s: Setup, device_memory_gib: float | None = None, fits: dict | None = None) -> dict:
    """The memory plan of architecture ``name`` under setup ``s``; ``fits``: activation fits already measured,
    {(precision, checkpointing): (fixed, per-sample)}, filled in as measured."""
    fits = {} if fits is None else fits
    params, buffers, frozen = _counts(name)
    parts = static_parts(params, buffers, frozen, s)
    for key in {(s.precision, False), (s.precision, s.grad_checkpointing)}:
        if key not in fits:
            fits[key] = activation_fit(name, precision=key[0], grad_checkpointing=key[1])
    trained, teacher = fits[(s.precision, s.grad_checkpointing)], fits[(s.precision, False)]
    parts["activations, phase B (measured at batch 1 and 2, fake tensors)"] = phase_b_activations(s, trained, teacher)
    total = sum(parts.values())
    out = {"architecture": name, "setup": s.describe(), "params": params,
           "parts_gib": {k: v / GIB for k, v in parts.items()}, "total_gib": total / GIB,
           "activation_fit_gib": {"trained (G, fake): fixed, per sample": [v / GIB for v in trained],
                                  "teacher: fixed, per sample": [v / GIB for v in teacher]}}
    if device_memory_gib is not None:
        out["device_memory_gib"] = device_memory_gib
        out["fits"] = total / GIB <= device_memory_gib
    return out


@functools.lru_cache(maxsize=None)
def _counts(name: str) -> tuple[int, int, int]:
    """(parameters, persistent buffers, frozen text-encoder + VAE parameters), built on the meta device once."""
    from sidbench.gen.architectures import ARCHITECTURES, build, count_buffers, count_params

    net = build(name)
    frozen = sum(count_params(build(e)) for e in ARCHITECTURES[name].text_encoders) + _vae_params(name)
    return count_params(net), count_buffers(net), frozen


def _vae_params(name: str) -> int:
    from diffusers import AutoencoderKL

    c = VAE_CHANNELS.get(name, 4)
    with torch.device("meta"):
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=c, block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2)
    return sum(p.numel() for p in vae.parameters())


# The options tried, in order, when a plan does not fit: the cheapest change first.
def _alternatives(s: Setup):
    yield replace(s, precision="bf16") if s.precision == "fp32" else s
    yield replace(s, precision="bf16", grad_checkpointing=True)
    yield replace(s, precision="bf16", grad_checkpointing=True, sharding="zero1")
    yield replace(s, precision="bf16", grad_checkpointing=True, sharding="fsdp")
    yield replace(s, precision="bf16", grad_checkpointing=True, sharding="fsdp", teacher_sharding="shard")
    for n in (2, 4, 8, 16, 32, 64):
        if n > s.processes:
            yield replace(s, precision="bf16", grad_checkpointing=True, sharding="fsdp", teacher_sharding="shard",
                          processes=n)


def what_fits(name: str, s: Setup, device_memory_gib: float, fits: dict | None = None) -> dict | None:
    """The first alternative setup (``_alternatives``) whose plan fits ``device_memory_gib``, or None."""
    fits = {} if fits is None else fits
    for alt in _alternatives(s):
        p = plan(name, alt, device_memory_gib, fits)
        if p["fits"]:
            return p
    return None


def render(p: dict) -> str:
    lines = [f"memory plan: {p['architecture']} ({p['params'] / 1e9:.3f}B parameters), {p['setup']}"]
    width = max(len(k) for k in p["parts_gib"])
    for k, v in p["parts_gib"].items():
        lines.append(f"  {k:<{width}}  {v:8.2f} GiB")
    lines.append(f"  {'total per device':<{width}}  {p['total_gib']:8.2f} GiB"
                 + (f"  of {p['device_memory_gib']:g} GiB: {'fits' if p['fits'] else 'does NOT fit'}"
                    if "device_memory_gib" in p else ""))
    return "\n".join(lines)


def run_plan(cfg, processes: int, device_memory_gib: float | None, as_json: bool = False) -> dict:
    """``distill --plan``: print the plan; refuse one that cannot fit, naming the setup that would."""
    name = architecture_of(cfg.base)
    if name is None:
        raise SidbenchError(f"--plan needs a known architecture as --base ({', '.join(ALIASES)}, or a full name); "
                            f"{cfg.base!r} is not one (a folder's own config is not planned yet)")
    s = Setup.of(cfg, processes)
    fits: dict = {}
    p = plan(name, s, device_memory_gib, fits)
    print(json.dumps(p, indent=1) if as_json else render(p))
    if device_memory_gib is not None and not p["fits"]:
        alt = what_fits(name, s, device_memory_gib, fits)
        hint = ("no setup tried fits (bf16, checkpointing, zero1, fsdp, teacher sharding, up to 64 processes)"
                if alt is None else f"this would fit: {alt['setup']} ({alt['total_gib']:.1f} GiB)")
        raise SidbenchError(f"the plan needs {p['total_gib']:.1f} GiB per device, more than {device_memory_gib:g}; "
                            + hint)
    return p
