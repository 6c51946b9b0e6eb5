"""``sidbench distill --plan``: the memory per device a run will need, before it starts, and whether it fits.

Static part, from the teacher's architecture built on the meta device (no weights): the teacher's weights
(replicated, or divided over the processes with fsdp + teacher sharding), the generator and the fake score with
fp32 master weights (fp16 in fp16-pure) and Adam's two moments in the same dtype, one of the two networks'
gradients at a time (each phase frees its own), Adam divided by the processes under zero1, everything under
fsdp; the EMA (divided under fsdp), the frozen text encoders (fp32, or bf16 with --text-encoder-dtype)
and the VAE (fp32). Activations: measured on the real architecture at full size, on fake tensors (torch's
FakeTensorMode: shapes and dtypes only, no arithmetic; storages counted op by op by distill.memory_trace), one
forward + backward at batch 1 and at batch 2 in the run's precision (bf16 autocast, fp32, or fp16-pure), with or without
gradient checkpointing, as a trained network (weights need gradients) or a frozen one (the gradient goes to the
input only): a fixed part (under autocast, the bf16 copies of the weights: cached for trained ones, kept by the
graph for frozen ones unless checkpointed) and a per-sample part. Counted for phase B, the larger phase: the
generator's graph (trained), the fake score's and the teacher's (frozen, kept for the backward to x_t; the teacher
checkpointed with --recompute-teacher), each of those two on twice the batch when its guidance needs the
unconditional branch.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace

import torch

from sidbench.core.errors import SidbenchError

GIB = 2 ** 30
VAE_CHANNELS = {"SD3-Medium MMDiT": 16, "SD3.5-Medium MMDiT-X": 16, "SD3.5-Large MMDiT": 16, "FLUX.1-dev": 16}


@dataclass(frozen=True)
class Setup:
    processes: int = 1
    batch_per_device: int = 1
    precision: str = "fp32"
    sharding: str = "none"
    teacher_sharding: str = "replicate"
    grad_checkpointing: bool = False
    recompute_teacher: bool = False
    text_encoder_dtype: str = "fp32"
    cfg_fake: bool = True       # k2 != 1: the fake score's guided call doubles its batch
    cfg_teacher: bool = True    # k4 != 1

    @classmethod
    def of(cls, cfg, processes: int) -> "Setup":
        return cls(processes, cfg.batch_per_device, cfg.precision, cfg.sharding, cfg.teacher_sharding,
                   cfg.grad_checkpointing, cfg.recompute_teacher, cfg.text_encoder_dtype, cfg.cfg_eval_fake != 1,
                   cfg.cfg_eval_real != 1)

    def describe(self) -> str:
        teacher = {"replicate": "replicated", "shard": "sharded"}[self.teacher_sharding]
        shard = self.sharding + (f" (teacher {teacher})" if self.sharding == "fsdp" else "")
        return (f"{self.processes} process(es), batch {self.batch_per_device}/device, {self.precision}, "
                f"sharding {shard}, checkpointing {'on' if self.grad_checkpointing else 'off'}"
                + (", teacher checkpointed" if self.recompute_teacher else "")
                + (f", text encoders {self.text_encoder_dtype}" if self.text_encoder_dtype != "fp32" else ""))


def architecture_of(base: str) -> str | None:
    """The known architecture ``base`` names: its name, a teacher's short name or alias (sd15, sdxl, sd3.5-large,
    flux-dev, ...) or hub id (``sidbench.gen.teachers``), or a local diffusers folder whose teacher has that
    architecture's parameter shapes and native size."""
    from pathlib import Path

    from sidbench.gen.architectures import ARCHITECTURES
    from sidbench.gen.teachers import find_teacher

    if base in ARCHITECTURES:
        return base
    if (Path(base) / "model_index.json").is_file():  # a local folder wins over a name, as for --base
        return _folder_architecture(Path(base))
    teacher = find_teacher(base) or (find_teacher(base.rstrip("/")) if "/" in base.rstrip("/") else None)
    return teacher.architecture if teacher else None


def _folder_architecture(folder) -> str | None:
    """The known architecture whose every parameter shape (and sample size) the folder's teacher config has."""
    import diffusers

    from sidbench.gen.architectures import ARCHITECTURES

    index = json.loads((folder / "model_index.json").read_text())
    sub = next((k for k in ("unet", "transformer") if k in index), None)
    if sub is None or not (folder / sub / "config.json").is_file():
        raise SidbenchError(f"--plan: {folder} has no unet/ or transformer/ config.json to plan from")
    config = json.loads((folder / sub / "config.json").read_text())
    cls = getattr(diffusers, config.get("_class_name", index[sub][1]), None)
    if cls is None:
        raise SidbenchError(f"--plan: {folder / sub / 'config.json'} names {config.get('_class_name')!r}, "
                            "not a diffusers model class")
    with torch.device("meta"):
        net = cls.from_config(config)
    mine = _signature(net)
    return next((name for name in ARCHITECTURES if _known_signature(name) == mine), None)


