"""The ``sidbench`` command line (Typer). Each verb calls a documented Python function."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from sidbench import __version__
from sidbench.core.errors import SidbenchError

app = typer.Typer(help="SiD-LSG distillation and reproducible text-to-image evaluation.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
stats_app = typer.Typer(help="Feature statistics: compute (per shard), merge, inspect.", no_args_is_help=True)
weights_app = typer.Typer(help="Known weight files: list, fetch (sha256-verified), verify.", no_args_is_help=True)
app.add_typer(stats_app, name="stats")
app.add_typer(weights_app, name="weights")
from sidbench.cli.prompts import prompts_app  # noqa: E402  (its own module: prompt-list tooling)

app.add_typer(prompts_app, name="prompts", help="Prompt lists: check (recognises known lists), draw from COCO, fetch.")
from sidbench.cli.report import report_cmd  # noqa: E402  (its own module: tables and plots)

app.command("report")(report_cmd)
from sidbench.cli.distill import distill_cmd  # noqa: E402  (the trainer's flags come from its config dataclass)

app.command("distill")(distill_cmd)
console = Console()
err_console = Console(stderr=True)

# Options shared by `eval` and `stats compute`.
Mode = Annotated[str, typer.Option("--mode", help="FID mode: clean | legacy_tensorflow | legacy_pytorch.")]
PreResize = Annotated[Optional[int], typer.Option("--pre-resize", help="Centre crop + PIL Lanczos to this size first (coco2014-30k: 256).")]
ExtractorOpt = Annotated[Optional[str], typer.Option("--extractor", help="Feature extractor name (default follows --mode).")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", help="Local weight file (default: the weights folder; see `sidbench weights list`).")]
RandomWeights = Annotated[bool, typer.Option("--random-weights", help="Same architecture, seeded random weights (tests/benchmarks; results marked not comparable).")]
Batch = Annotated[int, typer.Option("--batch", help="Images per network call.")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="Decode/resize threads (default: CPU count, at most 8).")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")]
ValueRange = Annotated[Optional[str], typer.Option("--value-range", help="For float image arrays: -1,1 | 0,1 | 0,255 (never guessed).")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images (counted in the results) instead of stopping.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _fail(e: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(2)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False):
    if version:
        console.print(f"sidbench {__version__}")
        raise typer.Exit()


@app.command("eval")
def eval_cmd(
    images: Annotated[Optional[str], typer.Option("--images", help="Generated images: folder, .npy/.npz array, or statistics file.")] = None,
    ref: Annotated[Optional[str], typer.Option("--ref", help="Reference: folder, array, or statistics file (cached automatically).")] = None,
    generator: Annotated[Optional[str], typer.Option("--generator", help="Evaluate a one-step generator in memory (no files): folder, .safetensors or .pkl.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Stable Diffusion folder for --generator; alone: evaluate the teacher (--steps, --cfg).")] = None,
    cfg_scale: Annotated[float, typer.Option("--cfg", help="Teacher guidance scale (with --base and no --generator).")] = 1.0,
    scheduler: Annotated[str, typer.Option("--scheduler", help="Teacher sampler: ddim | dpm++ | euler.")] = "ddim",
    t_init: Annotated[int, typer.Option("--t-init", help="One-step generator timestep.")] = 625,
    gen_batch: Annotated[int, typer.Option("--gen-batch", help="Images generated per call (in-memory evaluation).")] = 8,
    seed_offset: Annotated[int, typer.Option("--seed-offset", help="Image i from seed offset + i.")] = 0,
    precision: Annotated[str, typer.Option("--precision", help="Generation precision: fp32 | fp16 | bf16 (metric networks stay fp32).")] = "fp32",
    fid: Annotated[Optional[bool], typer.Option("--fid/--no-fid", help="Fréchet Inception Distance (default on unless only --clip).")] = None,
    kid: Annotated[bool, typer.Option("--kid", help="Kernel Inception Distance (mean and std over subsets).")] = False,
    clip: Annotated[bool, typer.Option("--clip", help="CLIP score, GigaGAN/SiD-LSG definition (needs --prompts).")] = False,
    prompts: Annotated[Optional[str], typer.Option("--prompts", help="Prompt list: caption i pairs with image i ({i:06d}.png or row i).")] = None,
    pr: Annotated[bool, typer.Option("--pr", help="Precision/recall (pr50k3: VGG16 fc2, k=3), from per-image features.")] = False,
    pr_k: Annotated[int, typer.Option("--pr-k", help="k-th neighbour for the manifold radii.")] = 3,
    pr_weights: Annotated[Optional[str], typer.Option("--pr-weights", help="Local torchvision vgg16-397923af.pth.")] = None,
    density_coverage: Annotated[bool, typer.Option("--density-coverage", help="Also density and coverage (Naeem et al. 2020).")] = False,
    clip_variant: Annotated[str, typer.Option(help="gigagan (the coco2014-30k definition) | torchmetrics (CLIPScore, x100).")] = "gigagan",
    clip_model: Annotated[Optional[str], typer.Option(help="CLIP model (default: ViT-g-14 / openai/clip-vit-large-patch14 by variant).")] = None,
    clip_weights: Annotated[Optional[str], typer.Option(help="Local CLIP weights: open_clip file, or a transformers folder (torchmetrics).")] = None,
    protocol: Annotated[str, typer.Option("--protocol", help="coco2014-30k | coco2017-5k | custom: refuses runs that break it.")] = "custom",
    allow_deviation: Annotated[bool, typer.Option("--allow-deviation", help="Run even if the protocol is broken; the result is marked not comparable.")] = False,
    mode: Mode = "clean",
    pre_resize: PreResize = None,
    extractor: ExtractorOpt = None,
    weights: WeightsOpt = None,
    random_weights: RandomWeights = False,
    n: Annotated[Optional[int], typer.Option("--n", help="Use the first N generated images (error if fewer).")] = None,
    ref_n: Annotated[Optional[int], typer.Option("--ref-n", help="Use the first N reference images.")] = None,
    batch: Batch = 32,
    threads: Threads = None,
    device: Device = "cpu",
    value_range: ValueRange = None,
    skip_bad: SkipBad = False,
    kid_subsets: Annotated[int, typer.Option(help="KID: number of subsets.")] = 100,
    kid_subset_size: Annotated[int, typer.Option(help="KID: largest subset size.")] = 1000,
    kid_seed: Annotated[int, typer.Option(help="KID: subset sampling seed.")] = 0,
    cache_dir: Annotated[Optional[str], typer.Option(help="Reference statistics cache folder.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the reference cache.")] = False,
    save_stats: Annotated[Optional[str], typer.Option(help="Also write the generated side's statistics here.")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Results JSON (written atomically).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Row label for reports (default: the images' folder name).")] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="Method, e.g. SiD-LSG, for reports.")] = None,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="Teacher model, e.g. SD1.5, for reports.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Sampling steps of the evaluated generator.")] = None,
    guidance: Annotated[Optional[str], typer.Option("--guidance", help="Guidance setting, e.g. 'LSG k=1.5'.")] = None,
    kimg: Annotated[Optional[float], typer.Option("--kimg", help="Training length in thousands of images.")] = None,
    quiet: Quiet = False,
):
    """FID / KID between generated images and a reference set, with a results file that says how."""
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.results import print_table

    try:
        if fid is None:
            fid = not ((clip or pr) and not kid)
        if (fid or kid or pr) and ref is None:
            raise SidbenchError("--fid/--kid/--pr need a reference set (--ref)")
        cfg = EvalConfig(fid=fid, kid=kid, clip=clip, prompts=prompts, clip_variant=clip_variant, pr=pr, pr_k=pr_k,
                         pr_weights=pr_weights, density_coverage=density_coverage, clip_model=clip_model, clip_weights=clip_weights,
                         protocol=protocol, allow_deviation=allow_deviation, mode=mode, pre_resize=pre_resize,
                         extractor=extractor, weights=weights, random_weights=random_weights, batch_size=batch,
                         threads=threads, device=device, n=n, ref_n=ref_n, value_range=value_range,
                         skip_bad=skip_bad, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                         kid_seed=kid_seed, cache_dir=cache_dir, use_cache=not no_cache, progress=not quiet)
        subject = {k: v for k, v in dict(name=name, method=method, teacher=teacher, steps=steps, guidance=guidance,
                                         kimg=kimg).items() if v is not None}
        if (images is None) == (base is None):
            raise SidbenchError("give either --images (files, an array or statistics) or --base [--generator] "
                                "(generate in memory)")
        if base is not None:
            from sidbench.gen.generate import GenerateConfig, GeneratedImages, build_sampler
            from sidbench.data.prompts import read_prompts

            if prompts is None:
                raise SidbenchError("in-memory evaluation needs the prompt list (--prompts FILE)")
            gcfg = GenerateConfig(base=base, prompts=prompts, generator=generator, steps=steps or 50, cfg=cfg_scale,
                                  scheduler=scheduler, t_init=t_init, n=n, batch_size=gen_batch,
                                  seed_offset=seed_offset, precision=precision, device=device)
            sampler, info = build_sampler(gcfg)
            images = GeneratedImages(sampler, read_prompts(prompts), n=n, seed_offset=seed_offset,
                                     batch_size=gen_batch, info=info)
            subject.setdefault("steps", 1 if generator else gcfg.steps)
            subject.setdefault("name", os.path.basename(os.path.normpath(generator or base)))
        res = evaluate(images, ref, cfg, out=out, save_stats=save_stats, command=sys.argv, subject=subject)
    except SidbenchError as e:
        _fail(e)
    from sidbench.core import distributed
    if distributed.is_main():
        print_table(res, console)
        if out:
            console.print(f"results written to {out}")


@stats_app.command("compute")
def stats_compute(
    images: Annotated[str, typer.Option("--images", help="Folder or image array.")],
    out: Annotated[str, typer.Option("--out", help="Statistics file (.npz) to write.")],
    shard: Annotated[Optional[str], typer.Option("--shard", help="i/n: only images whose index % n == i.")] = None,
    kid: Annotated[bool, typer.Option("--kid", help="Keep per-image features (needed for KID).")] = False,
    mode: Mode = "clean",
    pre_resize: PreResize = None,
    extractor: ExtractorOpt = None,
    weights: WeightsOpt = None,
    random_weights: RandomWeights = False,
    n: Annotated[Optional[int], typer.Option("--n", help="Use the first N images (before sharding).")] = None,
    batch: Batch = 32,
    threads: Threads = None,
    device: Device = "cpu",
    value_range: ValueRange = None,
    skip_bad: SkipBad = False,
    quiet: Quiet = False,
):
    """Statistics of one input, or one shard of it; under torchrun/accelerate each process takes a shard."""
    from sidbench.eval.api import EvalConfig, compute_stats_file
    from sidbench.data.images import parse_shard

    try:
        cfg = EvalConfig(kid=kid, mode=mode, pre_resize=pre_resize, extractor=extractor, weights=weights,
                         random_weights=random_weights, n=n, batch_size=batch, threads=threads, device=device,
                         value_range=value_range, skip_bad=skip_bad, progress=not quiet)
        st = compute_stats_file(images, out, cfg, shard=parse_shard(shard))
    except SidbenchError as e:
        _fail(e)
    console.print(f"{st.n} images -> {out}")


@stats_app.command("merge")
def stats_merge(
    parts: Annotated[list[str], typer.Argument(help="Shard statistics files.")],
    out: Annotated[str, typer.Option("--out", help="Merged statistics file.")],
):
    """Merge shard statistics exactly (sums add); refuses shards made under different settings."""
    from sidbench.eval.api import merge_stats_files

    try:
        st = merge_stats_files(parts, out)
    except SidbenchError as e:
        _fail(e)
    console.print(f"merged {len(parts)} shards, {st.n} images -> {out}")


@stats_app.command("info")
def stats_info(path: Annotated[str, typer.Argument(help="A statistics file.")]):
    """Print a statistics file's provenance."""
    import json

    from sidbench.eval.stats import FeatureStats

    try:
        st = FeatureStats.load(path)
    except SidbenchError as e:
        _fail(e)
    console.print_json(json.dumps({"n": st.n, "dim": st.dim, "has_features": st.features is not None, **st.meta}))


