"""``sidbench generate``: prompts -> images, one per prompt, seeded per image, resumable, atomic.

Image i is ``{i:06d}.png`` made from prompt i and seed ``seed_offset + i``. A rerun skips files that
decode and redoes missing or broken ones. A sidecar JSON says exactly how the images were made.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image
from tqdm import tqdm

from sidbench.core import distributed
from sidbench.core.atomic import atomic_path, write_json
from sidbench.core.errors import SidbenchError
from sidbench.data.images import select_indices
from sidbench.data.stream import Batch, prepared
from sidbench.gen.models import export_generator, fingerprint, load_base, load_generator_unet, parse_dtype
from sidbench.core.provenance import git_commit, now_iso, package_versions
from sidbench.gen.sampling import OneStepSampler, Sampler, TeacherSampler

SIDECAR = "sidbench_generate.json"


@dataclass
class GenerateConfig:
    base: str                           # Stable Diffusion folder (diffusers layout) or hub id
    prompts: str | None                 # one prompt a line; prompt i -> image i
    generator: str | None = None        # one-step generator (folder / .safetensors / .pkl); None: the teacher
    steps: int = 50                     # teacher only: sampling steps
    cfg: float = 1.0                    # teacher only: classifier-free guidance scale
    scheduler: str = "ddim"             # teacher only: ddim | dpm++ | euler
    t_init: int = 625                   # one-step only: the generator's fixed timestep
    n: int | None = None                # first n prompts (default: all)
    batch_size: int = 8
    seed_offset: int = 0                # image i from seed seed_offset + i
    precision: str = "fp32"             # generation precision: fp32 | fp16 | bf16
    device: str = "cpu"
    height: int | None = None           # default: the UNet's native size

    @property
    def sampling_steps(self) -> int:
        """Network evaluations per image: 1 for a one-step generator, else the teacher sampler's steps."""
        return 1 if self.generator else self.steps


def build_sampler(cfg: GenerateConfig) -> tuple[Sampler, dict]:
    """The sampler a config describes, and what identifies its networks."""
    base = load_base(cfg.base, device=cfg.device, dtype=parse_dtype(cfg.precision))
    info = {"base": base.describe(), "precision": cfg.precision, "device": cfg.device}
    if cfg.generator:
        unet = load_generator_unet(cfg.generator, base)
        sampler: Sampler = OneStepSampler(base, height=cfg.height, generator=unet, t_init=cfg.t_init)
        info["generator"] = {"path": os.path.abspath(cfg.generator), "sha256": fingerprint(cfg.generator)}
    else:
        sampler = TeacherSampler(base, height=cfg.height, steps=cfg.steps, cfg=cfg.cfg, scheduler_name=cfg.scheduler)
        info["generator"] = None
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
        return dict(self.info, kind=self.kind, count=len(self), seed_rule=f"image i from seed {self.seed_offset} + i")


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


def generate(cfg: GenerateConfig, out: str | os.PathLike, *, shard: tuple[int, int] | None = None,
             progress: bool = True, sampler: Sampler | None = None, info: dict | None = None) -> dict:
    """Write ``{i:06d}.png`` for this process's share of the prompts; returns the sidecar dict."""
    from sidbench.data.prompts import read_prompts

    prompts = read_prompts(cfg.prompts)
    n = cfg.n if cfg.n is not None else len(prompts)
    if n > len(prompts):
        raise SidbenchError(f"asked for {n} images but {cfg.prompts} holds only {len(prompts)} prompts")
    distributed.init_if_launched()
    dist_shard = distributed.process_shard()
    if shard is not None and dist_shard is not None:
        raise SidbenchError("--shard and a multi-process launch were both given; use one of them")
    indices = list(select_indices(n, shard or dist_shard))
    if sampler is None:
        sampler, info = build_sampler(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in indices if not _valid_png(out / f"{i:06d}.png")]
    redone = sum(1 for i in todo if (out / f"{i:06d}.png").exists())
    bar = tqdm(total=len(indices), initial=len(indices) - len(todo), desc="generate", unit="img",
               disable=not (progress and distributed.is_main()))
    for k in range(0, len(todo), cfg.batch_size):
        idx = todo[k:k + cfg.batch_size]
        images = sampler.sample([prompts[i] for i in idx], [cfg.seed_offset + i for i in idx])
        for i, im in zip(idx, images):
            with atomic_path(out / f"{i:06d}.png", ".png") as tmp:
                Image.fromarray(im).save(tmp, format="PNG")
        bar.update(len(idx))
    bar.close()
    raw = Path(cfg.prompts).read_bytes()
    sidecar = {
        "schema": "sidbench.gen.generate/1", "created": now_iso(), "config": asdict(cfg), "networks": info,
        "prompts": {"path": os.path.abspath(cfg.prompts), "count": len(prompts), "used": n,
                    "md5": hashlib.md5(raw).hexdigest(), "sha256": hashlib.sha256(raw).hexdigest()},
        "seeds": f"image i from seed {cfg.seed_offset} + i", "files": "{i:06d}.png, prompt i",
        "uint8": "clip(x * 127.5 + 128, 0, 255), truncating cast",
        "shard": list(shard or dist_shard) if (shard or dist_shard) else None,
        "this_run": {"written": len(todo), "redone_broken": redone, "kept": len(indices) - len(todo)},
        "provenance": {"sidbench": git_commit(), "packages": package_versions()},
    }
    if distributed.is_main():
        name = SIDECAR if not shard else f"sidbench_generate.shard{shard[0]}of{shard[1]}.json"
        write_json(out / name, sidecar)
    return sidecar


def export(generator: str, out: str, *, base: str | None = None, fmt: str = "diffusers") -> Path:
    """``sidbench export``: any generator format -> a diffusers UNet folder or a safetensors file."""
    b = load_base(base) if base else None
    return export_generator(load_generator_unet(generator, b), out, fmt)
