"""Options several verbs share, declared once (same flag, same help, same panel everywhere)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

# Help panels, in the order a reader needs them.
INPUTS, METRICS, PROTOCOL, EXTRACTOR, GENERATION, PERFORMANCE, OUTPUT = (
    "Inputs", "Metrics", "Protocol", "Feature extractor", "Generation", "Performance", "Output")

ModeName = Literal["clean", "legacy_tensorflow", "legacy_pytorch"]
SchedulerName = Literal["ddim", "dpm++", "euler"]
PrecisionName = Literal["fp32", "fp16", "bf16"]
RangeName = Literal["-1,1", "0,1", "0,255"]
WhichName = Literal["ema", "raw"]

Mode = Annotated[ModeName, typer.Option("--mode", help="FID resize mode (clean-fid's).", rich_help_panel=PROTOCOL)]
PreResize = Annotated[Optional[int], typer.Option("--pre-resize", metavar="PX", rich_help_panel=PROTOCOL,
                                                  help="Centre crop + PIL Lanczos to this size first (coco2014-30k: 256).")]
ExtractorOpt = Annotated[Optional[str], typer.Option("--extractor", metavar="NAME", rich_help_panel=EXTRACTOR,
                                                     help="Feature extractor (default follows --mode; see `sidbench weights list`).")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", metavar="PATH", rich_help_panel=EXTRACTOR,
                                                   help="Local weight file (default: the weights folder, downloaded there on first use).")]
RandomWeights = Annotated[bool, typer.Option("--random-weights", rich_help_panel=EXTRACTOR,
                                             help="Same architecture, seeded random weights (tests/benchmarks; results marked not comparable).")]
Batch = Annotated[int, typer.Option("--batch", help="Images per network call.", rich_help_panel=PERFORMANCE)]
Threads = Annotated[Optional[int], typer.Option("--threads", rich_help_panel=PERFORMANCE,
                                                help="CPU threads (torch and decoding; default: the cores / the processes on this machine).")]
Device = Annotated[str, typer.Option("--device", metavar="DEVICE", rich_help_panel=PERFORMANCE,
                                     help="auto: the launcher's GPU, else cuda, else mps, else cpu; or cpu, cuda, cuda:1, mps.")]
ValueRange = Annotated[Optional[RangeName], typer.Option("--value-range", rich_help_panel=INPUTS,
                                                         help="For float image arrays (never guessed).")]
ArrayKey = Annotated[Optional[str], typer.Option("--array-key", metavar="NAME", rich_help_panel=INPUTS,
                                                 help="The image array's name in an .npz that holds several.")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", rich_help_panel=INPUTS,
                                       help="Skip unreadable images (counted in the results) instead of stopping.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.", rich_help_panel=OUTPUT)]


def _go_offline(value: bool) -> bool:
    """--offline takes effect as it is parsed, before any verb code can start a download."""
    if value:
        from sidbench.core.download import set_offline

        set_offline(True)
    return value


Offline = Annotated[bool, typer.Option("--offline", callback=_go_offline, rich_help_panel=INPUTS,
                                       help="Never download; files must already be here (also SIDBENCH_OFFLINE=1 or HF_HUB_OFFLINE=1).")]

Which = Annotated[WhichName, typer.Option("--which", rich_help_panel=INPUTS,
                                          help="Of a run folder or training checkpoint: the EMA generator or the raw trained one.")]
GeneratorOpt = Annotated[Optional[str], typer.Option("--generator", metavar="PATH", rich_help_panel=INPUTS,
                                                     help="One-step generator: a run folder (its latest snapshot), a snapshot or diffusers folder, a checkpoint ckpt-*.pt, .safetensors, a SiD-LSG .pkl, or sid-lsg:NAME (a released checkpoint, fetched; see `sidbench models list`).")]
BaseOpt = Annotated[Optional[str], typer.Option("--base", metavar="MODEL", rich_help_panel=INPUTS,
                                                help="Base model (SD, SDXL, SD3, FLUX.1, SANA): a diffusers folder, a short name (sd15, sdxl, flux-dev, ...: `sidbench models list`) or a hub id, fetched on first use (default: a sid-lsg:NAME generator's teacher).")]
Scheduler = Annotated[Optional[SchedulerName], typer.Option("--scheduler", rich_help_panel=GENERATION,
                                                           help="Teacher sampler (default: ddim; flow teachers: their own, euler or dpm++).")]
TInit = Annotated[Optional[int], typer.Option("--t-init", metavar="T", rich_help_panel=GENERATION,
                                              help="One-step generator timestep (default: its training run's, else 625 DDPM / 999 flow).")]
GenSteps = Annotated[Optional[int], typer.Option("--gen-steps", metavar="N", rich_help_panel=GENERATION,
                                                  help="Few-step generator: steps to take, 1..its trained K (default: K; 1 for one-step generators).")]
EmbeddedGuidance = Annotated[Optional[float], typer.Option("--embedded-guidance", metavar="SCALE", rich_help_panel=GENERATION,
                                                           help="FLUX.1-dev's guidance input, not CFG (default: the run's, else 3.5).")]
Precision = Annotated[PrecisionName, typer.Option("--precision", rich_help_panel=GENERATION,
                                                  help="Generation precision (metric networks stay fp32).")]
TextEncoderDtype = Annotated[Optional[PrecisionName], typer.Option("--text-encoder-dtype", rich_help_panel=GENERATION,
                                                                   help="The text encoders' weights, at --precision fp32 (default: bf16 for a generator trained with bf16 encoders, else --precision).")]


def announce_device(requested: str) -> str:
    """The --device a verb runs on, resolved (``auto`` -> this process's GPU where there is one) and printed once."""
    from rich.markup import escape

    from sidbench.cli.console import console
    from sidbench.core.device import describe_device, device_line, resolve_device

    info = describe_device(resolve_device(requested))
    console.print(escape(device_line(info)))
    return info["device"]
