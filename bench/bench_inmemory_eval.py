"""In-memory generate + FID (sidbench eval --generator) vs generate-to-PNG then clean-fid's compute_fid.

Tiny random Stable-Diffusion-shaped models on CPU (sidbench.gen.tiny), the same prompts, seeds and images,
and the same extractor (FID Inception architecture, seeded random weights) for both; both sides of the
FID are computed by each tool (no reference cache). Same run; prints both times and the ratio.
Usage: python bench/bench_inmemory_eval.py [--n 200]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch

import sidbench  # noqa: F401
from cleanfid import fid as cfid
from sidbench.eval.api import EvalConfig, evaluate
from sidbench.eval.extractors.registry import build_extractor
from sidbench.gen.generate import GenerateConfig, GeneratedImages, build_sampler, generate
from sidbench.gen.tiny import build_tiny_sd
from sidbench.demo.world import sample_world


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--workers", type=int, default=12, help="clean-fid's num_workers (its default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sd = build_tiny_sd(tmp / "sd")
        refs, captions = sample_world(args.n, 16, seed=0)
        (tmp / "prompts.txt").write_text("\n".join(captions) + "\n")
        from PIL import Image
        (tmp / "ref").mkdir()
        for i, im in enumerate(refs):
            Image.fromarray(im).save(tmp / "ref" / f"{i:06d}.png")
        gcfg = GenerateConfig(base=str(sd), prompts=str(tmp / "prompts.txt"), generator=str(sd / "unet"), batch_size=16)

        t = time.perf_counter()
        sampler, info = build_sampler(gcfg)
        res = evaluate(GeneratedImages(sampler, captions, batch_size=16, info=info), str(tmp / "ref"),
                       EvalConfig(use_cache=False, progress=False),
                       extractor=build_extractor("inception-v3-tf", mode="clean", random_weights=True))
        t_ours = time.perf_counter() - t

        t = time.perf_counter()
        generate(gcfg, tmp / "png", progress=False)
        t_gen = time.perf_counter() - t
        v_ref = cfid.compute_fid(str(tmp / "png"), str(tmp / "ref"), mode="clean", device=torch.device("cpu"),
                                 custom_feat_extractor=build_extractor("inception-v3-tf", mode="clean", random_weights=True),
                                 num_workers=args.workers, verbose=False)
        t_ref = time.perf_counter() - t
    v_ours = res["metrics"]["fid"]["value"]
    print(f"{args.n} generated (tiny SD, 16 px) vs {args.n} reference PNGs; FID Inception architecture, random weights")
    print(f"sidbench eval --generator (in memory): {t_ours:7.1f} s   FID {v_ours:.6f}")
    print(f"generate to PNG ({t_gen:.1f} s) + clean-fid compute_fid: {t_ref:7.1f} s   FID {v_ref:.6f}")
    print(f"speed-up {t_ref / t_ours:.2f}x  |FID difference| {abs(v_ours - v_ref):.2e}  (goal >= 3x) -> "
          f"{'PASS' if t_ref / t_ours >= 3 else 'MISS'}")


if __name__ == "__main__":
    main()
