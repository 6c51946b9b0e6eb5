"""The distillation config: one dataclass, defaults = the published SD1.5 SiD-LSG run.

Loaded from a TOML (or YAML) file, then overridden by CLI flags; unknown keys are errors. The resolved
config is printed at start, saved in the run folder and inside every checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sidbench.gen.diffusion import parse_interval
from sidbench.core.errors import SidbenchError


TRACKERS = ("tensorboard", "wandb")
PRECISIONS = ("fp32", "bf16", "fp16", "fp16-pure")
INTERVAL_KEYS = ("cfg_train_fake_interval", "cfg_eval_fake_interval", "cfg_eval_real_interval")
PRESETS = ("lsg", "guidance", "guidance_interval", "preset")  # keys that set several fields at once

# Guidance strategies over the four scales and the fake score's text switch (docs/spec/few-step-sid.md section 4).
# K is the strategy's scale; a strategy without one takes none.
GUIDANCE = {
    "lsg": "k1 = k2 = k4 = K: long and short guidance (SiD-LSG, arXiv 2406.01561)",
    "teacher-cfg": "k4 = K, k1 = k2 = 1: CFG in the teacher only (long guidance; DMD, SwiftBrush)",
    "zero-cfg": "k1 = k2 = k4 = 1 and a text-free fake score (few-step SiD, arXiv 2505.12674)",
    "anti-cfg": "k2 = -K, k1 = k4 = 1: negative CFG in the fake score (few-step SiD, arXiv 2505.12674)",
}


def setting(default, help: str, *, trajectory: bool = False, panel: str = "Run", choices: tuple[str, ...] | None = None,
            metavar: str | None = None):
    """A config field with its ``--help`` text; ``trajectory``: it changes what a run computes, so a resume
    refuses a different value (bookkeeping fields such as logging intervals may change between sessions).
    ``panel``, ``choices`` and ``metavar`` shape the flag's help (its group, ``[a|b]``, ``PATH``)."""
    meta = {"help": help, "trajectory": trajectory, "panel": panel, "choices": choices, "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def trajectory_keys() -> tuple[str, ...]:
    """The fields a resumed run must share with the checkpoint it continues."""
    return tuple(f.name for f in fields(DistillConfig) if f.metadata.get("trajectory"))


def tracker_names(spec: str) -> list[str]:
    """'tensorboard,wandb' -> ['tensorboard', 'wandb']; 'none' or '' -> []."""
    names = [x.strip().lower() for x in spec.split(",") if x.strip()]
    return [] if names == ["none"] else names


@dataclass
class DistillConfig:
    # What to distil, from what, where to write.
    base: str = setting("", "The teacher (SD1.5/2.1, SDXL, SD3/3.5, FLUX.1, SANA): a diffusers folder, a short name (sd15, sdxl, flux-dev, ...: `sidbench models list`) or a hub id, fetched on first use; a --preset names its own.", trajectory=True, panel="Inputs", metavar="MODEL")
    prompts: str = setting("", "Training prompts, one a line (published runs: Aesthetics 6+ LAION captions).", trajectory=True, panel="Inputs", metavar="PATH")
    run_dir: str = setting("", "Run folder: config, logs, checkpoints, snapshots.", panel="Inputs", metavar="PATH")
    # Guidance (LSG): the four scales, kept separate; --lsg K sets them all.
    cfg_train_fake: float = setting(1.5, "k1: fake score, phase A (training).", trajectory=True, panel="Guidance (LSG)")
    cfg_eval_fake: float = setting(1.5, "k2 = k3: fake score, phase B.", trajectory=True, panel="Guidance (LSG)")
    cfg_eval_real: float = setting(1.5, "k4: teacher, phase B.", trajectory=True, panel="Guidance (LSG)")
    # Guidance intervals (beyond the paper; Kynkaanniemi et al. 2024): "T_LO,T_HI" applies a scale only at those
    # training timesteps (scale 1 elsewhere); "" applies it at every t. --guidance-interval sets all three.
    cfg_train_fake_interval: str = setting("", "Where k1 applies.", trajectory=True, panel="Guidance (LSG)", metavar="T_LO,T_HI")
    cfg_eval_fake_interval: str = setting("", "Where k2 applies.", trajectory=True, panel="Guidance (LSG)", metavar="T_LO,T_HI")
    cfg_eval_real_interval: str = setting("", "Where k4 applies.", trajectory=True, panel="Guidance (LSG)", metavar="T_LO,T_HI")
    embedded_guidance: float | None = setting(None, "FLUX.1-dev's guidance input (a network input, not CFG) for all three networks; default: the pipeline's 3.5. Teachers without a guidance embedding refuse it.", trajectory=True, panel="Guidance (LSG)")
    fake_conditioning: str = setting("text", "The fake score's prompt: text (SiD-LSG), or none: every fake-score call gets the empty prompt (Zero-CFG's text-free fake score).", trajectory=True, panel="Guidance (LSG)", choices=("text", "none"))
    prompt_dropout: float = setting(0.1, 'Phase A: share of prompts replaced by "" (only when k1 != 1 or k2 != 1).', trajectory=True, panel="Guidance (LSG)")
    # The method.
    alpha: float = setting(1.0, "SiD alpha (1.2 in SiD; 1.0 in every published SiD-LSG run).", trajectory=True, panel="Method")
    t_init: int = setting(625, "Generator timestep (EDM sigma_init = 2.5).", trajectory=True, panel="Method")
    gen_steps: int = setting(1, "Few-step generator: K steps at t_i = t_init (1 - i/K); each iteration trains on the output of K' ~ U{1..K} steps, so the uniform mixture of all step counts matches the data (few-step SiD, arXiv 2505.12674; docs/spec/few-step-sid.md). 1: SiD-LSG's one step.", trajectory=True, panel="Method")
    t_min: int = setting(20, "Training timesteps t ~ U{t_min..t_max}, per sample.", trajectory=True, panel="Method")
    t_max: int = setting(979, "Upper end of the training timesteps t ~ U{t_min..t_max} (the reference: 979).", trajectory=True, panel="Method")
    t_sampling: str = setting("uniform", "How training times are drawn: uniform grid times t ~ U{t_min..t_max} (SiD-LSG), or logit-normal sigma = sigmoid(n), n ~ N(t_logit_mean, t_logit_std^2), at the nearest grid time in t_min..t_max (the SiD-DiT code; flow-matching teachers only).", trajectory=True, panel="Method", choices=("uniform", "logit-normal"))
    t_logit_mean: float = setting(0.6931471805599453, "Logit-normal time sampling: mean of n (log 2 in the SiD-DiT code: median sigma 2/3).", trajectory=True, panel="Method")
    t_logit_std: float = setting(1.6, "Logit-normal time sampling: std of n (1.6 in the SiD-DiT code).", trajectory=True, panel="Method")
    gen_weighting: str = setting("sid", "Phase-B per-sample weight: sid (1/w, w = mean |x_g - y_real|, SiD-LSG) or 1-minus-sigma (100 (1 - sigma), the SiD-DiT code's default; flow-matching teachers only).", trajectory=True, panel="Method", choices=("sid", "1-minus-sigma"))
    w_min: float = setting(1e-5, "Clamp of the per-sample loss weight.", trajectory=True, panel="Method")
    # Optimisation.
    lr_gen: float = setting(1e-6, "Generator learning rate (Adam).", trajectory=True, panel="Optimisation")
    lr_fake: float = setting(1e-6, "Fake-score learning rate (Adam).", trajectory=True, panel="Optimisation")
    adam_beta1: float = setting(0.0, "Adam beta1: momentum of both optimisers (0 in the reference: none).", trajectory=True, panel="Optimisation")
    adam_beta2: float = setting(0.999, "Adam beta2.", trajectory=True, panel="Optimisation")
    adam_eps: float = setting(1e-8, "Adam epsilon (1e-6 is the reference's choice in fp16).", trajectory=True, panel="Optimisation")
    batch: int = setting(512, "Global batch: images per generator step (and per fake-score step).", trajectory=True, panel="Optimisation")
    batch_per_device: int = setting(1, "Images per forward pass; accumulation rounds make up the global batch.", panel="Performance")
    ema_mimg: float = setting(0.05, "EMA half-life in Mimg, ramped as min(ema_mimg * 1e6, ema_rampup * cur_nimg).", trajectory=True, panel="Optimisation")
    ema_rampup: float = setting(0.05, "EMA ramp: the half-life is at most this share of the images seen.", trajectory=True, panel="Optimisation")
    duration_kimg: float = setting(18789.0, "Length of training, in kimg (the 8.15 FID run stopped at 18,789).", panel="Optimisation")
    # Numerics and memory.
    precision: str = setting("fp32", "fp32 | bf16 (autocast) | fp16 (autocast + loss scaling) | fp16-pure (the reference's fp16: all nets fp16, Adam eps 1e-6, G grads clipped by value at 1, no EMA).", trajectory=True, panel="Performance", choices=PRECISIONS)
    text_encoder_dtype: str = setting("fp32", "The frozen text encoders' weights: fp32, or bf16 (half their memory: T5-XXL 17.7 -> 8.9 GiB; how the SD3 and FLUX pipelines load them). Changes the conditioning's low bits.", trajectory=True, panel="Performance", choices=("fp32", "bf16"))
    tf32: bool = setting(False, "TF32 matmuls (the published runs forced it off).", panel="Performance")
    grad_checkpointing: bool = setting(False, "Trade compute for memory in both trained networks.", panel="Performance")
    recompute_teacher: bool = setting(False, "Gradient checkpointing in the frozen teacher too: phase B back-propagates through it to x_t, so its activations are held; recomputed instead (one more teacher forward per step).", panel="Performance")
    sharding: str = setting("none", "none | zero1: shard both Adam states over processes (ZeRO stage 1) | fsdp: FSDP2, the generator, fake score and EMA sharded (weights, gradients, Adam), checkpoints in torch's distributed format (resume on any number of processes).", panel="Performance", choices=("none", "zero1", "fsdp"))
    teacher_sharding: str = setting("replicate", "Under fsdp: the frozen teacher replicated on every process (no gathers) or sharded like the others (memory).", panel="Performance", choices=("replicate", "shard"))
    max_nonfinite_steps: int = setting(10, "Stop after this many consecutive steps with non-finite gradients.", panel="Optimisation")
    # Bookkeeping.
    seed: int = setting(0, "All randomness is a function of (seed, iteration, phase, sample index).", trajectory=True, panel="Output and logging")
    log_every: int = setting(1, "Iterations between JSONL log lines.", panel="Output and logging")
    checkpoint_every: int = setting(50, "Iterations between checkpoints (atomic; --resume auto picks the latest).", panel="Output and logging")
    keep_checkpoints: int = setting(2, "Checkpoints kept on disk.", panel="Output and logging")
    snapshot_every: int = setting(0, "Iterations between EMA exports (diffusers folder); 0: only at the end.", panel="Output and logging")
    grid_every: int = setting(0, "Iterations between sample grids of the EMA generator; 0: never.", panel="Output and logging")
    proxy_every: int = setting(0, "Iterations between proxy FID/CLIP evaluations; 0: never.", panel="Proxy metrics")
    proxy_prompts: int = setting(64, "Prompts (first N of the training list) for the proxy evaluation.", panel="Proxy metrics")
    proxy_ref: str | None = setting(None, "Reference images/statistics for the proxy FID (required with proxy_every).", panel="Proxy metrics", metavar="PATH")
    proxy_random_weights: bool = setting(False, "Random-weight metric networks for the proxy (tests, offline demos).", panel="Proxy metrics")
    proxy_clip: bool = setting(False, "Also a proxy CLIP score (GigaGAN definition) on the proxy prompts.", panel="Proxy metrics")
    proxy_clip_model: str | None = setting(None, "open_clip model for the proxy CLIP score (default: ViT-g-14).", panel="Proxy metrics")
    proxy_clip_weights: str | None = setting(None, "Local open_clip weights for it (default: the weights folder).", panel="Proxy metrics", metavar="PATH")
    trackers: str = setting("tensorboard", 'Comma list of accelerate trackers: tensorboard, wandb; "none" for JSONL only.', panel="Output and logging", metavar="LIST")
    tracker_project: str = setting("sidbench-distill", "Project name given to the trackers (the W&B project).", panel="Output and logging")
    device: str = setting("auto", "auto: the launcher's GPU (cuda:LOCAL_RANK), else cuda, else mps, else cpu; or cpu, cuda, cuda:1, mps. The run config keeps what was asked; log.txt and log.jsonl say what it resolved to.", panel="Performance", metavar="DEVICE")

    def __post_init__(self):
        problems = []
        if self.batch < 1 or self.batch_per_device < 1:
            problems.append("batch and batch_per_device must be positive")
        if not 0 <= self.t_min <= self.t_max <= 999:
            problems.append(f"need 0 <= t_min <= t_max <= 999, got {self.t_min}..{self.t_max}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in INTERVAL_KEYS:
            try:
                parse_interval(getattr(self, name))
            except SidbenchError as e:
                problems.append(f"{name}: {e}")
        if self.sharding not in ("none", "zero1", "fsdp"):
            problems.append(f"sharding must be none, zero1 or fsdp, got {self.sharding!r}")
        if self.sharding == "fsdp" and self.precision in ("fp16", "fp16-pure"):
            problems.append(f"sharding fsdp runs in fp32 or bf16 (autocast, fp32 master weights), not {self.precision}")
        if self.teacher_sharding not in ("replicate", "shard"):
            problems.append(f"teacher_sharding must be replicate or shard, got {self.teacher_sharding!r}")
        elif self.teacher_sharding == "shard" and self.sharding != "fsdp":
            problems.append("teacher_sharding shard needs sharding fsdp")
        bad = sorted(set(tracker_names(self.trackers)) - set(TRACKERS))
        if bad:
            problems.append(f"unknown tracker(s) {', '.join(bad)}; expected a comma list of {', '.join(TRACKERS)} or none")
        if self.t_sampling not in ("uniform", "logit-normal"):
            problems.append(f"t_sampling must be uniform or logit-normal, got {self.t_sampling!r}")
        if self.gen_weighting not in ("sid", "1-minus-sigma"):
            problems.append(f"gen_weighting must be sid or 1-minus-sigma, got {self.gen_weighting!r}")
        if self.fake_conditioning not in ("text", "none"):
            problems.append(f"fake_conditioning must be text or none, got {self.fake_conditioning!r}")
        if not 1 <= self.gen_steps <= 4:
            problems.append(f"gen_steps must be 1..4 (the few-step papers' range), got {self.gen_steps}")
        if not self.t_logit_std > 0:
            problems.append("t_logit_std must be positive")
        if not 0 <= self.prompt_dropout < 1:
            problems.append("prompt_dropout must be in [0, 1)")
        if problems:
            raise SidbenchError("invalid distillation config: " + "; ".join(problems))

    def rounds(self, world: int) -> int:
        """Gradient-accumulation rounds per step for this many processes (the global batch is fixed)."""
        per_round = self.batch_per_device * world
        if self.batch % per_round:
            raise SidbenchError(f"global batch {self.batch} is not a multiple of batch_per_device x processes "
                                f"= {self.batch_per_device} x {world}")
        return self.batch // per_round

    def to_dict(self) -> dict:
        return asdict(self)


def field_names() -> set[str]:
    return {f.name for f in fields(DistillConfig)}


def apply_lsg(values: dict, k: float | None) -> dict:
    """The paper's LSG preset: k1 = k2 = k3 = k4 = k (explicit per-scale values still win)."""
    if k is None:
        return values
    out = {"cfg_train_fake": k, "cfg_eval_fake": k, "cfg_eval_real": k, "fake_conditioning": "text"}
    out.update(values)
    return out


def guidance_values(spec: str | None) -> dict:
    """'lsg:1.5', 'teacher-cfg:3', 'zero-cfg', 'anti-cfg:1' -> the fields the strategy sets (``GUIDANCE``)."""
    if spec is None:
        return {}
    name, _, scale = str(spec).strip().partition(":")
    if name not in GUIDANCE:
        raise SidbenchError(f"guidance {spec!r}: expected one of {', '.join(GUIDANCE)} (with ':K' for a scale), "
                            f"e.g. lsg:1.5, teacher-cfg:3, zero-cfg, anti-cfg:1")
    if (name == "zero-cfg") != (scale == ""):
        raise SidbenchError(f"guidance {spec!r}: " + ("zero-cfg takes no scale" if scale else f"{name} needs a scale, "
                                                      f"e.g. {name}:1.5"))
    try:
        k = float(scale) if scale else 1.0
    except ValueError:
        raise SidbenchError(f"guidance {spec!r}: the scale {scale!r} is not a number") from None
    return {"lsg": dict(cfg_train_fake=k, cfg_eval_fake=k, cfg_eval_real=k, fake_conditioning="text"),
            "teacher-cfg": dict(cfg_train_fake=1.0, cfg_eval_fake=1.0, cfg_eval_real=k, fake_conditioning="text"),
            "zero-cfg": dict(cfg_train_fake=1.0, cfg_eval_fake=1.0, cfg_eval_real=1.0, fake_conditioning="none"),
            "anti-cfg": dict(cfg_train_fake=1.0, cfg_eval_fake=-k, cfg_eval_real=1.0, fake_conditioning="text")}[name]


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SidbenchError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SidbenchError("YAML config files need PyYAML (pip install pyyaml), or use TOML") from None
        data = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise SidbenchError(f"{path}: config files are .toml, .yaml/.yml or .json")
    if not isinstance(data, dict):
        raise SidbenchError(f"{path}: expected a table of settings at the top level")
    return data


def apply_interval(values: dict, spec: str | None) -> dict:
    """--guidance-interval: the same interval for k1, k2 and k4 (explicit per-scale values still win)."""
    if spec is None:
        return values
    out = {k: spec for k in INTERVAL_KEYS}
    out.update(values)
    return out


def resolve(file: str | None = None, overrides: dict | None = None, lsg: float | None = None) -> DistillConfig:
    """File values, then CLI overrides (None means "not given"); unknown keys are an error.

    ``preset`` (a published setting, ``distill/presets.py``) gives the values below everything else. Presets
    (``lsg``, ``guidance_interval``) expand into their fields; an explicit field beats a preset at the
    same level, and a CLI preset beats the file's fields.
    """
    values = read_config_file(file) if file else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    preset = given.pop("preset", None) or values.pop("preset", None)
    if preset:  # a named published setting: below the file and the flags
        from distill.presets import preset_values

        values = {**preset_values(preset), **values}
    unknown = (set(values) | set(given)) - field_names() - set(PRESETS)
    if unknown:
        raise SidbenchError(f"unknown config key(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(field_names()))}")
    cli_lsg = given.pop("lsg", None) if lsg is None else lsg
    cli_interval = given.pop("guidance_interval", None)
    cli_guidance = given.pop("guidance", None)
    if cli_guidance is not None and cli_lsg is not None:
        raise SidbenchError("give --lsg K or --guidance STRATEGY, not both (--guidance lsg:K is --lsg K)")
    values = {**guidance_values(values.pop("guidance", None)), **values}  # in the file: below its own fields
    merged = apply_lsg(values, values.pop("lsg", None))        # in the file: per-scale values beat its presets
    merged = apply_interval(merged, merged.pop("guidance_interval", None))
    if cli_lsg is not None:                                     # a CLI --lsg beats the file's scales (= lsg:K)
        merged.update(cfg_train_fake=cli_lsg, cfg_eval_fake=cli_lsg, cfg_eval_real=cli_lsg, fake_conditioning="text")
    merged.update(guidance_values(cli_guidance))                # a CLI strategy beats the file's scales
    if cli_interval is not None:
        merged.update({k: cli_interval for k in INTERVAL_KEYS})
    merged.update(given)                                        # explicit CLI fields beat everything
    if merged.get("precision") == "fp16-pure" and "adam_eps" not in merged:
        merged["adam_eps"] = 1e-6                               # the reference's Adam eps in fp16
    try:
        return DistillConfig(**merged)
    except TypeError as e:
        raise SidbenchError(f"invalid distillation config: {e}") from None
