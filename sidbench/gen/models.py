"""Loading a base model of any supported family and one-step generators in every form users bring.

- Base: a diffusers folder (``model_index.json`` naming the pipeline class, and its components' folders), a
  short name (``sd15``, ``teachers.py``) or a hub id, fetched into the hub cache on first use; families in
  ``families.py``.
- Generator: a diffusers UNet folder, a ``.safetensors`` state dict (the base UNet's architecture), or a
  released SiD-LSG ``.pkl`` (a pickled dict with key ``ema`` holding a ``UNet2DConditionModel``), read
  through a restricted unpickler that admits only the classes such a file needs.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sidbench.core.device import AUTO, resolve_device
from sidbench.core.errors import SidbenchError
from sidbench.gen.diffusion import is_flow_scheduler
from sidbench.gen.families import SD, Conditioning, Family, family_of_index
from sidbench.gen.teachers import resolve_base

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Libraries a model_index.json may name for a component: classes are looked up in these only.
COMPONENT_LIBRARIES = ("diffusers", "transformers")


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise SidbenchError(f"unknown precision {name!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


@dataclass
class BaseModel:
    """The frozen pieces of a text-to-image model that sampling and distillation need, and its family's rules."""

    net: torch.nn.Module           # the teacher: a UNet (SD, SDXL) or a transformer (SD3, FLUX, SANA)
    vae: torch.nn.Module | None    # None: a pixel-space model (the latent is the image in [-1, 1])
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object              # the training scheduler: DDPM (alphas_cumprod, prediction type) or flow matching
    source: str                    # folder path or hub id
    device: torch.device
    dtype: torch.dtype
    family: Family = SD
    components: dict = field(default_factory=dict)  # the family's further text encoders and tokenizers, by name
    index: dict = field(default_factory=dict)       # model_index.json
    text_encoders_cast: bool = False                # cast_text_encoders: their outputs go back to ``dtype``
    revision: str | None = None                     # the hub commit a hub model was loaded at

    @property
    def unet(self) -> torch.nn.Module:
        return self.net  # the name SD users know

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod.to(torch.float64)

    @property
    def prediction_type(self) -> str:
        if is_flow_scheduler(self.scheduler):
            return "flow"  # a rectified-flow model predicts the velocity eps - x0
        return self.scheduler.config.get("prediction_type", "epsilon")

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor) if self.vae is not None else 1.0

    @property
    def latent_shift(self) -> float:
        """The VAE's latent shift (SD3, FLUX); 0 for SD's VAE."""
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0) if self.vae is not None else 0.0

    def latent_shape(self, height: int | None = None) -> tuple[int, int, int]:
        """(C, h, w) of the latent for images of ``height`` pixels (default: the size the model was trained at)."""
        return self.family.latent_shape(self, height)

    @property
    def image_seq_len(self) -> int | None:
        """The packed image token count at the default size (FLUX's dynamic time shift needs it)."""
        return self.family.image_seq_len(self.latent_shape())

    def encode(self, prompts: list[str], height: int | None = None) -> Conditioning:
        """The prompts' conditioning as this family's network takes it (in ``dtype``, whatever the encoders')."""
        return self._in_dtype(self.family.encode(self, list(prompts), height))

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        """The frozen text encoders, in the pipeline's order."""
        return [self.text_encoder] + [m for k, m in self.components.items()
                                      if k.startswith("text_encoder") and isinstance(m, torch.nn.Module)]

    def cast_text_encoders(self, dtype: torch.dtype) -> None:
        """Hold the text encoders in ``dtype`` (bf16: half their memory, as the SD3/FLUX pipelines load them);
        the conditioning they give is cast back to the model's dtype."""
        for m in self.text_encoders:
            m.to(dtype)
        self.text_encoders_cast = dtype != self.dtype

    def unconditional(self, height: int | None = None) -> Conditioning:
        """The one-row conditioning of CFG's unconditional branch (and of dropped prompts)."""
        return self._in_dtype(self.family.unconditional(self, height))

    def _in_dtype(self, cond: Conditioning) -> Conditioning:
        return cond.to(dtype=self.dtype) if self.text_encoders_cast else cond

    def describe(self) -> dict:
        out = {"source": self.source, "family": self.family.name, "network": type(self.net).__name__,
               "prediction_type": self.prediction_type, "dtype": str(self.dtype).replace("torch.", ""),
               "latent_scale": self.latent_scale, "unet_sample_size": getattr(self.net.config, "sample_size", None)}
        if self.latent_shift:
            out["latent_shift"] = self.latent_shift
        if self.revision:
            out["revision"] = self.revision
        return out


