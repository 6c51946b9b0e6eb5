"""``sidbench eval``: the options of ``sidbench.eval.api.evaluate``, and the results table."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from sidbench.cli.console import console, user_errors
from sidbench.core.errors import SidbenchError
from sidbench.cli.options import ArrayKey, Batch, Device, ExtractorOpt, Mode, PreResize, Quiet, RandomWeights, SkipBad, Threads, ValueRange, WeightsOpt, Which


def eval_cmd(
    images: Annotated[Optional[str], typer.Option("--images", help="Generated images: folder, .npy/.npz array, or statistics file.")] = None,
    ref: Annotated[Optional[str], typer.Option("--ref", help="Reference: folder, array, or statistics file (cached automatically).")] = None,
    generator: Annotated[Optional[str], typer.Option("--generator", help="Evaluate a one-step generator in memory (no files): a run folder (its latest snapshot), a snapshot or diffusers folder, a checkpoint ckpt-*.pt, .safetensors or a SiD-LSG .pkl.")] = None,
    which: Which = "ema",
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
    array_key: ArrayKey = None,
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
    steps: Annotated[Optional[int], typer.Option("--steps", help="Sampling steps of the evaluated generator: the teacher sampler's with --base (default 50; 1 with --generator), recorded for reports with --images.")] = None,
    guidance: Annotated[Optional[str], typer.Option("--guidance", help="Guidance setting, e.g. 'LSG k=1.5'.")] = None,
    kimg: Annotated[Optional[float], typer.Option("--kimg", help="Training length in thousands of images.")] = None,
    quiet: Quiet = False,
):
    """FID, KID, CLIP score and precision/recall of generated images, from one pass, with a results file that says how."""
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.results import print_table
    from sidbench.gen.generate import GenerateConfig

    with user_errors():
        if (images is None) == (base is None):
            raise SidbenchError("give either --images (files, an array or statistics) or --base [--generator] "
                                "(generate in memory)")
        if fid is None:
            fid = not ((clip or pr) and not kid)
        cfg = EvalConfig(fid=fid, kid=kid, clip=clip, prompts=prompts, clip_variant=clip_variant, pr=pr, pr_k=pr_k,
                         pr_weights=pr_weights, density_coverage=density_coverage, clip_model=clip_model, clip_weights=clip_weights,
                         protocol=protocol, allow_deviation=allow_deviation, mode=mode, pre_resize=pre_resize,
                         extractor=extractor, weights=weights, random_weights=random_weights, batch_size=batch,
                         threads=threads, device=device, n=n, ref_n=ref_n, value_range=value_range, array_key=array_key,
                         skip_bad=skip_bad, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                         kid_seed=kid_seed, cache_dir=cache_dir, use_cache=not no_cache, progress=not quiet)
        subject = {k: v for k, v in dict(name=name, method=method, teacher=teacher, steps=steps, guidance=guidance,
                                         kimg=kimg).items() if v is not None}
        if generator is not None and base is None:
            raise SidbenchError("--generator is evaluated in memory on its base model: give --base too")
        if generator is not None and steps not in (None, 1):
            raise SidbenchError(f"--generator is a one-step generator; --steps {steps} would describe another")
        if base is not None:  # generated in memory: the API builds the sampler from this description
            images = GenerateConfig(base=base, prompts=prompts, generator=generator, which=which, steps=steps or 50, cfg=cfg_scale,
                                    scheduler=scheduler, t_init=t_init, n=n, batch_size=gen_batch,
                                    seed_offset=seed_offset, precision=precision, device=device)
        res = evaluate(images, ref, cfg, out=out, save_stats=save_stats, command=sys.argv, subject=subject)
    from sidbench.core import distributed

    if distributed.is_main():
        print_table(res, console)
        if out:
            console.print(f"results written to {out}")
