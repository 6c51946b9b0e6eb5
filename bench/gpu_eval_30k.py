"""GPU benchmark (run when a GPU machine is lent): the whole coco2014-30k evaluation of a one-step generator.

SD1.5-architecture UNet, VAE and text encoder with random weights; 30K prompts (the shared COCO list when
present, else synthetic); one-step generation at 512 px streamed in memory into FID (Inception
architecture) and CLIP (ViT-g-14 architecture), both random weights. Reports images/s per stage and the
total wall time (goal on one H100/H200: under 5 minutes). Usage: python bench/gpu_eval_30k.py [--n 30000]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch


def main():
    import sidbench  # noqa: F401
    from gpu_distill_sd15 import build_sd15  # bench/ is on sys.path when run as a script
    from sidbench.eval.extractors.registry import build_extractor
    from sidbench.eval.features import FeatureRunner
    from sidbench.eval.metrics.clip_score import load_open_clip
    from sidbench.eval.metrics.fid import frechet_distance
    from sidbench.gen.models import load_base, parse_dtype
    from sidbench.data.preprocess import Preprocess
    from sidbench.gen.sampling import OneStepSampler

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--precision", default="bf16")
    args = ap.parse_args()
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "sid-lsg" / "captions.txt"
    prompts = (shared.read_text().splitlines() if shared.is_file() else [f"a photo of thing {i}" for i in range(args.n)])[:args.n]
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(build_sd15(Path(tmp) / "sd15"), device="cuda", dtype=parse_dtype(args.precision))
    import copy
    sampler = OneStepSampler(base, generator=copy.deepcopy(base.unet))
    runner = FeatureRunner(build_extractor("inception-v3-tf", mode="clean", random_weights=True, device="cuda"),
                           Preprocess("clean", 256), batch_size=args.batch, threads=16)
    clip = load_open_clip("ViT-g-14", random_weights=True, device="cuda")
    stats = runner.new_stats(False)
    t_gen = t_fid = t_clip = 0.0
    from concurrent.futures import ThreadPoolExecutor
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        for k in range(0, len(prompts), args.batch):
            idx = list(range(k, min(len(prompts), k + args.batch)))
            a = time.perf_counter()
            images = sampler.sample([prompts[i] for i in idx], idx)
            torch.cuda.synchronize()
            b = time.perf_counter()
            runner.add_images(stats, images, idx, pool)
            torch.cuda.synchronize()
            c = time.perf_counter()
            clip.update(images, [prompts[i] for i in idx])
            torch.cuda.synchronize()
            d = time.perf_counter()
            t_gen, t_fid, t_clip = t_gen + b - a, t_fid + c - b, t_clip + d - c
    total = time.perf_counter() - t0
    fd = frechet_distance(stats.mean, stats.cov, stats.mean + 0.01, stats.cov)
    n = len(prompts)
    print(f"device {torch.cuda.get_device_name(0)}, {n} prompts, batch {args.batch}, generation {args.precision}")
    print("| stage | seconds | images/s |\n|---|---|---|")
    for name, t in (("one-step generation + VAE decode", t_gen), ("FID (pre-resize, resize, Inception)", t_fid),
                    ("CLIP ViT-g-14 (round trip, preprocess, model)", t_clip)):
        print(f"| {name} | {t:.1f} | {n / t:.0f} |")
    print(f"| total wall | {total:.1f} | {n / total:.0f} |   (goal: < 300 s)  FD sanity {fd:.3g}")


if __name__ == "__main__":
    main()