def read_model_index(src: str, offline: bool | None = None) -> tuple[dict, str | None]:
    """model_index.json of a local folder, or of a hub id (from the hub cache, else downloaded unless offline),
    and the hub commit it was read at (None for a folder). ``src`` is what ``teachers.resolve_base`` returns."""
    if os.path.isdir(src):
        path = Path(src, "model_index.json")
        if not path.is_file():
            raise SidbenchError(f"{src} is not a model folder in diffusers layout: no model_index.json")
        try:
            return json.loads(path.read_text()), None
        except ValueError as e:
            raise SidbenchError(f"{path}: not valid JSON ({e})") from None
    from sidbench.core.hub import read_hub_json

    return read_hub_json(src, "model_index.json", offline=offline)


def _component_class(index: dict, name: str, where: str):
    """The class model_index.json names for component ``name``; None where it is [null, null]."""
    entry = index.get(name)
    if not entry or entry[0] is None:
        return None
    library, cls = entry
    if library not in COMPONENT_LIBRARIES:
        raise SidbenchError(f"{where}: component {name} comes from {library!r}; only {', '.join(COMPONENT_LIBRARIES)} "
                            f"classes are loaded")
    import importlib

    found = getattr(importlib.import_module(library), cls, None)
    if found is None:
        raise SidbenchError(f"{where}: component {name} names {library}.{cls}, which this {library} does not have")
    return found


def _ddpm_training_scheduler(config: dict):
    """DDPMScheduler on the shipped scheduler's betas. x0 is clipped only where that config asks: DDPMScheduler's
    own default (clip_sample=True) must not switch clipping on for an Euler config that never clips (SDXL)."""
    from diffusers import DDPMScheduler

    config = dict(config)
    config.update(clip_sample=bool(config.get("clip_sample", False)), thresholding=bool(config.get("thresholding", False)))
    return DDPMScheduler.from_config(config)


def load_base(source: str | os.PathLike, *, device: str | torch.device = AUTO, dtype: torch.dtype = torch.float32,
              offline: bool | None = None) -> BaseModel:
    """A model folder in diffusers layout (or a hub id when online), all parts frozen.

    The family comes from model_index.json's pipeline class (``sidbench.gen.families``); each component is
    loaded with the class that file names. DDPM families get the DDPM training scheduler from their scheduler
    config (SD ships PNDM, SDXL Euler: same betas); flow families keep their own. ``device``: ``auto`` picks the
    GPU where there is one (``sidbench.core.device.resolve_device``).
    """
    device = resolve_device(device)  # before minutes of loading
    src = resolve_base(source)  # a folder, or a hub id (short names mapped); a missing folder stops here
    index, revision = read_model_index(src, offline)
    family = family_of_index(index, src)
    pixel_space = index.get("vae", ["x"])[0] is None
    needed = [family.net_name, "scheduler", *family.text_components] + ([] if pixel_space else ["vae"])
    missing = [c for c in needed if c not in family.optional_components
               and (not index.get(c) or index[c][0] is None or (os.path.isdir(src) and not os.path.isdir(os.path.join(src, c))))]
    if missing:
        raise SidbenchError(f"{src} is not a {index['_class_name']} folder in diffusers layout: expected "
                            f"model_index.json and {', '.join(needed)}/ (missing: {', '.join(missing)})")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from sidbench.core.download import offline as downloads_off

    kw = {"local_files_only": downloads_off() if offline is None else bool(offline)}
    if revision:
        kw["revision"] = revision  # every component from the commit model_index.json was read at
    loaded = {}
    try:
        for name in needed:
            cls = _component_class(index, name, src)
            if cls is None or (name in family.optional_components and os.path.isdir(src)
                               and not os.path.isdir(os.path.join(src, name))):
                loaded[name] = None
                continue
            if name == "scheduler" and family.ddpm:
                loaded[name] = _ddpm_training_scheduler(cls.load_config(src, subfolder=name, **kw))
                continue
            typed = {"torch_dtype": dtype} if issubclass(cls, torch.nn.Module) else {}
            loaded[name] = cls.from_pretrained(src, subfolder=name, **typed, **kw)
    except OSError as e:
        hint = "" if os.path.isdir(src) else " (offline: run once online to cache it, or give a local diffusers folder)"
        raise SidbenchError(f"cannot load the base model {src}: {str(e).splitlines()[0]}{hint}") from None
    for m in loaded.values():
        if isinstance(m, torch.nn.Module):
            m.requires_grad_(False).eval().to(device)
    net, vae, scheduler = loaded.pop(family.net_name), loaded.pop("vae", None), loaded.pop("scheduler")
    text_encoder, tokenizer = loaded.pop("text_encoder"), loaded.pop("tokenizer")
    return BaseModel(net, vae, text_encoder, tokenizer, scheduler, src, device, dtype, family, loaded, index,
                     revision=revision)