@weights_app.command("list")
def weights_list():
    """Known weight files, their URLs, hashes, and whether they are present locally."""
    from rich.table import Table

    from sidbench.eval.extractors.weights import WEIGHTS, locate, weights_dir

    table = Table(title=f"weights folder: {weights_dir()}")
    table.add_column("name", no_wrap=True)
    for col in ("file", "present", "used for", "sha256"):
        table.add_column(col, overflow="fold")
    for w in WEIGHTS.values():
        present = locate(w).is_file()
        table.add_row(w.name, w.filename, "yes" if present else "no", w.used_for,
                      w.sha256 or (f"{w.sha256_prefix}… (prefix)" if w.sha256_prefix else "not pinned"))
    console.print(table)


@weights_app.command("fetch")
def weights_fetch(
    name: Annotated[str, typer.Argument(help="A name from `sidbench weights list`.")],
    dest: Annotated[Optional[str], typer.Option("--dir", help="Destination folder (default: the weights folder).")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Download from this mirror instead of the table's URL.")] = None,
):
    """Download a known weight file and verify it; nothing appears until the hash checks out."""
    from sidbench.eval.extractors.weights import fetch, get_spec

    try:
        path, sha = fetch(name, dest, url=url)
    except SidbenchError as e:
        _fail(e)
    pinned = get_spec(name).sha256
    console.print(f"{path}\nsha256 {sha}" + ("" if pinned else "  (no pinned hash to verify against: recorded in results)"))


@weights_app.command("verify")
def weights_verify(
    name: Annotated[str, typer.Argument(help="A name from `sidbench weights list`.")],
    path: Annotated[str, typer.Argument(help="The local file.")],
):
    """Check a local file against the table; prints its sha256."""
    from sidbench.eval.extractors.weights import find_weights

    try:
        p, sha = find_weights(name, path)
    except SidbenchError as e:
        _fail(e)
    console.print(f"{p}: sha256 {sha} OK")


@app.command("generate")
def generate_cmd(
    base: Annotated[str, typer.Option("--base", help="Stable Diffusion folder (diffusers layout) or hub id.")],
    prompts: Annotated[str, typer.Option("--prompts", help="One prompt a line; prompt i -> {i:06d}.png.")],
    out: Annotated[str, typer.Option("--out", help="Output folder.")],
    generator: Annotated[Optional[str], typer.Option("--generator", help="One-step generator (folder/.safetensors/.pkl); omit for the teacher.")] = None,
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
    quiet: Quiet = False,
):
    """Generate one image per prompt (seed = offset + index), resumably; a sidecar records how."""
    from sidbench.gen.generate import GenerateConfig, generate
    from sidbench.data.images import parse_shard

    try:
        cfg = GenerateConfig(base=base, prompts=prompts, generator=generator, steps=steps, cfg=cfg_scale,
                             scheduler=scheduler, t_init=t_init, n=n, batch_size=batch, seed_offset=seed_offset,
                             precision=precision, device=device)
        side = generate(cfg, out, shard=parse_shard(shard), progress=not quiet)
    except SidbenchError as e:
        _fail(e)
    r = side["this_run"]
    console.print(f"{out}: {r['written']} written ({r['redone_broken']} broken redone), {r['kept']} kept")


@app.command("export")
def export_cmd(
    generator: Annotated[str, typer.Option("--generator", help="Generator: folder, .safetensors or SiD-LSG .pkl.")],
    out: Annotated[str, typer.Option("--out", help="Output folder (diffusers) or .safetensors file.")],
    fmt: Annotated[str, typer.Option("--format", help="diffusers | safetensors.")] = "diffusers",
    base: Annotated[Optional[str], typer.Option("--base", help="Base SD folder (needed to read a .safetensors generator).")] = None,
):
    """Convert a generator (e.g. a released .pkl) to a diffusers folder or a safetensors file."""
    from sidbench.gen.generate import export

    try:
        path = export(generator, out, base=base, fmt=fmt)
    except SidbenchError as e:
        _fail(e)
    console.print(f"exported {generator} -> {path}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Optional[str], typer.Option("--out", help="Report folder, regenerated whole (default reports/demo, with --sweep reports/demo-sweep).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A reduced run for CI (targets not expected).")] = False,
    sweep: Annotated[bool, typer.Option("--sweep", help="Train k = 1, 1.5, 2, 3 at one budget and draw the trade-off (~16 min on 2 cores).")] = False,
    rebuild_teacher: Annotated[bool, typer.Option("--rebuild-teacher", help="Retrain the shipped teacher and metric network (~10 min).")] = False,
):
    """SiD-LSG end to end, offline: distil a small world's teacher, evaluate, and write a report."""
    from sidbench.demo.run import run_demo

    try:
        run_demo(Path(out or ("reports/demo-sweep" if sweep else "reports/demo")), quick=quick, sweep=sweep,
                 rebuild_teacher=rebuild_teacher, console=console)
    except SidbenchError as e:
        _fail(e)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
