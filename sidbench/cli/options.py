"""Options several verbs share, declared once (same flag, same help everywhere)."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

Mode = Annotated[str, typer.Option("--mode", help="FID mode: clean | legacy_tensorflow | legacy_pytorch.")]
PreResize = Annotated[Optional[int], typer.Option("--pre-resize", help="Centre crop + PIL Lanczos to this size first (coco2014-30k: 256).")]
ExtractorOpt = Annotated[Optional[str], typer.Option("--extractor", help="Feature extractor name (default follows --mode).")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", help="Local weight file (default: the weights folder; see `sidbench weights list`).")]
RandomWeights = Annotated[bool, typer.Option("--random-weights", help="Same architecture, seeded random weights (tests/benchmarks; results marked not comparable).")]
Batch = Annotated[int, typer.Option("--batch", help="Images per network call.")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="Decode/resize threads (default: CPU count, at most 8).")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")]
ValueRange = Annotated[Optional[str], typer.Option("--value-range", help="For float image arrays: -1,1 | 0,1 | 0,255 (never guessed).")]
ArrayKey = Annotated[Optional[str], typer.Option("--array-key", help="The image array's name in an .npz that holds several.")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images (counted in the results) instead of stopping.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

Which = Annotated[str, typer.Option("--which", help="Of a run folder or training checkpoint: ema (the EMA generator) or raw (the trained one).")]
GeneratorOpt = Annotated[Optional[str], typer.Option("--generator", help="One-step generator: a run folder (its latest snapshot), a snapshot or diffusers folder, a checkpoint ckpt-*.pt, .safetensors or a SiD-LSG .pkl.")]
