"""GPU benchmark (run when a GPU machine is lent): the whole coco2014-30k evaluation of a one-step generator.

SD1.5-architecture UNet, VAE and text encoder with random weights; 30K prompts (the shared COCO list when
present, else synthetic); one-step generation at 512 px streamed in memory into FID (Inception
architecture) and CLIP (ViT-g-14 architecture), both random weights. It runs the public evaluation path,
``sidbench.eval.api.evaluate`` on a ``GeneratedImages`` stream under ``--protocol coco2014-30k`` (with
``allow_deviation``: random weights), i.e. what ``sidbench eval --generator`` does: each image is generated
once and feeds both metrics in one pass. The reference side is a statistics file, as the cached COCO
reference statistics are on every run after the first, so the figures are the generated side's.

Per-stage seconds come from timing the three networks' calls inside that pass (GPU synchronised at each
end): the sampler's ``sample`` (text encoder + one-step UNet + VAE decode + uint8), the FID extractor's
forward (host-to-device copy + Inception), the CLIP scorer's ``update`` (its JPEG round trip, preprocessing
and model). The stages run one after another on the main thread (the FID resize runs in a thread pool, but
the generated stream waits for it), so they add up; "rest" is the total wall minus the three: the protocol
pre-resize and Inception resize, the float64 statistics, the FID itself and bookkeeping.
Goal on one H100/H200: total under 5 minutes. Prints a Markdown table and adds a row to its section of
bench/RESULTS.md (``--results``).

Usage: python bench/gpu_eval_30k.py [--n 30000] [--batch 64] [--precision bf16] [--results bench/RESULTS.md]
       python bench/gpu_eval_30k.py --smoke      # tiny SD + tiny open_clip on the CPU, 8 images: same code path
``--smoke`` swaps in ``sidbench.gen.tiny``'s SD and a tiny open_clip architecture (the Inception is the real
architecture in both) and runs 8 images on the CPU; everything else is the run above. ``tests/test_bench_smoke.py``
runs it inside ``make test``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from gpu_distill_sd15 import build_base, finish, fmt, is_cuda, sync  # bench/ is on sys.path

SECTION = "Whole coco2014-30k evaluation of a one-step generator (GPU)"
HEADER = ["date", "machine", "command", "one-step generation + VAE decode", "FID Inception", "CLIP",
          "rest (resize, statistics, FID)", "total wall"]
STAGES = (("generation", "one-step generation + VAE decode"), ("fid", "FID Inception (copy + forward)"),
          ("clip", "CLIP (round trip, preprocess, model)"))
SMOKE_CLIP = "sidbench-smoke-clip"  # a tiny open_clip architecture, registered for --smoke only
SMOKE_CLIP_CONFIG = {"embed_dim": 32,
                     "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32},
                     "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


class StageTimer:
    """Wall seconds per stage; the device is synchronised at both ends so queued GPU work is counted."""

    def __init__(self, device: str):
        self.device, self.seconds = device, defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        sync(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.seconds[stage] += time.perf_counter() - t0


def timed_method(obj, method: str, timer: StageTimer, stage: str):
    """``obj`` itself, with ``obj.method`` timed as ``stage`` (an instance attribute over the class's method)."""
    inner = getattr(obj, method)

    def wrapper(*args, **kwargs):
        with timer(stage):
            return inner(*args, **kwargs)

    setattr(obj, method, wrapper)
    return obj


def timed_extractor(extractor, timer: StageTimer):
    """The same extractor (same module, so the runner's channels-last set-up applies), its calls timed as "fid"."""
    from sidbench.eval.extractors.registry import Extractor

    @dataclass
    class TimedExtractor(Extractor):
        timer: StageTimer | None = None

        def __call__(self, x):  # a special method: looked up on the class, so a subclass rather than timed_method
            with self.timer("fid"):
                return Extractor.__call__(self, x)

    return TimedExtractor(**{f.name: getattr(extractor, f.name) for f in fields(Extractor)}, timer=timer)


def reference_stats(path: Path, extractor, preprocess, n: int, seed: int = 0) -> Path:
    """A statistics file with this extractor's settings (so ``evaluate`` accepts it) over n seeded random features.

    It stands in for the cached COCO reference statistics: the benchmark times the generated side.
    """
    from sidbench.eval.features import stats_meta
    from sidbench.eval.stats import FeatureStats

    stats = FeatureStats(extractor.dim, meta=stats_meta(extractor, preprocess))
    g = torch.Generator().manual_seed(seed)
    for k in range(0, n, 1024):
        stats.update(torch.randn(min(1024, n - k), extractor.dim, generator=g))
    stats.meta["input"] = {"kind": "synthetic", "count": n, "used": n, "what": f"standard normal features, seed {seed}"}
    stats.save(path)
    return path


def prompt_file(n: int, tmp: Path) -> Path:
    """The shared COCO caption list when it holds exactly n prompts (the protocol's file, md5 checked), else
    its first n (or synthetic ones) written to a file."""
    from sidbench.data.prompts import read_prompts

    here = Path(__file__).resolve()
    shared = next((p for p in (here.parents[1] / "shared", here.parents[2] / "shared")
                   if (p / "data" / "sid-lsg" / "captions.txt").is_file()), None)
    prompts = read_prompts(shared / "data" / "sid-lsg" / "captions.txt") if shared else []
    if len(prompts) == n:
        return shared / "data" / "sid-lsg" / "captions.txt"
    prompts = prompts[:n] if len(prompts) >= n else [f"a photo of thing {i}" for i in range(n)]
    (tmp / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return tmp / "prompts.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny SD + tiny CLIP on the CPU, 8 images, same code path")
    ap.add_argument("--n", type=int, default=None, help="prompts / images; default 30000 (--smoke: 8)")
    ap.add_argument("--batch", type=int, default=None, help="generation and network batch; default 64 (--smoke: 4)")
    ap.add_argument("--precision", default="bf16", help="generation precision (fp32 | fp16 | bf16)")
    ap.add_argument("--threads", type=int, default=None, help="resize threads; default the CPU count, at most 16")
    ap.add_argument("--ref-n", type=int, default=None, help="features in the synthetic reference statistics; "
                                                            "default 4096 (--smoke: 64)")
    ap.add_argument("--device", default=None, help="default cuda (--smoke: cpu)")
    ap.add_argument("--results", default=None, help="results file to add a row to (default bench/RESULTS.md; "
                    "with --smoke, none unless given: smoke figures are not benchmark results)")
    args = ap.parse_args(argv)
    args.n = args.n or (8 if args.smoke else 30000)
    args.batch = args.batch or (4 if args.smoke else 64)
    args.threads = args.threads or max(1, min(16, os.cpu_count() or 1))
    args.ref_n = args.ref_n or (64 if args.smoke else 4096)
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    return args


def main(argv: list[str] | None = None) -> None:
    import sidbench  # noqa: F401
    from sidbench.data.preprocess import Preprocess
    from sidbench.data.prompts import read_prompts
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.extractors.registry import build_extractor
    from sidbench.eval.metrics.clip_score import load_open_clip
    from sidbench.gen.generate import GeneratedImages
    from sidbench.gen.models import load_base, parse_dtype
    from sidbench.gen.sampling import OneStepSampler

    args = parse_args(argv)
    dev = args.device
    timer = StageTimer(dev)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = load_base(build_base(tmp / "sd", args.smoke), device=dev, dtype=parse_dtype(args.precision))
        prompts_path = prompt_file(args.n, tmp)
        prompts = read_prompts(prompts_path)
        sampler = timed_method(OneStepSampler(base, generator=copy.deepcopy(base.unet)), "sample", timer, "generation")
        extractor = timed_extractor(build_extractor("inception-v3-tf", mode="clean", random_weights=True, device=dev),
                                    timer)
        clip_model = "ViT-g-14"
        if args.smoke:
            import open_clip

            clip_model = SMOKE_CLIP
            (tmp / f"{SMOKE_CLIP}.json").write_text(json.dumps(SMOKE_CLIP_CONFIG))
            open_clip.add_model_config(str(tmp))
        scorer = timed_method(load_open_clip(clip_model, random_weights=True, device=dev), "update", timer, "clip")
        cfg = EvalConfig(protocol="coco2014-30k", allow_deviation=True, clip=True, clip_model=clip_model,
                         prompts=str(prompts_path), random_weights=True, batch_size=args.batch, threads=args.threads,
                         device=dev, use_cache=False, progress=False)
        ref = reference_stats(tmp / "reference.npz", extractor, Preprocess(cfg.mode, 256), args.ref_n)
        images = GeneratedImages(sampler, prompts, batch_size=args.batch,
                                 info={"base": base.describe(), "precision": args.precision, "device": dev,
                                       "sampler": sampler.describe()})
        sync(dev)
        t0 = time.perf_counter()
        res = evaluate(images, str(ref), cfg, extractor=extractor, clip_scorer=scorer,
                       subject={"name": "random one-step generator", "steps": 1})
        sync(dev)
        total = time.perf_counter() - t0
    n = res["inputs"]["generated"]["n"]
    if n != args.n or res["metrics"]["clip"]["n"] != args.n:
        raise SystemExit(f"evaluated {n} images (CLIP {res['metrics']['clip']['n']}), expected {args.n}")
    t = dict(timer.seconds)
    rest = total - sum(t.get(k, 0.0) for k, _ in STAGES)
    what = ("tiny SD (sidbench.gen.tiny) + tiny open_clip" if args.smoke
            else "SD1.5-architecture 512 px + CLIP ViT-g-14")
    name = torch.cuda.get_device_name(torch.device(dev)) if is_cuda(dev) else "CPU"
    print(f"device {name}, {n} prompts, batch {args.batch}, generation {args.precision}; {what}, random weights; "
          f"protocol coco2014-30k with {len(res['protocol']['deviations'])} recorded deviation(s)")
    print("| stage | seconds | images/s |\n|---|---|---|")
    for key, label in STAGES:
        print(f"| {label} | {t.get(key, 0.0):.3g} | {fmt(n / t[key]) if t.get(key) else '-'} |")
    print(f"| rest (pre-resize + Inception resize, float64 statistics, FID, bookkeeping) | {rest:.3g} | - |")
    print(f"| total wall | {total:.3g} | {fmt(n / total)} |   (goal at 30K on one H100/H200: < 300 s)")
    print(f"FID {res['metrics']['fid']['value']:.4g}, CLIP {res['metrics']['clip']['value']:.4g} "
          f"(random networks: sanity only); evaluate's own timing {res['timing']['seconds']} s")
    stage_cells = [f"{t.get(k, 0.0):.3g} s ({fmt(n / t[k]) if t.get(k) else '-'} img/s)" for k, _ in STAGES]
    finish(args, argv, __file__, SECTION, HEADER,
           f"{n} images, batch {args.batch}, generation {args.precision}, {what}, FID Inception 299 px, random "
           f"weights, {args.threads} resize threads, reference: statistics file, {dev}",
           [*stage_cells, f"{rest:.3g} s", f"{total:.3g} s ({fmt(n / total)} img/s)"])


if __name__ == "__main__":
    main()
