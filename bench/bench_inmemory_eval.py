"""In-memory generate + FID (sidbench eval --generator) vs generate-to-PNG then clean-fid's compute_fid.

Tiny random Stable-Diffusion-shaped models on CPU (sidbench.gen.tiny), the same prompts, seeds and images,
and the same extractor (FID Inception architecture, seeded random weights, clean mode, no pre-resize) for both;
both sides of the FID are computed by each tool (no reference cache). Same run; prints both times and the ratio,
and how much of each is the generator's own sampling (the same work on both sides).

Image size: --size 16 is the tiny SD as `build_tiny_sd` writes it (its 2-block VAE, 16 px natively).
Other sizes (default 512, the protocol's) swap in a VAE of SD's own layout (4 blocks, 8x downsampling,
tiny widths), so 512 px images come from 64x64 latents as in SD1.5; the tiny UNet is unchanged (it is
convolutional and runs at any latent size). The 2-block VAE cannot be used at 512 px: its UNet would run
on 256x256 latents with self-attention over 65,536 positions.
Usage: python bench/bench_inmemory_eval.py [--n 200] [--size 512]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

import sidbench  # noqa: F401
from cleanfid import fid as cfid
from sidbench.eval.api import EvalConfig, evaluate
from sidbench.eval.extractors.registry import build_extractor
from sidbench.gen.generate import GenerateConfig, GeneratedImages, build_sampler, generate
from sidbench.gen.tiny import build_tiny_sd
from sidbench.demo.world import sample_world


def tiny_sd(folder: Path, size: int) -> Path:
    """The tiny SD; for sizes other than 16, with an SD-layout (8x) VAE in place of its 2-block one."""
    build_tiny_sd(folder)
    if size != 16:
        from diffusers import AutoencoderKL

        torch.manual_seed(1)
        AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16),
                      latent_channels=4, layers_per_block=1, norm_num_groups=4,
                      sample_size=size).save_pretrained(folder / "vae")
    return folder


def timed_sampling(sampler):
    """Wrap ``sampler.sample`` to add up its time in ``sampler.seconds``."""
    sample, sampler.seconds = sampler.sample, 0.0

    def timed(*a, **kw):
        t = time.perf_counter()
        out = sample(*a, **kw)
        sampler.seconds += time.perf_counter() - t
        return out

    sampler.sample = timed
    return sampler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=512, help="image side in px (16: the plain tiny SD)")
    ap.add_argument("--workers", type=int, default=12, help="clean-fid's num_workers (its default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sd = tiny_sd(tmp / "sd", args.size)
        refs, captions = sample_world(args.n, args.size, seed=0)
        (tmp / "prompts.txt").write_text("\n".join(captions) + "\n")
        (tmp / "ref").mkdir()
        for i, im in enumerate(refs):
            Image.fromarray(im).save(tmp / "ref" / f"{i:06d}.png")
        gcfg = GenerateConfig(base=str(sd), prompts=str(tmp / "prompts.txt"), generator=str(sd / "unet"),
                              batch_size=16, height=args.size)

        t = time.perf_counter()
        sampler, info = build_sampler(gcfg)
        res = evaluate(GeneratedImages(timed_sampling(sampler), captions, batch_size=16, info=info), str(tmp / "ref"),
                       EvalConfig(use_cache=False, progress=False),
                       extractor=build_extractor("inception-v3-tf", mode="clean", random_weights=True))
        t_ours, s_ours = time.perf_counter() - t, sampler.seconds

        t = time.perf_counter()
        sampler, info = build_sampler(gcfg)
        generate(gcfg, tmp / "png", progress=False, sampler=timed_sampling(sampler), info=info)
        t_gen, s_ref = time.perf_counter() - t, sampler.seconds
        v_ref = cfid.compute_fid(str(tmp / "png"), str(tmp / "ref"), mode="clean", device=torch.device("cpu"),
                                 custom_feat_extractor=build_extractor("inception-v3-tf", mode="clean", random_weights=True),
                                 num_workers=args.workers, verbose=False)
        t_ref = time.perf_counter() - t
    v_ours = res["metrics"]["fid"]["value"]
    print(f"{args.n} generated (tiny SD, {args.size} px) vs {args.n} reference PNGs; FID Inception architecture, "
          f"random weights; torch threads {torch.get_num_threads()}")
    print(f"sidbench eval --generator (in memory): {t_ours:7.1f} s   FID {v_ours:.6f}   (sampling {s_ours:.1f} s)")
    print(f"generate to PNG ({t_gen:.1f} s, sampling {s_ref:.1f} s) + clean-fid compute_fid: {t_ref:7.1f} s   "
          f"FID {v_ref:.6f}")
    print(f"without the sampling: {t_ours - s_ours:.1f} s vs {t_ref - s_ref:.1f} s "
          f"({(t_ref - s_ref) / (t_ours - s_ours):.2f}x)")
    print(f"speed-up {t_ref / t_ours:.2f}x  |FID difference| {abs(v_ours - v_ref):.2e}  (goal >= 3x) -> "
          f"{'PASS' if t_ref / t_ours >= 3 else 'MISS'}")


if __name__ == "__main__":
    main()