# --- restricted unpickling of released .pkl checkpoints -------------------------------------------------

# Module prefixes whose classes a pickled diffusers UNet legitimately references.
_ALLOWED_PREFIXES = ("torch.nn.modules.", "torch.nn.parameter", "diffusers.models.", "diffusers.configuration_utils",
                     "transformers.activations")
_ALLOWED_NAMES = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"), ("torch", "float32"), ("torch", "float16"), ("torch", "bfloat16"), ("torch", "float64"),
    ("torch", "device"), ("torch", "FloatStorage"), ("torch", "HalfStorage"), ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"), ("torch", "IntStorage"), ("torch", "BoolStorage"), ("torch", "DoubleStorage"),
    ("torch.storage", "_load_from_bytes"), ("torch.storage", "UntypedStorage"), ("copyreg", "_reconstructor"),
    ("builtins", "object"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "tuple"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "slice"), ("builtins", "range"), ("builtins", "complex"),
    ("torch.backends.cuda", "SDPBackend"), ("diffusers.utils.constants", "DIFFUSERS_CACHE"),
}
_FORBIDDEN_NAMES = {"eval", "exec", "compile", "getattr", "setattr", "delattr", "__import__", "open", "system",
                    "popen", "apply", "globals", "locals", "vars", "breakpoint", "input"}


def _storage_from_bytes(b: bytes):
    # torch's own _load_from_bytes runs a full (unrestricted) torch.load on embedded bytes: keep it restricted.
    return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")


