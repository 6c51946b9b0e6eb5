"""``sidbench eval``: the options of ``sidbench.eval.api.evaluate``, and the results table."""
from __future__ import annotations

import sys
import warnings
from typing import Annotated, Literal, Optional

import typer

from sidbench.cli.console import console, print_json, user_errors
from sidbench.cli.options import (EXTRACTOR, GENERATION, INPUTS, METRICS, OUTPUT, PERFORMANCE, PROTOCOL, ArrayKey, Batch,
                                  Device, ExtractorOpt, GeneratorOpt, Mode, Offline, PreResize, Precision, Quiet, RandomWeights,
                                  Scheduler, SkipBad, TInit, GenSteps, EmbeddedGuidance, TextEncoderDtype, Threads, ValueRange, WeightsOpt, Which,
                                  announce_device)
from sidbench.core.errors import SidbenchError, SidbenchWarning

INTERVALS, DIVERSITY = "Intervals and extrapolation", "Diversity"
BEYOND = "Beyond Inception (FD-DINOv2, CMMD)"

LABELS = "Labels for reports"

EXAMPLES = """Examples:

  sidbench eval --images gen/ --ref data/coco2014-val --protocol coco2014-30k --kid --clip --prompts captions.txt --out r.json

  sidbench eval --base sd15 --generator runs/lsg15 --prompts captions.txt --ref coco_ref.npz --clip --json
"""


def _opt(*decl, help, panel, metavar=None, **kw):
    return typer.Option(*decl, help=help, rich_help_panel=panel, metavar=metavar, **kw)


