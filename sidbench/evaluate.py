"""``sidbench eval`` as a Python function: two inputs in, one results dict out.

Each side is a folder of images, an image array (.npy/.npz) or a statistics file. Reference
statistics are cached under a key that hashes everything that produced them.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sidbench import distributed, results as R
from sidbench.errors import SidbenchError, StatsMismatchError
from sidbench.extractors.registry import Extractor, build_extractor, default_fid_extractor
from sidbench.features import FeatureRunner, compute_source_stats, stats_meta
from sidbench.images import open_source
from sidbench.metrics.fid import frechet_distance
from sidbench.metrics.kid import kernel_inception_distance
from sidbench.preprocess import Preprocess
from sidbench.stats import COMPAT_KEYS, FeatureStats, is_stats_file


@dataclass
class EvalConfig:
    fid: bool = True                    # Fréchet Inception Distance
    kid: bool = False                   # Kernel Inception Distance (keeps per-image features)
    mode: str = "clean"                 # clean | legacy_tensorflow | legacy_pytorch
    pre_resize: int | None = None       # protocol pre-resize (centre crop + Lanczos), e.g. 256
    extractor: str | None = None        # registry name; default follows the mode
    weights: str | None = None          # local weight file (else the weights folder)
    random_weights: bool = False        # same architecture, seeded random weights: tests and benchmarks only
    weights_seed: int = 0
    batch_size: int = 32
    threads: int | None = None          # decode/resize threads (default: CPU count, at most 8)
    device: str = "cpu"
    channels_last: bool = True
    n: int | None = None                # use the first n generated images (error if fewer)
    ref_n: int | None = None            # use the first ref_n reference images
    value_range: str | None = None      # for float image arrays: "-1,1", "0,1" or "0,255"
    skip_bad: bool = False              # skip unreadable images (counted) instead of stopping
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_seed: int = 0
    cache_dir: str | None = None        # reference statistics cache ($SIDBENCH_CACHE or ~/.cache/sidbench/stats)
    use_cache: bool = True
    protocol: str = "custom"
    progress: bool = True


def cache_dir(cfg: EvalConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    env = os.environ.get("SIDBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sidbench" / "stats"


def stats_cache_key(input_desc: dict, meta: dict, used: int) -> str:
    """Hash of everything that produced a set of statistics: inputs (listing/data hash), count, settings."""
    ident = {k: input_desc.get(k) for k in ("kind", "listing_sha256", "data_sha256", "count", "value_range")}
    ident["used"] = used
    ident.update({k: meta.get(k) for k in COMPAT_KEYS})
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def make_extractor(cfg: EvalConfig) -> Extractor:
    name = cfg.extractor or default_fid_extractor(cfg.mode)
    return build_extractor(name, mode=cfg.mode, weights=cfg.weights, random_weights=cfg.random_weights,
                           seed=cfg.weights_seed, device=cfg.device)


def load_checked_stats(path: str, expected_meta: dict, *, need_features: bool, side: str) -> FeatureStats:
    stats = FeatureStats.load(path)
    probe = FeatureStats(expected_meta["dim"], meta=expected_meta)
    try:
        probe.compatible_with(stats, what=f"the {side} statistics file {path} and this evaluation")
    except StatsMismatchError as e:
        raise StatsMismatchError(f"{e}\nRecompute the statistics with these settings, or evaluate with theirs.") from None
    if need_features and stats.features is None:
        raise SidbenchError(f"{path} holds no per-image features, which KID needs; recompute it with --kid")
    return stats


def side_stats(path, runner: FeatureRunner, cfg: EvalConfig, *, side: str, limit: int | None,
               cached: bool, results: dict) -> FeatureStats:
    """Statistics for one side: a statistics file, a cached result, or computed from images."""
    meta = stats_meta(runner.extractor, runner.preprocess)
    if not isinstance(path, np.ndarray) and is_stats_file(path):
        stats = load_checked_stats(str(path), meta, need_features=cfg.kid, side=side)
        if limit is not None and limit != stats.n:
            raise SidbenchError(f"{path}: statistics over {stats.n} images, but {limit} were asked for")
        results["inputs"][side] = {"kind": "stats", "path": os.path.abspath(str(path)), "n": stats.n,
                                   "made_from": stats.meta.get("input"), "skipped": stats.meta.get("skipped", 0)}
        return stats
    source = open_source(path, value_range=cfg.value_range)
    desc = source.describe()
    used = limit if limit is not None else len(source)
    cache_file = None
    if cached and cfg.use_cache:
        cache_file = cache_dir(cfg) / f"{side}-{stats_cache_key(desc, meta, used)[:24]}.npz"
        if cache_file.is_file():
            stats = FeatureStats.load(cache_file)
            if not cfg.kid or stats.features is not None:
                results["inputs"][side] = dict(desc, n=stats.n, skipped=stats.meta.get("skipped", 0),
                                               cache=str(cache_file), cache_hit=True)
                return stats
    stats, skipped = compute_source_stats(source, runner, limit=limit, keep_features=cfg.kid,
                                          skip_bad=cfg.skip_bad, progress=cfg.progress, desc=f"{side} images")
    if skipped["count"]:
        R.warn(results, f"{side}: skipped {skipped['count']} unreadable file(s) (--skip-bad)")
    if cache_file is not None and distributed.is_main():
        stats.save(cache_file)
    results["inputs"][side] = dict(desc, n=stats.n, skipped=skipped["count"], skipped_files=skipped["files"],
                                   cache=str(cache_file) if cache_file else None, cache_hit=False)
    return stats


def evaluate(images, ref, cfg: EvalConfig | None = None, *, extractor: Extractor | None = None,
             out: str | None = None, save_stats: str | None = None, command: list[str] | None = None) -> dict:
    """Compare generated ``images`` with reference ``ref``; returns (and optionally writes) a results dict.

    ``images`` / ``ref``: a folder, an .npy/.npz image array, a statistics .npz, or an in-memory uint8 array.
    ``extractor``: inject any network (tests, the demo); otherwise built from the registry and local weights.
    """
    cfg = cfg or EvalConfig()
    if not (cfg.fid or cfg.kid):
        raise SidbenchError("nothing to compute: ask for --fid and/or --kid")
    t0 = time.time()
    distributed.init_if_launched()
    preprocess = Preprocess(cfg.mode, cfg.pre_resize)
    extractor = extractor or make_extractor(cfg)
    runner = FeatureRunner(extractor, preprocess, batch_size=cfg.batch_size, threads=cfg.threads,
                           channels_last=cfg.channels_last)
    res = R.new_results(protocol=cfg.protocol, command=command)
    res["config"] = {k: v for k, v in asdict(cfg).items() if k not in ("progress",)}
    res["preprocessing"] = preprocess.describe()
    res["extractors"]["fid"] = dict(extractor.describe(), channels_last=runner.channels_last)
    if extractor.is_random:
        R.mark_not_comparable(res, "feature extractor has random weights (architecture only): "
                                   "numbers are for tests and benchmarks")

    gen = side_stats(images, runner, cfg, side="generated", limit=cfg.n, cached=False, results=res)
    if save_stats and distributed.is_main():
        gen.save(save_stats)
    refs = side_stats(ref, runner, cfg, side="reference", limit=cfg.ref_n, cached=True, results=res)
    gen.compatible_with(refs, what="the generated and reference statistics")

    if cfg.fid:
        singular = gen.singular or refs.singular
        if singular:
            R.warn(res, f"N ({gen.n} generated, {refs.n} reference) is not above the feature dimension "
                        f"({gen.dim}): the covariance is singular and FID is biased upward; use more images")
        res["metrics"]["fid"] = {"value": frechet_distance(gen.mean, gen.cov, refs.mean, refs.cov),
                                 "n_gen": gen.n, "n_ref": refs.n, "mode": cfg.mode,
                                 "singular_covariance": singular, "covariance": "unbiased (N-1), float64 sums",
                                 "sqrtm": "symmetric eigen route, float64, negative eigenvalues clipped"}
    if cfg.kid:
        res["metrics"]["kid"] = dict(kernel_inception_distance(
            gen.ordered_features(), refs.ordered_features(), num_subsets=cfg.kid_subsets,
            max_subset_size=cfg.kid_subset_size, seed=cfg.kid_seed), n_gen=gen.n, n_ref=refs.n)
    res["timing"] = {"seconds": round(time.time() - t0, 3)}
    if out and distributed.is_main():
        R.save(res, out)
    return res


def compute_stats_file(images, out: str, cfg: EvalConfig | None = None, *, shard: tuple[int, int] | None = None,
                       extractor: Extractor | None = None) -> FeatureStats:
    """``sidbench stats compute``: statistics of one input (or one shard of it) written to ``out``."""
    cfg = cfg or EvalConfig()
    distributed.init_if_launched()
    extractor = extractor or make_extractor(cfg)
    runner = FeatureRunner(extractor, Preprocess(cfg.mode, cfg.pre_resize), batch_size=cfg.batch_size,
                           threads=cfg.threads, channels_last=cfg.channels_last)
    source = open_source(images, value_range=cfg.value_range)
    stats, _ = compute_source_stats(source, runner, limit=cfg.n, shard=shard, keep_features=cfg.kid,
                                    skip_bad=cfg.skip_bad, progress=cfg.progress)
    if distributed.is_main():
        stats.save(out)
    return stats


def merge_stats_files(paths: list[str], out: str) -> FeatureStats:
    """``sidbench stats merge``: shard statistics -> the statistics of their union (exactly)."""
    merged = FeatureStats.merged([FeatureStats.load(p) for p in paths])
    merged.save(out)
    return merged
