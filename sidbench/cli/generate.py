"""``sidbench generate`` and ``sidbench export``: images to a folder, generators between formats."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from sidbench.cli.console import console, user_errors
from sidbench.core.errors import SidbenchError
from sidbench.cli.options import (GENERATION, INPUTS, OUTPUT, PERFORMANCE, BaseOpt, Device, EmbeddedGuidance, GeneratorOpt,
                                  GenSteps, Offline, Precision, Quiet, Scheduler, TextEncoderDtype, TInit,
                                  Threads, Which, announce_device)

GENERATE_EXAMPLES = """Examples:

  sidbench generate --generator sid-lsg:sd15-lsg1.5 --prompts captions.txt --out gen/

  sidbench generate --base sd15 --generator runs/lsg15 --prompts captions.txt --out gen/

  sidbench generate --base sd15 --steps 50 --cfg 3 --scheduler ddim --prompts captions.txt --out teacher/ --shard 0/4
"""

EXPORT_EXAMPLES = """Examples:

  sidbench export --generator sid-lsg:sd15-lsg1.5 --out sid-sd15/

  sidbench export --generator runs/lsg15/checkpoints/ckpt-00000400.pt --which raw --base sd15 --format safetensors --out g.safetensors
"""


def generate_cmd(
    prompts: Annotated[str, typer.Option("--prompts", metavar="PATH", rich_help_panel=INPUTS, help="One prompt a line; prompt i -> {i:06d}.png.")],
    out: Annotated[str, typer.Option("--out", metavar="PATH", rich_help_panel=OUTPUT, help="Output folder.")],
    base: BaseOpt = None,
    generator: GeneratorOpt = None,
    which: Which = "ema",
    n: Annotated[Optional[int], typer.Option("--n", rich_help_panel=INPUTS, help="First N prompts (default: all).")] = None,
    seed_offset: Annotated[int, typer.Option("--seed-offset", rich_help_panel=GENERATION, help="Image i from seed offset + i.")] = 0,
    t_init: TInit = None,
    gen_steps: GenSteps = None,
    embedded_guidance: EmbeddedGuidance = None,
    steps: Annotated[int, typer.Option("--steps", rich_help_panel=GENERATION, help="Teacher sampling steps (without --generator).")] = 50,
    cfg_scale: Annotated[float, typer.Option("--cfg", metavar="SCALE", rich_help_panel=GENERATION, help="Teacher classifier-free guidance scale.")] = 1.0,
    scheduler: Scheduler = None,
    precision: Precision = "fp32",
    text_encoder_dtype: TextEncoderDtype = None,
    batch: Annotated[int, typer.Option("--batch", rich_help_panel=PERFORMANCE, help="Images per sampler call.")] = 8,
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="I/N", rich_help_panel=PERFORMANCE, help="Only images whose index % N == I (run N of these side by side).")] = None,
    threads: Threads = None,
    device: Device = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=OUTPUT, help="Remake every image, even where the folder holds images made with other settings.")] = False,
    quiet: Quiet = False,
    offline: Offline = False,
):
    """Generate one image per prompt (seed = offset + index), resumably; a sidecar records how."""
    from sidbench.core.atomic import leftovers_note
    from sidbench.gen.generate import GenerateConfig, generate
    from sidbench.data.images import parse_shard

    from sidbench.core.threads import set_threads

    with user_errors():
        set_threads(threads)
        device = announce_device(device)
        cfg = GenerateConfig(base=base, prompts=prompts, generator=generator, which=which, steps=steps, cfg=cfg_scale,
                             scheduler=scheduler, t_init=t_init, gen_steps=gen_steps, embedded_guidance=embedded_guidance, n=n,
                             batch_size=batch, seed_offset=seed_offset, precision=precision, text_encoder_dtype=text_encoder_dtype, device=device)
        if gen_steps is not None and not generator:
            raise SidbenchError("--gen-steps is the step count of a few-step --generator; the teacher takes --steps")
        side = generate(cfg, out, shard=parse_shard(shard), progress=not quiet, overwrite=overwrite)
    r = side["this_run"]
    console.print(f"{out}: {r['written']} written ({r['redone_broken']} broken redone), {r['kept']} kept"
                  + leftovers_note(r["leftovers_removed"]))


def export_cmd(
    generator: Annotated[str, typer.Option("--generator", metavar="PATH", help="Generator: a run folder (its latest snapshot), a snapshot or diffusers folder, a checkpoint ckpt-*.pt, .safetensors or a SiD-LSG .pkl.")],
    out: Annotated[str, typer.Option("--out", metavar="PATH", help="Output folder (diffusers) or .safetensors file.")],
    fmt: Annotated[Literal["diffusers", "safetensors"], typer.Option("--format", help="What to write.")] = "diffusers",
    base: Annotated[Optional[str], typer.Option("--base", metavar="MODEL", help="Base model: a diffusers folder, a short name (sd15) or a hub id (needed to read a .safetensors generator or a checkpoint).")] = None,
    which: Which = "ema",
    gen_steps: Annotated[Optional[int], typer.Option("--gen-steps", metavar="K", help="The step grid K (1-4) the generator was trained for, recorded in the export where its own record lacks it.")] = None,
    offline: Offline = False,
):
    """Convert a generator (e.g. a released .pkl) to a diffusers folder or a safetensors file."""
    from sidbench.gen.generate import export

    with user_errors():
        path = export(generator, out, base=base, fmt=fmt, which=which, gen_steps=gen_steps)
    console.print(f"exported {generator} -> {path}")