class RestrictedUnpickler(pickle.Unpickler):
    """Admits the classes a pickled ``UNet2DConditionModel`` needs; anything else is refused, by name."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (module, name) in _ALLOWED_NAMES:
            return super().find_class(module, name)
        if module.startswith(_ALLOWED_PREFIXES) and name not in _FORBIDDEN_NAMES:
            obj = super().find_class(module, name)
            if isinstance(obj, type):  # classes only: no free function of these modules can be called
                return obj
        raise SidbenchError(f"refusing to unpickle {module}.{name}: not a class a SiD-LSG checkpoint needs "
                            f"(the file may run code when loaded with plain pickle)")


def load_sid_pickle(path: str | os.PathLike) -> torch.nn.Module:
    """The ``ema`` UNet of a released SiD-LSG ``.pkl`` (e.g. batch512_cfg1.51.51.5_t625_18789_v2.pkl)."""
    with open(path, "rb") as f:
        try:
            obj = RestrictedUnpickler(f).load()
        except SidbenchError as e:
            raise SidbenchError(f"{path}: {e}") from None
        except Exception as e:
            raise SidbenchError(f"cannot read {path} as a SiD-LSG checkpoint: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict) or "ema" not in obj:
        raise SidbenchError(f"{path}: expected a pickled dict with key 'ema', got "
                            f"{type(obj).__name__}{' with keys ' + str(list(obj)) if isinstance(obj, dict) else ''}")
    net = obj["ema"]
    from diffusers import UNet2DConditionModel

    if not isinstance(net, UNet2DConditionModel):
        raise SidbenchError(f"{path}: 'ema' holds a {type(net).__name__}, expected a UNet2DConditionModel")
    return net


CHECKPOINT_FORMAT = "sidbench.distill-checkpoint/1"   # what distill/checkpoint.py writes
WHICH = ("ema", "raw")                                 # which generator of a training checkpoint


_DCP_HINT = ("{path} is a distributed (FSDP) checkpoint, a shard per process: the generator is read from the "
             "run's EMA snapshots (snapshots/ema-*), or continue the run with --sharding fsdp; a raw generator "
             "from it is not exported yet")


def resolve_generator(path: str | os.PathLike, which: str = "ema") -> tuple[Path, str]:
    """Where a generator given as a run folder, snapshot folder, checkpoint or file really is, and its kind.

    A run folder means its latest EMA snapshot (``snapshots/LATEST``), or with ``which="raw"`` (or no snapshot
    yet) its latest checkpoint; ``sid-lsg:NAME`` a released SiD-LSG checkpoint (``releases.py``), fetched into the
    hub cache. Kinds: "snapshot" (diffusers folder), "checkpoint", "safetensors", "pkl".
    """
    if which not in WHICH:
        raise SidbenchError(f"--which {which!r}: expected one of {', '.join(WHICH)}")
    from sidbench.gen.releases import fetch_release, release_of

    release = release_of(str(path))
    if release is not None:  # sid-lsg:NAME: the authors' checkpoint, from the hub cache
        if which == "raw":
            raise SidbenchError(f"{path}: a released generator holds only its EMA; --which raw needs a training run")
        return fetch_release(release), "pkl"
    p = Path(path)
    if p.is_dir() and ((p / "snapshots").is_dir() or (p / "checkpoints").is_dir()):   # a distillation run folder
        latest = p / "snapshots" / "LATEST"
        if which == "ema" and latest.is_file():
            snap = p / "snapshots" / latest.read_text().strip()
            if not snap.is_dir():
                raise SidbenchError(f"{latest} names {snap.name}, which is not in {snap.parent}")
            return snap, "snapshot"
        ckpts = sorted((p / "checkpoints").glob("ckpt-*.*")) if (p / "checkpoints").is_dir() else []
        ckpts = [c for c in ckpts if c.suffix in (".pt", ".dcp")]
        if not ckpts:
            raise SidbenchError(f"{p}: a run folder with no {'snapshot or ' if which == 'ema' else ''}checkpoint yet")
        if ckpts[-1].suffix == ".dcp":
            raise SidbenchError(_DCP_HINT.format(path=ckpts[-1]))
        return ckpts[-1], "checkpoint"
    if p.is_dir() and p.suffix == ".dcp":
        raise SidbenchError(_DCP_HINT.format(path=p))
    if p.is_dir():
        if which == "raw":
            raise SidbenchError(f"{p}: a snapshot folder holds one generator; --which raw needs a run folder or a "
                                f"checkpoint (ckpt-*.pt)")
        return p, "snapshot"
    if not p.is_file():
        raise SidbenchError(f"generator not found: {p} (expected a run folder, a snapshot or diffusers folder, a "
                            f"checkpoint .pt, a .safetensors, a SiD-LSG .pkl or sid-lsg:NAME)")
    kind = {".pt": "checkpoint", ".safetensors": "safetensors", ".pkl": "pkl"}.get(p.suffix)
    if kind is None:
        raise SidbenchError(f"{p}: unknown generator format (expected a diffusers folder, a run folder, a checkpoint "
                            f".pt, .safetensors or .pkl)")
    if which == "raw" and kind != "checkpoint":
        raise SidbenchError(f"{p}: --which raw needs a training checkpoint (ckpt-*.pt) or a run folder")
    return p, kind


def _from_state(state: dict, base: BaseModel | None, what: str) -> torch.nn.Module:
    """A network of the base's architecture (UNet or transformer) holding ``state``; every key must match."""
    if base is None:
        raise SidbenchError(f"{what} takes the base network's architecture: give --base")
    net = type(base.net).from_config(base.net.config)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SidbenchError(f"{what}: does not match the base {type(base.net).__name__} ({len(missing)} missing "
                            f"keys, e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    return net


def _network_folder_class(folder: Path):
    """The diffusers model class a saved network folder's config.json names (UNet or transformer)."""
    import diffusers

    try:
        name = json.loads((folder / "config.json").read_text()).get("_class_name", "UNet2DConditionModel")
    except (OSError, ValueError) as e:
        raise SidbenchError(f"{folder / 'config.json'}: cannot read it ({e})") from None
    cls = getattr(diffusers, name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, diffusers.ModelMixin)):
        raise SidbenchError(f"{folder}: config.json names {name!r}, not a diffusers model class")
    return cls


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A distillation checkpoint's state (tensors only: ``weights_only``), its format checked."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SidbenchError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SidbenchError(f"{path} is not a sidbench distillation checkpoint ({CHECKPOINT_FORMAT})")
    return state