def eval_cmd(
    images: Annotated[Optional[str], _opt("--images", metavar="PATH", panel=INPUTS, help="Generated images: folder, .npy/.npz array, or statistics file.")] = None,
    ref: Annotated[Optional[str], _opt("--ref", metavar="PATH", panel=INPUTS, help="Reference: folder, array, or statistics file (cached automatically).")] = None,
    base: Annotated[Optional[str], _opt("--base", metavar="MODEL", panel=INPUTS, help="Base model (a diffusers folder, a short name such as sd15, or a hub id): with --generator, its base (a sid-lsg:NAME release names its own); alone, evaluate the teacher (--steps, --cfg). Images are made in memory.")] = None,
    generator: GeneratorOpt = None,
    which: Which = "ema",
    prompts: Annotated[Optional[str], _opt("--prompts", metavar="PATH", panel=INPUTS, help="Prompt list: caption i pairs with image i ({i:06d}.png or row i).")] = None,
    value_range: ValueRange = None,
    array_key: ArrayKey = None,
    skip_bad: SkipBad = False,
    n: Annotated[Optional[int], _opt("--n", panel=INPUTS, help="Use the first N generated images (error if fewer).")] = None,
    ref_n: Annotated[Optional[int], _opt("--ref-n", metavar="N", panel=INPUTS, help="Use the first N reference images.")] = None,
    fid: Annotated[Optional[bool], _opt("--fid/--no-fid", panel=METRICS, help="Fréchet Inception Distance (on unless another metric alone is asked for).")] = None,
    kid: Annotated[bool, _opt("--kid", panel=METRICS, help="Kernel Inception Distance (mean and std over subsets; shown x10^3).")] = False,
    clip: Annotated[bool, _opt("--clip", panel=METRICS, help="CLIP score, GigaGAN/SiD-LSG definition (needs --prompts).")] = False,
    pr: Annotated[bool, _opt("--pr", panel=METRICS, help="Precision/recall (pr50k3: VGG16 fc2, k=3), from per-image features.")] = False,
    density_coverage: Annotated[bool, _opt("--density-coverage", panel=METRICS, help="Also density and coverage (Naeem et al. 2020).")] = False,
    pr_k: Annotated[int, _opt("--pr-k", metavar="K", panel=METRICS, help="k-th neighbour for the manifold radii.")] = 3,
    kid_subsets: Annotated[int, _opt("--kid-subsets", panel=METRICS, help="KID: number of subsets.")] = 100,
    kid_subset_size: Annotated[int, _opt("--kid-subset-size", panel=METRICS, help="KID: largest subset size.")] = 1000,
    kid_seed: Annotated[int, _opt("--kid-seed", panel=METRICS, help="KID: subset sampling seed.")] = 0,
    fid_infinity: Annotated[bool, _opt("--fid-infinity", panel=INTERVALS, help="FID-infinity (Chong & Forsyth 2020): FID at 15 subset sizes, extrapolated in 1/N.")] = False,
    aesthetic: Annotated[bool, _opt("--aesthetic", panel=METRICS, help="LAION aesthetic predictor v2 (CLIP ViT-L/14 OpenAI + linear head), per image and mean.")] = False,
    aesthetic_clip_weights: Annotated[Optional[str], _opt("--aesthetic-clip-weights", metavar="PATH", panel=EXTRACTOR, help="Local OpenAI ViT-L-14.pt for --aesthetic.")] = None,
    aesthetic_head_weights: Annotated[Optional[str], _opt("--aesthetic-head-weights", metavar="PATH", panel=EXTRACTOR, help="Local sac+logos+ava1-l14-linearMSE.pth for --aesthetic.")] = None,
    fd_dinov2: Annotated[bool, _opt("--fd-dinov2", panel=BEYOND, help="Fréchet distance on DINOv2 ViT-L/14 CLS features (dgm-eval / EDM2 FD_DINOv2).")] = False,
    dinov2_model: Annotated[Literal["vitl14", "vitb14", "vits14"], _opt("--dinov2-model", panel=BEYOND, help="DINOv2 backbone (vitl14 is the published one).")] = "vitl14",
    dinov2_resize: Annotated[Literal["squash-pil", "squash-torch"], _opt("--dinov2-resize", panel=BEYOND, help="224x224 resize: squash-pil (dgm-eval, EDM2 'pil') or squash-torch (EDM2's default).")] = "squash-pil",
    dinov2_weights: Annotated[Optional[str], _opt("--dinov2-weights", metavar="PATH", panel=BEYOND, help="Local DINOv2 weights file (the hub checkpoint of the chosen backbone).")] = None,
    cmmd: Annotated[bool, _opt("--cmmd", panel=BEYOND, help="CMMD (Jayasumana et al. 2024): MMD on CLIP ViT-L/14@336px embeddings, x1000.")] = False,
    cmmd_weights: Annotated[Optional[str], _opt("--cmmd-weights", metavar="PATH", panel=BEYOND, help="Local OpenAI ViT-L-14-336px.pt.")] = None,
    hps: Annotated[bool, _opt("--hps", panel=METRICS, help="HPSv2 human-preference score (needs --prompts), per image and mean.")] = False,
    hps_version: Annotated[Literal["v2.1", "v2.0"], _opt("--hps-version", panel=METRICS, help="HPS checkpoint (the two are not comparable).")] = "v2.1",
    hps_weights: Annotated[Optional[str], _opt("--hps-weights", metavar="PATH", panel=EXTRACTOR, help="Local HPS_v2.1_compressed.pt (or v2.0).")] = None,
    pickscore: Annotated[bool, _opt("--pickscore", panel=METRICS, help="PickScore v1 (needs --prompts), per image and mean.")] = False,
    pickscore_weights: Annotated[Optional[str], _opt("--pickscore-weights", metavar="PATH", panel=EXTRACTOR, help="Local transformers folder of PickScore_v1 (default: fetched from the hub on first use).")] = None,
    image_reward: Annotated[bool, _opt("--image-reward", panel=METRICS, help="ImageReward v1.0 (needs --prompts), per image and mean.")] = False,
    image_reward_weights: Annotated[Optional[str], _opt("--image-reward-weights", metavar="PATH", panel=EXTRACTOR, help="Local ImageReward.pt.")] = None,
    image_reward_tokenizer: Annotated[Optional[str], _opt("--image-reward-tokenizer", metavar="PATH", panel=EXTRACTOR, help="Local bert-base-uncased vocab.txt (or its folder).")] = None,
    images_per_prompt: Annotated[Optional[int], _opt("--images-per-prompt", metavar="K", panel=DIVERSITY, help="Per-prompt LPIPS diversity: images come in groups of K per prompt (the list repeats each prompt K times).")] = None,
    lpips_weights: Annotated[Optional[str], _opt("--lpips-weights", metavar="PATH", panel=EXTRACTOR, help="Local LPIPS v0.1 alex.pth (default: the lpips package's copy).")] = None,
    lpips_alexnet_weights: Annotated[Optional[str], _opt("--lpips-alexnet-weights", metavar="PATH", panel=EXTRACTOR, help="Local torchvision alexnet-owt-7be5be79.pth.")] = None,
    vendi: Annotated[bool, _opt("--vendi", panel=DIVERSITY, help="Vendi score of the generated images (cosine kernel on the FID features).")] = False,
    bootstrap: Annotated[int, _opt("--bootstrap", metavar="B", panel=INTERVALS, help="Percentile bootstrap intervals over images for FID and CLIP, B replicates (0: none).")] = 0,
    bootstrap_seed: Annotated[int, _opt("--bootstrap-seed", panel=INTERVALS, help="Seed of the bootstrap draws (and of FID-infinity's subsets).")] = 0,
    confidence: Annotated[float, _opt("--confidence", metavar="LEVEL", panel=INTERVALS, help="Level of the bootstrap intervals.")] = 0.95,
    clip_variant: Annotated[Literal["gigagan", "torchmetrics"], _opt("--clip-variant", panel=METRICS, help="gigagan: the coco2014-30k definition; torchmetrics: CLIPScore (x100).")] = "gigagan",
    protocol: Annotated[Literal["custom", "coco2014-30k", "coco2017-5k"], _opt("--protocol", panel=PROTOCOL, help="A published protocol refuses runs that break it; custom checks nothing.")] = "custom",
    allow_deviation: Annotated[bool, _opt("--allow-deviation", panel=PROTOCOL, help="Run even if the protocol is broken; the result is marked not comparable.")] = False,
    mode: Mode = "clean",
    pre_resize: PreResize = None,
    extractor: ExtractorOpt = None,
    weights: WeightsOpt = None,
    random_weights: RandomWeights = False,
    pr_weights: Annotated[Optional[str], _opt("--pr-weights", metavar="PATH", panel=EXTRACTOR, help="Local torchvision vgg16-397923af.pth.")] = None,
    clip_model: Annotated[Optional[str], _opt("--clip-model", metavar="NAME", panel=EXTRACTOR, help="CLIP model (default: ViT-g-14 / openai/clip-vit-large-patch14 by variant).")] = None,
    clip_weights: Annotated[Optional[str], _opt("--clip-weights", metavar="PATH", panel=EXTRACTOR, help="Local CLIP weights: open_clip file, or a transformers folder (torchmetrics; default: fetched from the hub on first use).")] = None,
    steps: Annotated[Optional[int], _opt("--steps", panel=GENERATION, help="Sampling steps of the evaluated generator: the teacher runs them with --base (default 50); with --images they are recorded (the sidecar's when there is one).")] = None,
    cfg_scale: Annotated[float, _opt("--cfg", metavar="SCALE", panel=GENERATION, help="Teacher guidance scale (with --base and no --generator).")] = 1.0,
    scheduler: Scheduler = None,
    t_init: TInit = None,
    gen_steps: GenSteps = None,
    embedded_guidance: EmbeddedGuidance = None,
    seed_offset: Annotated[int, _opt("--seed-offset", panel=GENERATION, help="Image i from seed offset + i.")] = 0,
    precision: Precision = "fp32",
    text_encoder_dtype: TextEncoderDtype = None,
    gen_batch: Annotated[int, _opt("--gen-batch", panel=PERFORMANCE, help="Images generated per call (in-memory evaluation).")] = 8,
    batch: Batch = 32,
    threads: Threads = None,
    device: Device = "auto",
    cache_dir: Annotated[Optional[str], _opt("--cache-dir", metavar="PATH", panel=PERFORMANCE, help="Reference statistics cache folder.")] = None,
    no_cache: Annotated[bool, _opt("--no-cache", panel=PERFORMANCE, help="Neither read nor write the reference cache.")] = False,
    out: Annotated[Optional[str], _opt("--out", metavar="PATH", panel=OUTPUT, help="Results JSON (written atomically); - for stdout.")] = None,
    as_json: Annotated[bool, _opt("--json", panel=OUTPUT, help="Print the results object as JSON on stdout (the table still goes to stderr).")] = False,
    per_sample: Annotated[Optional[str], _opt("--per-sample", metavar="PATH", panel=OUTPUT, help="Every image's scores (index, file, prompt, CLIP, aesthetic) as .csv or .parquet, for sidbench compare.")] = None,
    save_stats: Annotated[Optional[str], _opt("--save-stats", metavar="PATH", panel=OUTPUT, help="Also write the generated side's statistics here.")] = None,
    quiet: Quiet = False,
    offline: Offline = False,
    name: Annotated[Optional[str], _opt("--name", metavar="TEXT", panel=LABELS, help="Row label (default: the images' folder name).")] = None,
    method: Annotated[Optional[str], _opt("--method", metavar="TEXT", panel=LABELS, help="Method, e.g. SiD-LSG.")] = None,
    teacher: Annotated[Optional[str], _opt("--teacher", metavar="TEXT", panel=LABELS, help="Teacher model, e.g. SD1.5.")] = None,
    guidance_label: Annotated[Optional[str], _opt("--guidance-label", metavar="TEXT", panel=LABELS, help="Guidance as the table should say it, e.g. 'LSG k=1.5' (the scale itself is --cfg).")] = None,
    kimg: Annotated[Optional[float], _opt("--kimg", panel=LABELS, help="Training length in thousands of images.")] = None,
):
    """FID, KID, CLIP score, precision/recall (with density/coverage), FD-DINOv2, CMMD, the aesthetic score,
    HPSv2, PickScore, ImageReward, LPIPS and Vendi diversity, FID-infinity and bootstrap intervals from one pass
    over the images, with a results file that says how they were made."""
    from sidbench.core import distributed
    from sidbench.core.threads import set_threads
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.results import print_table
    from sidbench.gen.generate import GenerateConfig

    with user_errors():
        from sidbench.gen.releases import release_of

        released = release_of(generator)  # sid-lsg:NAME names its own base
        if (images is None) == (base is None and released is None):
            raise SidbenchError("give either --images (files, an array or statistics) or --base [--generator] "
                                "(generate in memory)")
        threads = set_threads(threads)
        device = announce_device(device)
        if fid is None:
            fid = not ((clip or pr or aesthetic or fd_dinov2 or cmmd or hps or pickscore or image_reward or images_per_prompt)
                        and not kid)
        cfg = EvalConfig(fid=fid, kid=kid, clip=clip, prompts=prompts, clip_variant=clip_variant, pr=pr, pr_k=pr_k,
                         pr_weights=pr_weights, density_coverage=density_coverage, clip_model=clip_model, clip_weights=clip_weights,
                         protocol=protocol, allow_deviation=allow_deviation, mode=mode, pre_resize=pre_resize,
                         extractor=extractor, weights=weights, random_weights=random_weights, batch_size=batch,
                         threads=threads, device=device, n=n, ref_n=ref_n, value_range=value_range, array_key=array_key,
                         skip_bad=skip_bad, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                         kid_seed=kid_seed, fid_infinity=fid_infinity, vendi=vendi, bootstrap=bootstrap,
                         bootstrap_seed=bootstrap_seed, confidence=confidence, per_sample=per_sample, aesthetic=aesthetic,
                         aesthetic_clip_weights=aesthetic_clip_weights, aesthetic_head_weights=aesthetic_head_weights,
                         fd_dinov2=fd_dinov2, dinov2=f"dinov2-{dinov2_model}", dinov2_resize=dinov2_resize,
                         dinov2_weights=dinov2_weights, cmmd=cmmd, cmmd_weights=cmmd_weights, hps=hps,
                         hps_version=hps_version, hps_weights=hps_weights, pickscore=pickscore,
                         pickscore_weights=pickscore_weights, image_reward=image_reward,
                         image_reward_weights=image_reward_weights, image_reward_tokenizer=image_reward_tokenizer,
                         images_per_prompt=images_per_prompt,
                         lpips_weights=lpips_weights, lpips_alexnet_weights=lpips_alexnet_weights, cache_dir=cache_dir,
                         use_cache=not no_cache, progress=not quiet)
        subject = {k: v for k, v in dict(name=name, method=method, teacher=teacher, steps=steps, guidance=guidance_label,
                                         kimg=kimg).items() if v is not None}
        if released is not None:  # a release is labelled as its published row; the label flags still win
            subject = {**released.subject(), **subject}
        if generator is not None and base is None and released is None:
            raise SidbenchError("--generator is evaluated in memory on its base model: give --base too")
        if generator is not None and steps not in (None, 1):
            raise SidbenchError(f"--steps {steps} is the teacher's sampler; a --generator takes --gen-steps")
        if gen_steps is not None and generator is None:
            raise SidbenchError("--gen-steps is the step count of a few-step --generator; the teacher takes --steps")
        if base is not None or released is not None:  # generated in memory: the API builds the sampler from this
            images = GenerateConfig(base=base, prompts=prompts, generator=generator, which=which, steps=steps or 50, cfg=cfg_scale,
                                    scheduler=scheduler, t_init=t_init, gen_steps=gen_steps, embedded_guidance=embedded_guidance, n=n, batch_size=gen_batch,
                                    seed_offset=seed_offset, precision=precision, text_encoder_dtype=text_encoder_dtype, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SidbenchWarning)  # the table below lists them, once
            try:
                res = evaluate(images, ref, cfg, out=None if out == "-" else out, save_stats=save_stats,
                               command=sys.argv, subject=subject)
            except SidbenchError as e:
                if getattr(e, "results", None) is not None:  # computed, but the results file could not be written
                    print_table(e.results, console)
                raise
    if distributed.is_main():
        print_table(res, console)
        if as_json or out == "-":
            print_json(res)
        if out and out != "-":
            console.print(f"results written to {out}")
