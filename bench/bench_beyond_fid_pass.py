"""Every metric in one `sidbench eval` pass vs one run per metric (the cost of running each tool on its own).

The reference tools (clean-fid, dgm-eval, the CMMD code, hpsv2, the PickScore recipe, lpips) cannot load their real
weights offline, so the "separate" side is this checkout's own eval run once per metric: each run decodes every
image again, builds its network and walks the folder, which is what running the tools one after the other costs.
Both sides are child processes of the same Python, one after the other, on the same folders (N generated + N
reference PNGs, N prompts, each repeated for K = 2 images per prompt), random-weight networks, no reference cache;
decodes are counted at `sidbench.data.images.load_image_file`. The numbers of the two sides must be equal.
Default metrics are the ones with CPU-sized networks (FID, CLIP ViT-B-32, FD-DINOv2 ViT-S/14, LPIPS diversity);
--heavy adds CMMD (ViT-L/14@336), the aesthetic score (ViT-L/14), HPSv2 and PickScore (ViT-H/14): a GPU's job.
Usage: python bench/bench_beyond_fid_pass.py [--n 64] [--size 512] [--heavy]
"""
import argparse
import os
import tempfile
from pathlib import Path

from bench_folder_fid import make_folder
from bench_single_pass import REPO, run_eval

LIGHT = {"fid": ["--fid"], "clip": ["--clip", "--clip-model", "ViT-B-32"],
         "fd_dinov2": ["--fd-dinov2", "--dinov2-model", "vits14"], "lpips_diversity": ["--images-per-prompt", "2"]}
HEAVY = {"cmmd": ["--cmmd"], "aesthetic": ["--aesthetic"], "hps": ["--hps"], "pickscore": ["--pickscore"]}


def value(res: dict, name: str) -> float:
    return res["metrics"][name]["value"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="generated images = reference images = prompts (even)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--heavy", action="store_true", help="also CMMD, aesthetic, HPSv2, PickScore (big networks)")
    args = ap.parse_args()
    metrics = {**LIGHT, **(HEAVY if args.heavy else {})}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_folder(tmp / "gen", args.n, args.size, 0)
        make_folder(tmp / "ref", args.n, args.size, 1)
        (tmp / "prompts.txt").write_text("".join(f"a photo of thing number {i // 2}\n" for i in range(args.n)))
        common = ["--random-weights", "--no-cache", "--prompts", str(tmp / "prompts.txt"), "--images", str(tmp / "gen"),
                  "--ref", str(tmp / "ref"), "-q"]
        t_one, d_one, r_one = run_eval(REPO, [*common, *sum(metrics.values(), [])], tmp, "one-pass")
        separate = {name: run_eval(REPO, [*common, *flags] + ([] if name == "fid" else ["--no-fid"]), tmp, name)
                    for name, flags in metrics.items()}
    t_sep = sum(t for t, _, _ in separate.values())
    d_sep = sum(d for _, d, _ in separate.values())
    diff = {k: abs(value(r_one, k) - value(separate[k][2], k)) / max(abs(value(separate[k][2], k)), 1e-12) for k in metrics}
    print(f"{args.n}+{args.n} PNGs of {args.size} px, {args.n // 2} prompts x 2; random weights; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; metrics: {', '.join(metrics)}")
    print(f"  one pass : {t_one:7.1f} s  {d_one:6d} decodes")
    for k, (t, d, _) in separate.items():
        print(f"  {k:>15}: {t:7.1f} s  {d:6d} decodes  value {value(separate[k][2], k):.6f}")
    print(f"  separate : {t_sep:7.1f} s  {d_sep:6d} decodes")
    worst = max(diff.values())
    print(f"speed-up {t_sep / t_one:.2f}x   decodes {d_sep} -> {d_one}   worst relative difference {worst:.1e} -> "
          f"{'EQUAL' if worst <= 1e-6 else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