def load_checkpoint_generator(path: str | os.PathLike, base: BaseModel | None, which: str = "ema",
                              meta: dict | None = None) -> torch.nn.Module:
    """The EMA (or the raw, trained) generator inside a distillation checkpoint; ``meta`` gets its iteration,
    kimg and run config."""
    state = read_checkpoint(path)
    key = "ema" if which == "ema" else "generator"
    if meta is not None:
        meta.update(iteration=int(state["iteration"]), kimg=int(state["cur_nimg"]) / 1000, config=state["config"])
    return _from_state(state[key], base, f"{path} ({'EMA' if which == 'ema' else 'raw'} generator)")


def load_generator_unet(path: str | os.PathLike, base: BaseModel | None = None, which: str = "ema",
                        meta: dict | None = None) -> torch.nn.Module:
    """A one-step generator's network (a UNet, or the transformer of a DiT family) from a run folder, a snapshot
    (diffusers folder), a training checkpoint, a safetensors file, or a SiD-LSG .pkl (see ``resolve_generator``).
    ``meta`` gets what made it, where known (a checkpoint's iteration, kimg and config; a snapshot's
    ``sidbench_export.json``)."""
    p, kind = resolve_generator(path, which)
    if kind == "checkpoint":
        return load_checkpoint_generator(p, base, which, meta)
    if kind == "snapshot" and meta is not None and (p / "sidbench_export.json").is_file():
        meta.update(json.loads((p / "sidbench_export.json").read_text()).get("made_by") or {})
    if p.is_dir():
        sub = next((p / d for d in ("unet", "transformer") if (p / d / "config.json").is_file()), p)
        if not (sub / "config.json").is_file():
            raise SidbenchError(f"{p}: expected a diffusers network folder (config.json + weights)")
        return _network_folder_class(sub).from_pretrained(str(sub))
    if not p.is_file():
        raise SidbenchError(f"generator not found: {p}")
    if kind == "safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        if meta is not None:  # what made it, as export_generator wrote it
            with safe_open(str(p), "pt") as f:
                made = (f.metadata() or {}).get("sidbench_made_by")
            if made:
                meta.update(json.loads(made) or {})
        return _from_state(load_file(str(p)), base, f"{p} (a safetensors generator)")
    return load_sid_pickle(p)


def fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a generator file, or of a folder's files (names and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def export_generator(unet: torch.nn.Module, out: str | os.PathLike, fmt: str = "diffusers", *,
                     made_by: dict | None = None) -> Path:
    """Write a generator UNet as a diffusers folder or a single safetensors file (atomically).

    ``made_by`` (e.g. the run, iteration, kimg and config of a training snapshot) goes into the folder's
    ``sidbench_export.json``, or into the safetensors file's metadata as JSON."""
    from sidbench.core.atomic import atomic_path

    out = Path(out)
    if fmt == "diffusers":
        tmp = out.with_name(f".{out.name}.tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        unet.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "sidbench_export.json").write_text(json.dumps({"format": f"diffusers {type(unet).__name__}",
                                                              "made_by": made_by}, indent=1) + "\n")
        if out.exists():
            raise SidbenchError(f"{out} exists: not overwriting an export")
        os.replace(tmp, out)
        return out
    if fmt == "safetensors":
        from safetensors.torch import save_file

        with atomic_path(out, ".safetensors") as t:
            save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(t),
                      metadata={"sidbench_made_by": json.dumps(made_by)} if made_by else None)
        return out
    raise SidbenchError(f"unknown export format {fmt!r}; expected diffusers or safetensors")
