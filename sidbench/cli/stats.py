"""``sidbench stats``: feature statistics computed per shard, merged exactly, inspected."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from sidbench.cli.console import console, stdout, user_errors
from sidbench.cli.options import INPUTS, OUTPUT, PERFORMANCE, PROTOCOL, ArrayKey, Batch, Device, ExtractorOpt, Mode, Offline, PreResize, Quiet, RandomWeights, SkipBad, Threads, ValueRange, WeightsOpt, announce_device

stats_app = typer.Typer(help="Feature statistics: compute (per shard), merge, inspect.", no_args_is_help=True)


@stats_app.command("compute", epilog="Examples:\n\n  sidbench stats compute --protocol coco2014-30k --images data/coco2014-val --out coco2014-30k-ref.npz\n\n  sidbench stats compute --images data/coco2014-val --pre-resize 256 --out coco2014-30k.npz --kid\n\n  sidbench stats compute --images coco/ --shard 0/4 --out part0.npz\n")
def stats_compute(
    images: Annotated[str, typer.Option("--images", metavar="PATH", rich_help_panel=INPUTS, help="Folder or image array.")],
    out: Annotated[str, typer.Option("--out", metavar="PATH", rich_help_panel=OUTPUT, help="Statistics file (.npz) to write.")],
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="I/N", rich_help_panel=PERFORMANCE, help="Only images whose index % N == I.")] = None,
    kid: Annotated[bool, typer.Option("--kid", rich_help_panel=OUTPUT, help="Keep per-image features (needed for KID).")] = False,
    protocol: Annotated[Optional[Literal["coco2014-30k", "coco2017-5k"]], typer.Option("--protocol", rich_help_panel=PROTOCOL, help="The protocol's reference statistics: its pre-resize, mode and extractor, over its whole reference set (refused if incomplete).")] = None,
    mode: Mode = "clean",
    pre_resize: PreResize = None,
    extractor: ExtractorOpt = None,
    weights: WeightsOpt = None,
    random_weights: RandomWeights = False,
    n: Annotated[Optional[int], typer.Option("--n", rich_help_panel=INPUTS, help="Use the first N images (before sharding).")] = None,
    batch: Batch = 32,
    threads: Threads = None,
    device: Device = "auto",
    value_range: ValueRange = None,
    array_key: ArrayKey = None,
    skip_bad: SkipBad = False,
    quiet: Quiet = False,
    offline: Offline = False,
):
    """Statistics of one input, or one shard of it; under torchrun/accelerate each process takes a shard."""
    from sidbench.eval.api import EvalConfig, compute_stats_file
    from sidbench.data.images import parse_shard

    from sidbench.core.threads import set_threads

    with user_errors():
        threads = set_threads(threads)
        device = announce_device(device)
        cfg = EvalConfig(kid=kid, mode=mode, pre_resize=pre_resize, extractor=extractor, weights=weights,
                         random_weights=random_weights, n=n, batch_size=batch, threads=threads, device=device,
                         value_range=value_range, array_key=array_key, skip_bad=skip_bad, progress=not quiet,
                         protocol=protocol or "custom")
        st = compute_stats_file(images, out, cfg, shard=parse_shard(shard))
    console.print(f"{st.n} images -> {out}")


@stats_app.command("merge", epilog="Examples:\n\n  sidbench stats merge part0.npz part1.npz part2.npz part3.npz --out coco.npz\n\n  sidbench stats merge a.npz b.npz --out ab.npz\n")
def stats_merge(
    parts: Annotated[list[str], typer.Argument(help="Shard statistics files.")],
    out: Annotated[str, typer.Option("--out", help="Merged statistics file.")],
):
    """Merge shard statistics exactly (sums add); refuses shards made under different settings."""
    from sidbench.eval.api import merge_stats_files

    with user_errors():
        st = merge_stats_files(parts, out)
    console.print(f"merged {len(parts)} shards, {st.n} images -> {out}")


@stats_app.command("info", epilog="Examples:\n\n  sidbench stats info coco2014-30k.npz\n\n  sidbench stats info part0.npz | jq .shard\n")
def stats_info(path: Annotated[str, typer.Argument(help="A statistics file.")]):
    """Print a statistics file's provenance."""
    import json

    from sidbench.eval.stats import FeatureStats

    with user_errors():
        st = FeatureStats.load(path)
    stdout.print_json(json.dumps({"n": st.n, "dim": st.dim, "has_features": st.features is not None, **st.meta}))
