"""``sidbench generate`` and ``sidbench export``: images to a folder, generators between formats."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from sidbench.cli.console import console, user_errors
from sidbench.cli.options import Device, GeneratorOpt, Quiet, Which


def generate_cmd(
    base: Annotated[str, typer.Option("--base", help="Stable Diffusion folder (diffusers layout) or hub id.")],
    prompts: Annotated[str, typer.Option("--prompts", help="One prompt a line; prompt i -> {i:06d}.png.")],
    out: Annotated[str, typer.Option("--out", help="Output folder.")],
    generator: GeneratorOpt = None,
    which: Which = "ema",
    n: Annotated[Optional[int], typer.Option("--n", help="First N prompts (default: all).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per sampler call.")] = 8,
    shard: Annotated[Optional[str], typer.Option("--shard", help="i/n: only images whose index % n == i.")] = None,
    seed_offset: Annotated[int, typer.Option("--seed-offset", help="Image i from seed offset + i.")] = 0,
    t_init: Annotated[int, typer.Option("--t-init", help="One-step generator timestep.")] = 625,
    steps: Annotated[int, typer.Option("--steps", help="Teacher sampling steps.")] = 50,
    cfg_scale: Annotated[float, typer.Option("--cfg", help="Teacher classifier-free guidance scale.")] = 1.0,
    scheduler: Annotated[str, typer.Option("--scheduler", help="Teacher sampler: ddim | dpm++ | euler.")] = "ddim",
    precision: Annotated[str, typer.Option("--precision", help="fp32 | fp16 | bf16.")] = "fp32",
    device: Device = "cpu",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Remake every image, even where the folder holds images made with other settings.")] = False,
    quiet: Quiet = False,
):
    """Generate one image per prompt (seed = offset + index), resumably; a sidecar records how."""
    from sidbench.gen.generate import GenerateConfig, generate
    from sidbench.data.images import parse_shard

    with user_errors():
        cfg = GenerateConfig(base=base, prompts=prompts, generator=generator, which=which, steps=steps, cfg=cfg_scale,
                             scheduler=scheduler, t_init=t_init, n=n, batch_size=batch, seed_offset=seed_offset,
                             precision=precision, device=device)
        side = generate(cfg, out, shard=parse_shard(shard), progress=not quiet, overwrite=overwrite)
    r = side["this_run"]
    console.print(f"{out}: {r['written']} written ({r['redone_broken']} broken redone), {r['kept']} kept")


def export_cmd(
    generator: Annotated[str, typer.Option("--generator", help="Generator: a run folder (its latest snapshot), a snapshot or diffusers folder, a checkpoint ckpt-*.pt, .safetensors or a SiD-LSG .pkl.")],
    out: Annotated[str, typer.Option("--out", help="Output folder (diffusers) or .safetensors file.")],
    fmt: Annotated[str, typer.Option("--format", help="diffusers | safetensors.")] = "diffusers",
    base: Annotated[Optional[str], typer.Option("--base", help="Base SD folder (needed to read a .safetensors generator or a checkpoint).")] = None,
    which: Which = "ema",
):
    """Convert a generator (e.g. a released .pkl) to a diffusers folder or a safetensors file."""
    from sidbench.gen.generate import export

    with user_errors():
        path = export(generator, out, base=base, fmt=fmt, which=which)
    console.print(f"exported {generator} -> {path}")
