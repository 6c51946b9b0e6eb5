"""``sidbench generate``: prompts -> images, one per prompt, seeded per image, resumable, atomic.

Image i is ``{i:06d}.png`` made from prompt i and seed ``seed_offset + i``. A rerun skips files that
decode and redoes missing or broken ones. A sidecar JSON says exactly how the images were made.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image
from tqdm import tqdm

from sidbench.core import distributed
from sidbench.core.atomic import atomic_path, remove_leftovers, write_json
from sidbench.core.device import AUTO, describe_device, resolve_device
from sidbench.core.outputs import WriteError, check_output
from sidbench.core.errors import SidbenchError, SidbenchWarning
from sidbench.data.images import select_indices
from sidbench.data.stream import Batch, prepared
from sidbench.gen.models import (DTYPES, export_generator, fingerprint, load_base, load_generator_unet,
                                 parse_dtype, resolve_generator)
from sidbench.core.provenance import git_commit, now_iso, package_versions
from sidbench.gen.families import truncated_prompts, truncation_warning
from sidbench.gen.releases import release_of
from sidbench.gen.sampling import OneStepSampler, Sampler, TeacherSampler

SIDECAR = "sidbench_generate.json"


@dataclass
class GenerateConfig:
    base: str | None                    # a diffusers folder, a short name (sd15) or a hub id; None: a release's teacher
    prompts: str | None                 # one prompt a line; prompt i -> image i
    generator: str | None = None        # one-step generator: run folder, snapshot, checkpoint, .safetensors, .pkl, sid-lsg:NAME; None: the teacher
    which: str = "ema"                 # of a run folder or checkpoint: the EMA generator, or the raw (trained) one
    steps: int = 50                     # teacher only: sampling steps
    cfg: float = 1.0                    # teacher only: classifier-free guidance scale
    scheduler: str | None = None        # teacher only: ddim | dpm++ | euler (flow teachers: euler | dpm++); None: the family's
    t_init: int | None = None           # one-step only: the generator's timestep; None: its training run's, else the family's
    gen_steps: int | None = None        # few-step generator: steps to take (1..its trained K); None: its K (1 if unrecorded)
    embedded_guidance: float | None = None  # FLUX.1-dev's guidance input; None: the run's, else the pipeline's 3.5
    n: int | None = None                # first n prompts (default: all)
    batch_size: int = 8
    seed_offset: int = 0                # image i from seed seed_offset + i
    precision: str = "fp32"             # generation precision: fp32 | fp16 | bf16
    text_encoder_dtype: str | None = None  # the text encoders' weights: fp32 | bf16 | fp16; None: the run's bf16 where it trained so, else the precision's
    device: str = AUTO                  # auto: the launcher's GPU, else cuda, else mps, else cpu (resolved when built)
    height: int | None = None           # default: the UNet's native size

    @property
    def sampling_steps(self) -> int:
        """Network evaluations per image: the generator's steps (1 for a one-step one), else the teacher sampler's."""
        return (self.gen_steps or 1) if self.generator else self.steps


def build_sampler(cfg: GenerateConfig) -> tuple[Sampler, dict]:
    """The sampler a config describes, and what identifies its networks."""
    if cfg.text_encoder_dtype is not None and cfg.text_encoder_dtype not in DTYPES:
        raise SidbenchError(f"text_encoder_dtype {cfg.text_encoder_dtype!r}: expected one of {', '.join(DTYPES)}")
    if cfg.text_encoder_dtype not in (None, cfg.precision) and cfg.precision != "fp32":
        # The base loads in the precision: casting its encoders again would not give that dtype's own weights.
        raise SidbenchError(f"--text-encoder-dtype {cfg.text_encoder_dtype} with --precision {cfg.precision}: the "
                            "encoders load in the precision, so only fp32 precision can hold them in another dtype")
    release = release_of(cfg.generator)  # sid-lsg:NAME, a released checkpoint: it names its teacher
    if not cfg.base:
        if release is None:
            raise SidbenchError("give --base: the model folder, short name or hub id the generator was distilled from")
        cfg.base = release.teacher
    cfg.device = str(resolve_device(cfg.device))  # resolved, so the sidecar says which
    base = load_base(cfg.base, device=cfg.device, dtype=parse_dtype(cfg.precision))
    info = {"base": base.describe(), "precision": cfg.precision, **describe_device(cfg.device)}
    if cfg.generator:
        resolved, kind = resolve_generator(cfg.generator, cfg.which)
        made_by: dict = {"release": release.describe()} if release else {}
        unet = load_generator_unet(resolved, base, cfg.which, meta=made_by)
        trained = made_by.get("config") or ({"t_init": release.t_init} if release else {})  # what the run used
        if cfg.t_init is None:
            cfg.t_init = int(trained.get("t_init", base.family.default_t_init))
        if cfg.embedded_guidance is None:
            cfg.embedded_guidance = trained.get("embedded_guidance")
        if cfg.text_encoder_dtype is None and trained.get("text_encoder_dtype") == "bf16" and cfg.precision == "fp32":
            cfg.text_encoder_dtype = "bf16"  # the conditioning's low bits as the generator trained on them
        grid = int(made_by.get("gen_steps") or trained.get("gen_steps") or 1)  # the K it was trained for
        if cfg.gen_steps is None:
            cfg.gen_steps = grid
        sampler: Sampler = OneStepSampler(base, height=cfg.height, generator=unet, t_init=cfg.t_init,
                                          embedded_guidance=cfg.embedded_guidance, steps=cfg.gen_steps, grid=grid)
        info["generator"] = {"path": cfg.generator if release else os.path.abspath(cfg.generator),
                             "resolved": os.path.abspath(resolved),
                             "kind": kind, "which": cfg.which if kind == "checkpoint" else "ema",
                             "sha256": fingerprint(resolved), "made_by": made_by or None}
    else:
        sampler = TeacherSampler(base, height=cfg.height, steps=cfg.steps, cfg=cfg.cfg, scheduler_name=cfg.scheduler,
                                 embedded_guidance=cfg.embedded_guidance)
        cfg.scheduler = sampler.scheduler_name  # resolved, so the sidecar says which
        info["generator"] = None
    if cfg.text_encoder_dtype is None:
        cfg.text_encoder_dtype = cfg.precision  # resolved, so the sidecar says which
    elif cfg.text_encoder_dtype != cfg.precision:
        base.cast_text_encoders(parse_dtype(cfg.text_encoder_dtype))
    info["base"]["text_encoder_dtype"] = cfg.text_encoder_dtype
    info["sampler"] = sampler.describe()
    return sampler, info


class GeneratedImages:
    """Images made on the fly, in index order: an image stream (``sidbench.data.stream``) for ``sidbench eval``."""

    kind = "generated in memory"

    def __init__(self, sampler: Sampler, prompts: Sequence[str], *, n: int | None = None, seed_offset: int = 0,
                 batch_size: int = 8, info: dict | None = None):
        if n is not None and n > len(prompts):
            raise SidbenchError(f"asked for {n} images but the prompt list holds only {len(prompts)}")
        self.sampler, self.prompts = sampler, list(prompts)[:n] if n is not None else list(prompts)
        self.seed_offset, self.batch_size, self.info = seed_offset, batch_size, info or {}
        base = getattr(sampler, "base", None)
        self.truncated = truncated_prompts(base, self.prompts) if base is not None else []

    def __len__(self) -> int:
        return len(self.prompts)

    def batches(self, indices: Sequence[int], *, batch_size: int | None = None, prepare=None, pool=None,
                skip_bad: bool = False) -> Iterator[Batch]:
        """Generated ``self.batch_size`` at a time (the model's batch, whatever ``batch_size`` the reader asks)."""
        indices = list(indices)
        for k in range(0, len(indices), self.batch_size):
            idx = indices[k:k + self.batch_size]
            images = self.sampler.sample([self.prompts[i] for i in idx], [self.seed_offset + i for i in idx])
            yield Batch(idx, prepared(list(images), prepare, pool), [])

    def describe(self) -> dict:
        return dict(self.info, kind=self.kind, count=len(self), seed_rule=f"image i from seed {self.seed_offset} + i",
                    **({"prompts_truncated": self.truncated} if self.truncated else {}))


def open_generated(cfg: GenerateConfig) -> GeneratedImages:
    """The images a config describes, as a stream generated batch by batch in memory (nothing written)."""
    from sidbench.data.prompts import read_prompts

    if not cfg.prompts:
        raise SidbenchError("images generated in memory need the prompt list they are made from (--prompts FILE)")

    sampler, info = build_sampler(cfg)
    return GeneratedImages(sampler, read_prompts(cfg.prompts), n=cfg.n, seed_offset=cfg.seed_offset,
                           batch_size=cfg.batch_size, info=info)


def _valid_png(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:
        return False


# What must match for images already in a folder to belong with new ones (not n, batch size or device).
IDENTITY = ("base", "generator_sha256", "which", "steps", "cfg", "scheduler", "t_init", "gen_steps", "seed_offset",
            "precision", "text_encoder_dtype", "height", "prompts_md5", "embedded_guidance")


def _identity(sidecar: dict) -> dict:
    c, gen = sidecar.get("config", {}), (sidecar.get("networks") or {}).get("generator") or {}
    one_step = bool(c.get("generator"))
    base = c.get("base")  # a local folder by its absolute path (a hub id stays as it is)
    base = os.path.abspath(base) if base and os.path.exists(base) else base
    out = {"base": base, "generator_sha256": gen.get("sha256"),
           "which": gen.get("which") if one_step else None, "prompts_md5": sidecar.get("prompts", {}).get("md5"),
           "seed_offset": c.get("seed_offset"), "precision": c.get("precision"), "height": c.get("height"),
           "embedded_guidance": c.get("embedded_guidance"),
           "text_encoder_dtype": c.get("text_encoder_dtype") or c.get("precision")}  # sidecars before: the precision's
    for k in ("steps", "cfg", "scheduler"):      # the teacher's sampler; a one-step generator has none
        out[k] = None if one_step else c.get(k)
    out["t_init"] = c.get("t_init") if one_step else None
    out["gen_steps"] = (c.get("gen_steps") or 1) if one_step else None  # sidecars before few-step: one step
    return out


def generation_record(folder: str | os.PathLike) -> dict | None:
    """What made a folder of images, from its sidecar, for the results of ``eval`` (None: no sidecar)."""
    folder = Path(folder)
    found = sorted(folder.glob("sidbench_generate*.json")) if folder.is_dir() else []
    if not found:
        return None
    path = folder / SIDECAR if (folder / SIDECAR).is_file() else found[0]
    try:
        side = json.loads(path.read_text(encoding="utf-8"))
        gen = (side.get("networks") or {}).get("generator")
        return {"sidecar": str(path.resolve()), "created": side.get("created"), "config": side["config"],
                "generator": gen, "sampler": (side.get("networks") or {}).get("sampler"),
                "base": (side.get("networks") or {}).get("base"), "seeds": side.get("seeds"),
                "prompts_md5": side["prompts"]["md5"], "prompts_truncated": side["prompts"].get("truncated"),
                "status": (side.get("this_run") or {}).get("status"),
                "sampling_steps": (side["config"].get("gen_steps") or 1) if side["config"].get("generator")
                else side["config"].get("steps")}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SidbenchError(f"{path}: unreadable record of how these images were made ({e})") from None


def check_folder_provenance(out: Path, sidecar: dict) -> None:
    """Refuse to add images to a folder whose images were made with other settings (each difference named)."""
    mine = _identity(sidecar)
    for old_path in sorted(out.glob("sidbench_generate*.json")):
        try:
            old = _identity(json.loads(old_path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, AttributeError) as e:
            raise SidbenchError(f"{old_path}: unreadable record of how the images here were made ({e}); use "
                                f"another --out, or --overwrite to remake every image") from None
        diffs = [f"{k} {old[k]!r} -> {mine[k]!r}" for k in IDENTITY if old.get(k) != mine.get(k)]
        if diffs:
            raise SidbenchError(f"{out} holds images made with other settings ({old_path.name}: " + "; ".join(diffs)
                                + "); use another --out, or --overwrite to remake every image")
    if not any(out.glob("sidbench_generate*.json")) and any(out.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png")):
        raise SidbenchError(f"{out} holds images with no record of how they were made (no sidbench_generate.json); "
                            f"use another --out, or --overwrite to remake every image")


def generate(cfg: GenerateConfig, out: str | os.PathLike, *, shard: tuple[int, int] | None = None,
             progress: bool = True, sampler: Sampler | None = None, info: dict | None = None,
             overwrite: bool = False) -> dict:
    """Write ``{i:06d}.png`` for this process's share of the prompts; returns the sidecar dict.

    A rerun with the same settings keeps the images that decode and redoes missing or broken ones; a folder made
    with other settings is refused (``overwrite``: remake every image of this share). The sidecar is written
    before the first image, so an interrupted run is recognised when it is continued.
    """
    from sidbench.data.prompts import list_md5, read_prompts

    check_output(out, "--out", folder=True)  # before the networks load
    prompts = read_prompts(cfg.prompts)
    n = cfg.n if cfg.n is not None else len(prompts)
    if n > len(prompts):
        raise SidbenchError(f"asked for {n} images but {cfg.prompts} holds only {len(prompts)} prompts")
    distributed.init_if_launched(device=cfg.device)
    dist_shard = distributed.process_shard()
    if shard is not None and dist_shard is not None:
        raise SidbenchError("--shard and a multi-process launch were both given; use one of them")
    indices = list(select_indices(n, shard or dist_shard))
    if sampler is None:
        sampler, info = build_sampler(cfg)
    base = getattr(sampler, "base", None)
    cut = truncated_prompts(base, [prompts[i] for i in indices]) if base is not None else []
    if cut and distributed.is_main():
        warnings.warn(truncation_warning(cut), SidbenchWarning, stacklevel=2)
    out = Path(out)
    raw = Path(cfg.prompts).read_bytes()
    sidecar = {
        "schema": "sidbench.generate/1", "created": now_iso(), "config": asdict(cfg), "networks": info,
        # md5: the list's (line endings and BOM aside), what eval's pairing check compares; the file's bytes beside
        "prompts": {"path": os.path.abspath(cfg.prompts), "count": len(prompts), "used": n, "md5": list_md5(prompts),
                    "file_md5": hashlib.md5(raw).hexdigest(), "sha256": hashlib.sha256(raw).hexdigest(),
                    "truncated": cut},  # this share's prompts cut at a text encoder's token limit
        "seeds": f"image i from seed {cfg.seed_offset} + i", "files": "{i:06d}.png, prompt i",
        "uint8": "clip(x * 127.5 + 128, 0, 255), truncating cast",
        "shard": list(shard or dist_shard) if (shard or dist_shard) else None,
        "this_run": None,
        "provenance": {"sidbench": git_commit(), "packages": package_versions()},
    }
    name = SIDECAR if not shard else f"sidbench_generate.shard{shard[0]}of{shard[1]}.json"
    if out.is_dir() and not overwrite:
        check_folder_provenance(out, sidecar)
    out.mkdir(parents=True, exist_ok=True)
    leftovers = remove_leftovers(out) if distributed.is_main() else 0  # images of a killed run, half written
    todo = indices if overwrite else [i for i in indices if not _valid_png(out / f"{i:06d}.png")]
    redone = 0 if overwrite else sum(1 for i in todo if (out / f"{i:06d}.png").exists())
    if overwrite and distributed.is_main():
        for old in out.glob("sidbench_generate*.json"):
            old.unlink()  # the old record no longer describes the folder
    sidecar["this_run"] = {"status": "in progress", "to_write": len(todo)}
    if distributed.is_main():
        write_json(out / name, sidecar)
    bar = tqdm(total=len(indices), initial=len(indices) - len(todo), desc="generate", unit="img",
               disable=not (progress and distributed.is_main()))
    for k in range(0, len(todo), cfg.batch_size):
        idx = todo[k:k + cfg.batch_size]
        images = sampler.sample([prompts[i] for i in idx], [cfg.seed_offset + i for i in idx])
        for i, im in zip(idx, images):
            try:
                with atomic_path(out / f"{i:06d}.png", ".png") as tmp:
                    Image.fromarray(im).save(tmp, format="PNG")
            except WriteError as e:
                raise WriteError(e.path, e.reason, "the images written so far are kept: make room and run the same "
                                 "command again to continue") from None
        bar.update(len(idx))
    bar.close()
    sidecar["this_run"] = {"status": "complete", "written": len(todo), "redone_broken": redone,
                           "kept": len(indices) - len(todo), "overwrite": overwrite, "leftovers_removed": leftovers}
    if distributed.is_main():
        write_json(out / name, sidecar)
    return sidecar


def export(generator: str, out: str, *, base: str | None = None, fmt: str = "diffusers", which: str = "ema",
           gen_steps: int | None = None) -> Path:
    """``sidbench export``: any generator (run folder, snapshot, checkpoint, file) -> a diffusers UNet folder or a
    safetensors file. ``gen_steps``: the step grid K it was trained for, where its own record lacks it (a
    generator from elsewhere); a recorded K that differs is refused."""
    check_output(out, "--out", folder=fmt == "diffusers")
    b = load_base(base, device="cpu") if base else None  # only read for its architecture: nothing runs
    release = release_of(generator)
    resolved, kind = resolve_generator(generator, which)
    made_by = {"exported_from": os.path.abspath(resolved), "kind": kind, "which": which if kind == "checkpoint" else "ema",
               "sha256": fingerprint(resolved), **({"release": release.describe()} if release else {})}
    unet = load_generator_unet(resolved, b, which, meta=made_by)
    recorded = made_by.get("gen_steps") or (made_by.get("config") or {}).get("gen_steps")
    if gen_steps is not None:
        if not 1 <= gen_steps <= 4:
            raise SidbenchError(f"--gen-steps {gen_steps}: a few-step generator's grid is 1..4 steps")
        if recorded is not None and int(recorded) != gen_steps:
            raise SidbenchError(f"--gen-steps {gen_steps}: {resolved} was trained for {recorded} steps (its record)")
        made_by["gen_steps"] = gen_steps
    elif recorded is not None:
        made_by["gen_steps"] = int(recorded)
    return export_generator(unet, out, fmt, made_by=made_by)