def _signature(net: torch.nn.Module) -> tuple:
    size = getattr(net.config, "sample_size", None)
    return (type(net).__name__, size, tuple((k, tuple(v.shape)) for k, v in net.state_dict().items()))


@functools.lru_cache(maxsize=None)
def _known_signature(name: str) -> tuple:
    from sidbench.gen.architectures import build

    return _signature(build(name))


def _map_tensors(x, fn):
    """``fn`` applied to every tensor in nested tuples, lists and dicts (the example inputs' layout)."""
    if torch.is_tensor(x):
        return fn(x)
    if isinstance(x, dict):
        return {k: _map_tensors(v, fn) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_map_tensors(v, fn) for v in x)
    return x


def _fake(x):
    return _map_tensors(x, lambda t: torch.empty(t.shape, dtype=t.dtype))


def _half_parameters(net: torch.nn.Module) -> None:
    """``net.half()`` by replacing each floating parameter and buffer: Module.half swaps tensors in place, which
    fake tensors refuse."""
    for m in net.modules():
        for k, p in m._parameters.items():
            if p is not None and p.is_floating_point():
                m._parameters[k] = torch.nn.Parameter(p.detach().half(), requires_grad=p.requires_grad)
        for k, b in m._buffers.items():
            if b is not None and b.is_floating_point():
                m._buffers[k] = b.half()


def activation_bytes(name: str, *, precision: str = "fp32", grad_checkpointing: bool = False,
                     batch: int = 1, frozen: bool = False) -> int:
    """Peak activation (and temporary) bytes of one forward + backward of architecture ``name`` at ``batch``,
    measured on fake tensors; ``frozen``: the weights need no gradient, only the input (the fake score and the
    teacher in phase B)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from sidbench.gen.architectures import ARCHITECTURES

    a = ARCHITECTURES[name]
    with FakeTensorMode():
        return measure_activations(a.build(), _fake(a.example_inputs(batch)), precision=precision,
                                   grad_checkpointing=grad_checkpointing, frozen=frozen)


def activation_fit(name: str, *, precision: str = "fp32", grad_checkpointing: bool = False,
                   frozen: bool = False) -> tuple[int, int]:
    """(fixed, per-sample) bytes from the measurements at batch 1 and 2: under bf16 autocast the cached bf16
    copies of the weights that require gradients are a fixed cost, the activations grow with the batch."""
    kw = dict(precision=precision, grad_checkpointing=grad_checkpointing, frozen=frozen)
    one, two = activation_bytes(name, batch=1, **kw), activation_bytes(name, batch=2, **kw)
    return max(one - (two - one), 0), two - one


def measure_activations(net: torch.nn.Module, inputs: tuple, *, precision: str = "fp32",
                        grad_checkpointing: bool = False, frozen: bool = False) -> int:
    """The most bytes of activations and temporaries held at any moment (``ActivationPeak``) of one training
    forward + backward of ``net`` on ``inputs`` ((args, kwargs)): real tensors, or fake ones for a network too large
    to run. Gradients are not in it: the static part counts them. ``frozen``: the backward goes to the
    input latent only (the trainer's phase B through the fake score and the teacher), which keeps less."""
    from distill.memory_trace import ActivationPeak

    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if grad_checkpointing:
        net.enable_gradient_checkpointing()
    net.train().requires_grad_(not frozen)
    args, kwargs = inputs
    if precision == "fp16-pure":  # the reference's fp16 mode: the network and its inputs in fp16, no autocast
        _half_parameters(net)
        args, kwargs = _map_tensors((args, kwargs), lambda t: t.half() if t.is_floating_point() else t)
    if frozen:
        (args[0] if args else kwargs["hidden_states"]).requires_grad_(True)
    with ActivationPeak(net) as tracker, torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
        out = net(*args, **kwargs)
        out = out[0] if isinstance(out, tuple) else getattr(out, "sample", out)
        out.float().pow(2).mean().backward()
    return tracker.peak


def static_parts(params: int, buffers: int, encoders: int, vae: int, s: Setup) -> dict:
    """Bytes per device of each static part (fp32 master weights; fp16-pure holds every network in fp16, no EMA);
    the arithmetic is ``sid_static_bytes``'s, with one trained network's gradients at a time (the trainer frees
    each phase's after its step), the frozen text encoders at fp32 or bf16 and the VAE at fp32."""
    from sidbench.gen.architectures import sid_static_bytes

    wb = 2 if s.precision == "fp16-pure" else 4
    eb = 2 if s.text_encoder_dtype == "bf16" else 4
    b = sid_static_bytes(params, buffers=buffers, encoder_params=encoders, weights_bytes=wb, train_bytes=wb,
                         encoder_bytes=eb, ema=s.precision != "fp16-pure", processes=s.processes, sharding=s.sharding,
                         teacher_sharded=s.teacher_sharding == "shard", grads_held=1)
    return {"teacher": b["teacher"], "generator + fake score: weights, one net's gradients": b["weights and gradients"],
            "Adam moments, both nets": b["Adam"], "EMA": b["EMA"],
            f"text encoders (frozen, {s.text_encoder_dtype})": b["text encoders"], "VAE (frozen, fp32)": 4 * vae}


def phase_b_activations(s: Setup, trained: tuple[int, int], fake: tuple[int, int], teacher: tuple[int, int]) -> float:
    """Phase B's activations per device from (fixed, per-sample) fits: the generator's graph (trained), the fake
    score's and the teacher's (frozen: kept for the backward to x_t only), each of those two on twice the batch
    when its guidance needs the unconditional branch. The fake score runs with the run's checkpointing (the
    trainer switches it on for both trained networks), the teacher only with --recompute-teacher."""
    b = s.batch_per_device
    return (trained[0] + b * trained[1]) + (fake[0] + (2 if s.cfg_fake else 1) * b * fake[1]) \
        + (teacher[0] + (2 if s.cfg_teacher else 1) * b * teacher[1])


def plan(name: str, s: Setup, device_memory_gib: float | None = None, fits: dict | None = None) -> dict:
    """The memory plan of architecture ``name`` under setup ``s``; ``fits``: activation fits already measured,
    {(precision, checkpointing, frozen): (fixed, per-sample)}, filled in as measured."""
    fits = {} if fits is None else fits
    params, buffers, encoders, vae = _counts(name)
    parts = static_parts(params, buffers, encoders, vae, s)
    wanted = {"trained (generator)": (s.precision, s.grad_checkpointing, False),
              "frozen (fake score, phase B)": (s.precision, s.grad_checkpointing, True),
              "frozen (teacher)": (s.precision, s.recompute_teacher, True)}
    for key in wanted.values():
        if key not in fits:
            fits[key] = activation_fit(name, precision=key[0], grad_checkpointing=key[1], frozen=key[2])
    parts["activations, phase B (measured at batch 1 and 2, fake tensors)"] = phase_b_activations(
        s, *(fits[k] for k in wanted.values()))
    total = sum(parts.values())
    out = {"architecture": name, "setup": s.describe(), "params": params,
           "parts_gib": {k: v / GIB for k, v in parts.items()}, "total_gib": total / GIB,
           "activation_fit_gib": {f"{k}: fixed, per sample": [v / GIB for v in fits[key]]
                                  for k, key in wanted.items()}}
    if device_memory_gib is not None:
        out["device_memory_gib"] = device_memory_gib
        out["fits"] = total / GIB <= device_memory_gib
    return out


@functools.lru_cache(maxsize=None)
def _counts(name: str) -> tuple[int, int, int, int]:
    """(parameters, persistent buffers, text-encoder parameters, VAE parameters), built on the meta device once."""
    from sidbench.gen.architectures import ARCHITECTURES, build, count_buffers, count_params

    net = build(name)
    encoders = sum(count_params(build(e)) for e in ARCHITECTURES[name].text_encoders)
    return count_params(net), count_buffers(net), encoders, _vae_params(name)


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
    cheap = replace(s, precision="bf16", grad_checkpointing=True)
    yield replace(s, precision="bf16") if s.precision == "fp32" else s
    yield cheap
    yield (cheap := replace(cheap, recompute_teacher=True))
    yield (cheap := replace(cheap, text_encoder_dtype="bf16"))
    yield replace(cheap, sharding="zero1")
    yield (cheap := replace(cheap, sharding="fsdp"))
    yield (cheap := replace(cheap, teacher_sharding="shard"))
    for n in (2, 4, 8, 16, 32, 64):
        if n > s.processes:
            yield replace(cheap, processes=n)


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
    from sidbench.gen.teachers import TEACHERS, find_teacher

    name = architecture_of(cfg.base)
    if name is None:
        planned = ", ".join(t.name for t in TEACHERS.values() if t.architecture)
        teacher = find_teacher(cfg.base)
        if teacher is not None:  # known, but its architecture is not in gen.architectures yet
            raise SidbenchError(f"--plan: {teacher.name} ({teacher.title}) is not planned yet; planned teachers: "
                                f"{planned}")
        raise SidbenchError(f"--plan needs a known architecture as --base ({planned}, a full name, a "
                            f"release's hub id, or a diffusers folder whose teacher has one's shapes); {cfg.base!r} "
                            f"is none of them (other architectures are not planned yet)")
    s = Setup.of(cfg, processes)
    fits: dict = {}
    p = plan(name, s, device_memory_gib, fits)
    print(json.dumps(p, indent=1) if as_json else render(p))
    if device_memory_gib is not None and not p["fits"]:
        alt = what_fits(name, s, device_memory_gib, fits)
        hint = ("no setup tried fits (bf16, checkpointing, teacher checkpointing, bf16 text encoders, zero1, fsdp, "
                "teacher sharding, "
                "up to 64 processes)"
                if alt is None else f"this would fit: {alt['setup']} ({alt['total_gib']:.1f} GiB)")
        raise SidbenchError(f"the plan needs {p['total_gib']:.1f} GiB per device, more than {device_memory_gib:g}; "
                            + hint)
    return p
