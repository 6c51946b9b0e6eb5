"""``sidbench eval`` as a Python function: two inputs in, one results dict out.

Each side is a folder of images, an image array (.npy/.npz) or a statistics file. Reference
statistics are cached under a key that hashes everything that produced them.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from sidbench.core import distributed
from sidbench.core.device import AUTO, describe_device, resolve_device
from sidbench.eval import reduce
from sidbench.eval import results as R
from sidbench.core.errors import SidbenchError, StatsMismatchError
from sidbench.core.outputs import WriteError, check_output
from sidbench.eval.extractors.registry import Extractor, build_extractor, default_fid_extractor, get_spec, known_extractors
from sidbench.eval.features import AestheticConsumer, ClipConsumer, FeatureConsumer, FeatureRunner, compute_source_stats, single_pass, stats_meta
from sidbench.data.images import as_image_array, is_in_memory, list_image_files, open_source, select_indices
from sidbench.data.stream import ImageStream
from sidbench.gen.families import truncation_warning
from sidbench.gen.generate import GenerateConfig, generation_record
from sidbench.eval.metrics.fid import frechet_distance
from sidbench.eval.metrics.clip_score import default_clip_model
from sidbench.eval.metrics.kid import kernel_inception_distance
from sidbench.eval import protocols
from sidbench.data.preprocess import Preprocess
from sidbench.eval.stats import COMPAT_KEYS, FeatureStats, is_stats_file, stats_count, stats_provenance


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
    device: str = AUTO                  # auto: the launcher's GPU, else cuda, else mps, else cpu (resolved per run)
    channels_last: bool = True
    n: int | None = None                # use the first n generated images (error if fewer)
    ref_n: int | None = None            # use the first ref_n reference images
    value_range: str | None = None      # for float image arrays: "-1,1", "0,1" or "0,255"
    layout: str | None = None           # for images in memory: NHWC | NCHW (default: where the 3 channels are)
    array_key: str | None = None        # the image array's name in an .npz holding several (applies to both sides)
    skip_bad: bool = False              # skip unreadable images (counted) instead of stopping
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_seed: int = 0
    cache_dir: str | None = None        # reference statistics cache ($SIDBENCH_CACHE or ~/.cache/sidbench/stats)
    use_cache: bool = True
    cache_in_memory: bool = False       # also cache statistics of a reference given in memory (array, tensor)
    protocol: str = "custom"            # a name from sidbench.eval.protocols (custom: no published protocol)
    allow_deviation: bool = False       # run even if it breaks the protocol (marked not comparable)
    clip: bool = False                  # CLIP score (GigaGAN / SiD-LSG definition), needs prompts
    prompts: str | None = None          # prompt list: caption i pairs with image i
    clip_variant: str = "gigagan"       # gigagan (the coco2014-30k definition) | torchmetrics
    clip_model: str | None = None       # default: ViT-g-14 (gigagan) / openai/clip-vit-large-patch14 (torchmetrics)
    clip_weights: str | None = None     # local open_clip weights (else the weights folder)
    clip_batch_size: int = 32
    pr: bool = False                    # precision / recall (NVIDIA pr50k3 semantics, VGG16 fc2 features)
    pr_k: int = 3
    pr_weights: str | None = None       # local torchvision vgg16-397923af.pth (else the weights folder)
    density_coverage: bool = False      # also density / coverage (Naeem et al. 2020) from the same distances
    fid_infinity: bool = False          # FID-infinity (Chong & Forsyth 2020): FID_N at several N, extrapolated to 1/N = 0
    vendi: bool = False                 # Vendi score of the generated images (cosine kernel on the FID features)
    bootstrap: int = 0                  # replicates of a percentile bootstrap over images for FID and CLIP; 0: none
    bootstrap_seed: int = 0
    confidence: float = 0.95            # the bootstrap interval's level
    aesthetic: bool = False             # LAION aesthetic predictor v2 (CLIP ViT-L/14 embeddings, linear head)
    aesthetic_clip_weights: str | None = None   # local OpenAI ViT-L-14.pt (else the weights folder)
    aesthetic_head_weights: str | None = None   # local sac+logos+ava1-l14-linearMSE.pth (else the weights folder)
    fd_dinov2: bool = False             # Fréchet distance on DINOv2 CLS features (Stein et al. 2023; dgm-eval, EDM2)
    dinov2: str = "dinov2-vitl14"       # the DINOv2 extractor (dinov2-vitl14 is the published one)
    dinov2_resize: str = "squash-pil"   # squash-pil (dgm-eval, EDM2 'pil') | squash-torch (EDM2's default 'torch')
    dinov2_weights: str | None = None   # local dinov2_vitl14_pretrain.pth (else the weights folder)
    cmmd: bool = False                  # CMMD (Jayasumana et al. 2024): MMD on CLIP ViT-L/14@336 embeddings
    cmmd_extractor: str = "clip-vit-l14-336"
    cmmd_weights: str | None = None     # local OpenAI ViT-L-14-336px.pt (else the weights folder)
    hps: bool = False                   # HPSv2 human-preference score (cosine of an HPD-tuned OpenCLIP ViT-H-14)
    hps_version: str = "v2.1"           # v2.0 | v2.1 (not comparable with each other)
    hps_weights: str | None = None      # local HPS_v2.1_compressed.pt / HPS_v2_compressed.pt
    pickscore: bool = False             # PickScore v1 (exp(logit_scale) x cosine of a Pick-a-Pic-tuned CLIP ViT-H/14)
    pickscore_weights: str | None = None  # local transformers folder of yuvalkirstain/PickScore_v1 (+ its processor)
    image_reward: bool = False          # ImageReward v1.0 (BLIP ViT-L/16 + cross-attending BERT, standardised reward)
    image_reward_weights: str | None = None    # local ImageReward.pt (else the weights folder)
    image_reward_tokenizer: str | None = None  # local bert-base-uncased vocab.txt or folder (else the weights folder)
    images_per_prompt: int | None = None  # K: per-prompt LPIPS diversity over groups of K consecutive images
    lpips_alexnet_weights: str | None = None  # local torchvision alexnet-owt-7be5be79.pth
    lpips_weights: str | None = None    # local LPIPS v0.1 alex.pth (else the lpips package's own copy, if installed)
    per_sample: str | None = None       # write every image's scores (index, file, prompt, CLIP, ...) to .csv or .parquet
    progress: bool = True

    @property
    def needs_reference(self) -> bool:
        return self.fid or self.kid or self.pr or self.fd_dinov2 or self.cmmd

    @property
    def preference_scores(self) -> tuple[str, ...]:
        """The prompt-paired preference scores asked for, by results name."""
        return tuple(n for n, on in (("hps", self.hps), ("pickscore", self.pickscore),
                                     ("image_reward", self.image_reward)) if on)

    @property
    def keep_generated_features(self) -> bool:
        """Per-image features of the generated side are needed (not only their sums)."""
        return self.kid or self.fid_infinity or self.vendi or self.bootstrap > 0


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


def resolved_device(cfg: EvalConfig) -> EvalConfig:
    """``cfg`` with its device resolved (``auto`` -> the GPU where there is one), so results say which."""
    return replace(cfg, device=str(resolve_device(cfg.device)))


def resolved_mode(cfg: EvalConfig, extractor: Extractor | None = None) -> EvalConfig:
    """A network that serves no FID mode (VGG16, the demo's world-cnn) takes images as they are: no 299 resize."""
    name = extractor.name if extractor is not None else cfg.extractor
    if name is None or name not in known_extractors() or get_spec(name).modes:
        return cfg
    if get_spec(name).resize and cfg.mode == "clean":
        return replace(cfg, mode=get_spec(name).resize)  # e.g. DINOv2 as the FID extractor: its own 224 resize
    if cfg.mode not in ("clean", "inside-network"):
        raise SidbenchError(f"--mode {cfg.mode} is an Inception resize; the extractor {name} takes images as they "
                            f"are (leave --mode at its default)")
    return replace(cfg, mode="inside-network")


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


def _mark_random(res: dict, what: str) -> None:
    """A network with random weights makes the result not comparable (said once, whichever network)."""
    if not any("random weights" in d for d in res["protocol"]["deviations"]):
        R.mark_not_comparable(res, f"{what} has random weights (architecture only): numbers are for tests and benchmarks")


def _clip_scorer(cfg: EvalConfig, given=None):
    from sidbench.eval.metrics.clip_score import load_clip_scorer

    if given is not None:  # a scorer loaded once by the caller (training proxies): start from zero
        given.reset()
        return given
    return load_clip_scorer(cfg.clip_variant, cfg.clip_model, weights=cfg.clip_weights,
                            random_weights=cfg.random_weights, seed=cfg.weights_seed, device=cfg.device)


def _record_clip(res: dict, scorer) -> None:
    """The CLIP result, its model, and what makes it not comparable or worth a warning, into ``res``."""
    res["metrics"]["clip"] = scorer.result()
    res["extractors"]["clip"] = scorer.info
    if scorer.info.get("random"):
        _mark_random(res, "the CLIP model")
    if res["metrics"]["clip"]["prompts_truncated"]:
        R.warn(res, f"{res['metrics']['clip']['prompts_truncated']} prompt(s) longer than the 77-token context "
                    f"were truncated for CLIP (counted in metrics.clip.prompts_truncated)")


def count_images(path, limit: int | None = None, array_key: str | None = None) -> int:
    """How many images a side will contribute, without decoding any (for the protocol check)."""
    if hasattr(path, "batches"):  # images generated in memory
        n = len(path)
    elif is_in_memory(path):
        n = len(path)
    elif is_stats_file(path):
        return stats_count(path)
    elif os.path.isdir(str(path)):
        n = len(list_image_files(path))
    else:
        n = len(open_source(path, array_key=array_key))
    return min(n, limit) if limit is not None else n


def reference_dataset(ref) -> dict | None:
    """The dataset a reference came from, where it says: a statistics file's provenance, a fetched folder's manifest."""
    from sidbench.data.dataset_fetch import dataset_record, read_folder_manifest

    if not isinstance(ref, (str, os.PathLike)):
        return None
    if is_stats_file(ref):
        return (stats_provenance(ref).get("input") or {}).get("dataset")
    if os.path.isdir(ref):
        doc = read_folder_manifest(ref)
        return dataset_record(doc, ref) if doc is not None else None
    return None


def check_prompt_pairing(source, n_images: int, prompts: list[str]) -> None:
    """Caption i goes with image i: {i:06d}.<ext> in a folder, row i of an array. Counts must match."""
    if len(prompts) != n_images:
        raise SidbenchError(f"{n_images} images but {len(prompts)} prompts: CLIP score pairs them one to one "
                            f"(use --n to evaluate the first N of both)" if len(prompts) > n_images else
                            f"{n_images} images but only {len(prompts)} prompts: CLIP score pairs them one to one")
    if getattr(source, "kind", None) == "folder":
        for i, f in enumerate(source.files[:n_images]):
            stem = os.path.splitext(os.path.relpath(f, source.path))[0]
            if stem != f"{i:06d}":
                raise SidbenchError(f"CLIP score pairs caption i with image {{i:06d}}.png; image {i} is {f}")


def _in_memory_as_array(x, cfg: EvalConfig, what: str):
    """Tensors and lists of images become one numpy NHWC array; paths, arrays NHWC and streams pass through."""
    if x is None or isinstance(x, (str, os.PathLike, ImageStream, GenerateConfig)):
        return x
    if is_in_memory(x):
        return as_image_array(x, layout=cfg.layout, what=what)
    raise SidbenchError(f"{what}: expected a folder, an array file, a statistics file, an array or tensor of "
                        f"images, or a GenerateConfig; got a {type(x).__name__}")


def _checked_prompt_list(prompts) -> list[str]:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise SidbenchError("prompt_list must be a list of strings (caption i pairs with image i)")
    bad = [i for i, p in enumerate(prompts) if not p.strip() or "\n" in p]
    if bad:
        raise SidbenchError(f"prompt_list: prompt {bad[0]} is empty or holds a newline")
    return list(prompts)


def _is_stats(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and is_stats_file(path)


def _open_stream(path, cfg: EvalConfig) -> ImageStream:
    """A folder, an image array (file or in memory), or a stream already open (images generated in memory)."""
    if isinstance(path, ImageStream):
        return path
    return open_source(path, value_range=cfg.value_range, array_key=cfg.array_key)


def _stream_pass(source: ImageStream, consumers: list, cfg: EvalConfig, *, limit: int | None, desc: str,
                 identity: dict) -> dict:
    """One pass over ``source`` (this process's shard of its first ``limit`` images) feeding every consumer.

    ``identity``: ``source.describe()``, computed once by the caller (it hashes an array's data)."""
    shard = distributed.process_shard()
    indices = select_indices(len(source), shard, limit)
    skipped = single_pass(source, consumers, indices, batch_size=cfg.batch_size, threads=cfg.threads,
                          skip_bad=cfg.skip_bad, progress=cfg.progress and distributed.is_main(), desc=desc)
    files = reduce.gather_skipped(skipped.files) if shard is not None else skipped.files
    for c in consumers:
        if isinstance(c, FeatureConsumer):
            if shard is not None:
                c.stats = reduce.all_reduce_stats(c.stats, [])[0]
            c.stats.meta["input"] = dict(identity, used=limit if limit is not None else len(source))
            c.stats.meta["shard"] = None
            c.stats.meta["skipped"] = len(files)
            if c.stats.n == 0:
                raise SidbenchError(f"no image of {getattr(source, 'path', None) or 'the input'} could be used "
                                    f"({len(files)} unreadable)")
        elif shard is not None:
            reduce.all_reduce_clip(c.scorer)
    return {"count": len(files), "files": files[:100]}


def _generated_side(images, cfg: EvalConfig, runners: dict, prompts: list[str] | None, n_gen: int, res: dict,
                    clip_scorer=None) -> dict:
    """The generated side in one pass: FID/KID statistics, PR features and the CLIP score together."""
    fid_runner = runners.get("fid")
    if _is_stats(images):
        others = [n for n in runners if n != "fid"]
        if others or cfg.clip or cfg.aesthetic or cfg.preference_scores:
            what = ", ".join(LABELS[n] for n in others) or "CLIP, aesthetic and preference scores"
            raise SidbenchError(f"{what} need the generated images, not the statistics file {images} (it holds "
                                f"only the FID extractor's statistics)")
        meta = stats_meta(fid_runner.extractor, fid_runner.preprocess)
        stats = load_checked_stats(str(images), meta, need_features=cfg.keep_generated_features, side="generated")
        if cfg.n is not None and cfg.n != stats.n:
            raise SidbenchError(f"{images}: statistics over {stats.n} images, but {cfg.n} were asked for")
        res["inputs"]["generated"] = {"kind": "stats", "path": os.path.abspath(str(images)), "n": stats.n,
                                      "made_from": stats.meta.get("input"), "skipped": stats.meta.get("skipped", 0)}
        return {"fid": stats}
    source = _open_stream(images, cfg)
    keep = {"fid": cfg.keep_generated_features, "dinov2": cfg.bootstrap > 0}  # the others keep features anyway
    features = {name: r.consumer(r.new_stats(keep.get(name, True))) for name, r in runners.items()}
    consumers = list(features.values())
    scorer = None
    if cfg.clip:
        check_prompt_pairing(source, n_gen, prompts)
        scorer = _clip_scorer(cfg, clip_scorer)
        consumers.append(ClipConsumer(scorer, prompts, keep_per_image=cfg.bootstrap > 0 or bool(cfg.per_sample)))
    aesthetic = None
    if cfg.aesthetic:
        from sidbench.eval.metrics.aesthetic import load_aesthetic_scorer

        aesthetic = AestheticConsumer(load_aesthetic_scorer(
            clip_weights=cfg.aesthetic_clip_weights, head_weights=cfg.aesthetic_head_weights,
            random_weights=cfg.random_weights, seed=cfg.weights_seed, device=cfg.device))
        consumers.append(aesthetic)
    paired = {}  # prompt-paired preference scores: name -> consumer
    if cfg.preference_scores:
        from sidbench.eval.metrics import preference as P

        if not cfg.clip:
            check_prompt_pairing(source, n_gen, prompts)
        if cfg.hps:
            paired["hps"] = ClipConsumer(P.load_hps_scorer(cfg.hps_version, weights=cfg.hps_weights,
                                                           random_weights=cfg.random_weights, seed=cfg.weights_seed,
                                                           device=cfg.device), prompts, keep_per_image=True)
        if cfg.pickscore:
            paired["pickscore"] = ClipConsumer(P.load_pickscore_scorer(
                weights=cfg.pickscore_weights, random_weights=cfg.random_weights, seed=cfg.weights_seed,
                device=cfg.device), prompts, keep_per_image=True)
        if cfg.image_reward:
            from sidbench.eval.metrics.image_reward import load_image_reward_scorer

            paired["image_reward"] = ClipConsumer(load_image_reward_scorer(
                weights=cfg.image_reward_weights, tokenizer=cfg.image_reward_tokenizer,
                random_weights=cfg.random_weights, seed=cfg.weights_seed, device=cfg.device), prompts,
                keep_per_image=True)
        consumers.extend(paired.values())
    diversity = None
    if cfg.images_per_prompt is not None:
        from sidbench.eval.metrics.lpips_diversity import LpipsDiversity, build_lpips

        if distributed.process_shard() is not None:
            raise SidbenchError("--images-per-prompt (LPIPS diversity) runs in one process: a prompt's images "
                                "would be split across shards")
        net, info = build_lpips(alexnet_weights=cfg.lpips_alexnet_weights, lin_weights=cfg.lpips_weights,
                                random_weights=cfg.random_weights, seed=cfg.weights_seed)
        diversity = LpipsDiversity(net, cfg.images_per_prompt, info, prompts, cfg.device, cfg.pre_resize)
        consumers.append(diversity)
    in_memory = getattr(source, "kind", None) == "generated in memory"
    identity = source.describe()
    skipped = _stream_pass(source, consumers, cfg, limit=cfg.n, identity=identity,
                           desc="generate + metrics" if in_memory else "generated images")
    if skipped["count"]:
        R.warn(res, f"generated: skipped {skipped['count']} unreadable file(s) (--skip-bad)")
    n_used = (cfg.n if cfg.n is not None else len(source)) - skipped["count"]
    res["inputs"]["generated"] = dict(identity, n=n_used, skipped=skipped["count"],
                                      skipped_files=skipped["files"], cache=None, cache_hit=False)
    if identity.get("prompts_truncated"):  # generated in memory from prompts a text encoder cut
        R.warn(res, "generated: " + truncation_warning(identity["prompts_truncated"]))
    out = {name: c.stats for name, c in features.items()}
    per_image = {}  # score name -> {image index: value}, over every process
    if scorer is not None:
        _record_clip(res, scorer)
        if cfg.bootstrap or cfg.per_sample:
            clip_c = next(c for c in consumers if isinstance(c, ClipConsumer))
            per_image["clip"] = clip_c.values
    if aesthetic is not None:
        if distributed.process_shard() is not None:
            reduce.all_reduce_sums(aesthetic.scorer)
        res["metrics"]["aesthetic"] = aesthetic.scorer.result()
        if aesthetic.scorer.info.get("random"):
            _mark_random(res, "the aesthetic predictor")
        per_image["aesthetic"] = aesthetic.values
    if diversity is not None:
        res["metrics"]["lpips_diversity"] = diversity.result(n_used + skipped["count"])
        if cfg.bootstrap:  # resampling prompts: a prompt's K images stay together
            from sidbench.eval.bootstrap import bootstrap_mean

            res["metrics"]["lpips_diversity"]["interval"] = dict(bootstrap_mean(
                [diversity.groups[g] for g in sorted(diversity.groups)], cfg.bootstrap, cfg.bootstrap_seed,
                cfg.confidence), method="percentile bootstrap over prompts")
        if diversity.info.get("random"):
            _mark_random(res, "the LPIPS network")
    for name, c in paired.items():
        if distributed.process_shard() is not None:
            reduce.all_reduce_sums(c.scorer)
        res["metrics"][name] = c.scorer.result()
        res["extractors"][name] = c.scorer.info
        if c.scorer.info.get("random"):
            _mark_random(res, f"the {name} model")
        per_image[name] = c.values
    if distributed.process_shard() is not None:
        per_image = {k: reduce.gather_values(v) for k, v in per_image.items()}
    if cfg.bootstrap:
        from sidbench.eval.bootstrap import bootstrap_mean

        for name, values in per_image.items():
            res["metrics"][name]["interval"] = bootstrap_mean([values[i] for i in sorted(values)], cfg.bootstrap,
                                                              cfg.bootstrap_seed, cfg.confidence)
    if cfg.per_sample:
        if not per_image:
            raise SidbenchError("--per-sample writes per-image scores: ask for one (--clip, --aesthetic, --hps, "
                                "--pickscore, --image-reward)")
        if distributed.is_main():
            from sidbench.eval.compare import write_per_sample

            files = [os.path.relpath(f, source.path) for f in source.files] if getattr(source, "files", None) else None
            first = next(iter(per_image.values()))
            path = write_per_sample(cfg.per_sample, sorted(first), prompts, files, per_image)
            res.setdefault("outputs", {})["per_sample"] = os.path.abspath(path)
    return out


def _cache_file(cfg: EvalConfig, desc: dict, meta: dict, used: int) -> Path:
    return cache_dir(cfg) / f"reference-{stats_cache_key(desc, meta, used)[:24]}.npz"


def _read_cache(cache_file: Path, res: dict) -> FeatureStats | None:
    """A cache entry's statistics; an unreadable entry (cut short, corrupt) is removed, to be recomputed."""
    try:
        return FeatureStats.load(cache_file)
    except SidbenchError as e:
        if distributed.is_main():
            cache_file.unlink(missing_ok=True)
        R.warn(res, f"the reference statistics cache entry {cache_file} was unreadable ({e}); removed and recomputed")
        return None


def _write_cache(stats: FeatureStats, cache_file: Path, res: dict) -> None:
    """Keep statistics for the next evaluation, if the cache folder takes them: a full disk costs only the reuse."""
    try:
        stats.save(cache_file)
    except WriteError as e:
        R.warn(res, f"could not write the reference statistics cache entry {cache_file} "
                    f"({e.reason}); the evaluation went on without caching")


def _reference_side(ref, cfg: EvalConfig, runners: dict, res: dict) -> dict:
    """The reference side: statistics files or cached statistics where they exist, the rest in one pass."""
    labels = {name: "reference" if name == "fid" else f"reference_{name}" for name in runners}
    out, todo = {}, {}
    if _is_stats(ref):
        for name, runner in runners.items():
            if name != "fid":
                raise SidbenchError(f"{LABELS[name]} needs the reference images, not the statistics file {ref} "
                                    f"(it holds the FID extractor's statistics; the other networks' features of the "
                                    f"reference images are cached automatically)")
            stats = load_checked_stats(str(ref), stats_meta(runner.extractor, runner.preprocess),
                                       need_features=cfg.kid, side="reference")
            if cfg.ref_n is not None and cfg.ref_n != stats.n:
                raise SidbenchError(f"{ref}: statistics over {stats.n} images, but {cfg.ref_n} were asked for")
            res["inputs"][labels[name]] = {"kind": "stats", "path": os.path.abspath(str(ref)), "n": stats.n,
                                           "made_from": stats.meta.get("input"), "skipped": stats.meta.get("skipped", 0)}
            out[name] = stats
        return out
    source = _open_stream(ref, cfg)
    desc = source.describe()
    used = cfg.ref_n if cfg.ref_n is not None else len(source)
    cacheable = cfg.use_cache and (desc.get("path") is not None or cfg.cache_in_memory)  # in memory: not unless asked
    for name, runner in runners.items():
        need_features = cfg.kid or not runner.moments
        cache_file = _cache_file(cfg, desc, stats_meta(runner.extractor, runner.preprocess), used) if cacheable else None
        stats = _read_cache(cache_file, res) if cache_file is not None and cache_file.is_file() else None
        if stats is not None:
            if not need_features or stats.features is not None:
                res["inputs"][labels[name]] = dict(desc, n=stats.n, skipped=stats.meta.get("skipped", 0),
                                                   cache=str(cache_file), cache_hit=True)
                out[name] = stats
                continue
        todo[name] = (runner.consumer(runner.new_stats(need_features)), cache_file)
    if todo:
        what = "reference images" + ("" if "fid" in todo else f" ({', '.join(todo)})")
        skipped = _stream_pass(source, [c for c, _ in todo.values()], cfg, limit=cfg.ref_n, desc=what, identity=desc)
        if skipped["count"]:
            R.warn(res, f"reference: skipped {skipped['count']} unreadable file(s) (--skip-bad)")
        for name, (consumer, cache_file) in todo.items():
            if cache_file is not None and distributed.is_main():
                _write_cache(consumer.stats, cache_file, res)
            res["inputs"][labels[name]] = dict(desc, n=consumer.stats.n, skipped=skipped["count"],
                                               skipped_files=skipped["files"],
                                               cache=str(cache_file) if cache_file else None, cache_hit=False)
            out[name] = consumer.stats
    return out


def evaluate(images, ref, cfg: EvalConfig | None = None, *, extractor: Extractor | None = None,
             out: str | None = None, save_stats: str | None = None, command: list[str] | None = None,
             subject: dict | None = None, clip_scorer=None, prompt_list: list[str] | None = None) -> dict:
    """Compare generated ``images`` with reference ``ref``; returns (and optionally writes) a results dict.

    ``images``: a folder, an .npy/.npz image array, a statistics .npz, an in-memory uint8 array, an open
    image stream, or a ``GenerateConfig`` (images generated in memory, never written). ``ref``: the same
    kinds except generated. Each side is read once, and that pass feeds FID/KID, precision/recall and CLIP.
    ``extractor``: inject any network (tests, the demo); otherwise built from the registry and local weights.
    ``clip_scorer``: a CLIP scorer already loaded (``load_clip_scorer``), reset and reused instead of loading one.
    ``subject``: what made the images (name, method, teacher, steps, guidance, kimg), for tables.
    ``prompt_list``: the prompts as a list in memory, instead of ``cfg.prompts`` (a file).
    Images in memory may also be torch tensors (any device), NCHW or NHWC (``cfg.layout``), or lists of images.
    """
    if out and out != "-":
        check_output(out, "--out")  # before hours of computing, not after
    if save_stats:
        check_output(save_stats, "--save-stats")
    cfg = resolved_device(cfg or EvalConfig())
    subject = dict(subject or {})
    if prompt_list is not None and cfg.prompts:
        raise SidbenchError("give the prompts once: a file (prompts) or a list (prompt_list), not both")
    images = _in_memory_as_array(images, cfg, "images")
    ref = _in_memory_as_array(ref, cfg, "ref")
    if isinstance(images, GenerateConfig):
        from sidbench.gen.generate import open_generated

        subject.setdefault("name", os.path.basename(os.path.normpath(images.generator or images.base)))
        gen_cfg = images
        images = open_generated(images)  # resolves a few-step generator's step count from its record
        subject.setdefault("steps", gen_cfg.sampling_steps)
    proto = protocols.get_protocol(cfg.protocol)
    if proto.name != "custom" and cfg.pre_resize is None:
        cfg = replace(cfg, pre_resize=proto.pre_resize)  # the protocol's choice unless the user overrides it
    cfg = resolved_mode(cfg, extractor)
    if (cfg.fid_infinity or cfg.vendi) and not cfg.fid:
        cfg = replace(cfg, fid=True)  # they read the FID features
    if not (cfg.needs_reference or cfg.clip or cfg.aesthetic or cfg.preference_scores or cfg.images_per_prompt):
        raise SidbenchError("nothing to compute: ask for --fid, --kid, --clip, --pr, --fd-dinov2, --cmmd, "
                            "--aesthetic, --hps, --pickscore, --image-reward and/or --images-per-prompt")
    from sidbench.data.prompts import list_md5, read_prompts

    prompts, prompts_md5, file_md5 = None, None, None  # the list's identity (line endings aside), the file's bytes
    if cfg.prompts:
        prompts = read_prompts(cfg.prompts)
        prompts_md5, file_md5 = list_md5(prompts), hashlib.md5(Path(cfg.prompts).read_bytes()).hexdigest()
    elif prompt_list is not None:
        prompts = _checked_prompt_list(prompt_list)
        prompts_md5 = list_md5(prompts)
    if prompts is None and getattr(images, "prompts", None) is not None:
        prompts = images.prompts  # generated in memory: the producer's own prompts
    for flag, on in (("--clip", cfg.clip), ("--hps", cfg.hps), ("--pickscore", cfg.pickscore),
                     ("--image-reward", cfg.image_reward)):
        if on and prompts is None:
            raise SidbenchError(f"{flag} needs the prompt list the images were made from (--prompts FILE)")
    n_gen = count_images(images, cfg.n, cfg.array_key)
    if cfg.needs_reference:
        if ref is None:
            raise SidbenchError("FID, KID, precision/recall, FD-DINOv2 and CMMD need a reference set (--ref)")
        n_ref = count_images(ref, cfg.ref_n, cfg.array_key)
        ref_origin = reference_dataset(ref)
    else:
        n_ref, ref_origin = None, None
    deviations = protocols.check(proto, n_gen=n_gen, n_ref=n_ref, fid_mode=cfg.mode, pre_resize=cfg.pre_resize,
                                 prompts_md5=prompts_md5, clip=cfg.clip, clip_variant=cfg.clip_variant,
                                 clip_model=cfg.clip_model or default_clip_model(cfg.clip_variant),
                                 random_weights=cfg.random_weights or (extractor is not None and extractor.is_random),
                                 ref_dataset=ref_origin["name"] if ref_origin else None)
    if deviations and not cfg.allow_deviation:
        raise SidbenchError(f"this run breaks protocol {proto.name}:\n  - " + "\n  - ".join(deviations)
                            + "\nFix it, or pass --allow-deviation to run anyway (the result is marked not comparable).")
    t0 = time.time()
    distributed.init_if_launched(device=cfg.device)
    preprocess = Preprocess(cfg.mode, cfg.pre_resize)
    res = R.new_results(protocol=cfg.protocol, command=command)
    res["provenance"]["device"] = describe_device(cfg.device)
    record = generation_record(images) if isinstance(images, (str, os.PathLike)) else None
    if record is not None:
        # A sidecar written before lists were identified line endings aside holds the file's md5
        if cfg.clip and prompts_md5 and record["prompts_md5"] not in (prompts_md5, file_md5):
            raise SidbenchError(f"{images} was generated from prompts with md5 {record['prompts_md5']} (its "
                                f"sidecar), not from {cfg.prompts} (md5 {prompts_md5}): CLIP would pair images "
                                f"with the wrong captions")
        subject.setdefault("steps", record["sampling_steps"])
    default_name = (os.path.basename(os.path.normpath(images)) if isinstance(images, (str, os.PathLike))
                    else "generated" if isinstance(images, ImageStream) else "array")
    res["subject"] = R.subject(**dict({"name": default_name}, **subject))
    res["config"] = {k: v for k, v in asdict(cfg).items() if k not in ("progress",)}
    res["protocol"]["definition"] = protocols.describe(proto)
    for d in deviations:
        R.mark_not_comparable(res, d)
    if prompts is not None:
        res["inputs"]["prompts"] = {"path": os.path.abspath(cfg.prompts) if cfg.prompts else None,
                                    "count": len(prompts), "md5": prompts_md5, "file_md5": file_md5,
                                    "distinct": len(set(prompts))}
    if ref_origin is not None:
        res["inputs"]["reference_dataset"] = ref_origin
    res["preprocessing"] = preprocess.describe()
    runners = {}
    if cfg.fid or cfg.kid:
        runners["fid"] = _fid_runner(cfg, extractor, preprocess, res)
    if cfg.pr:
        runners["pr"] = _pr_runner(cfg, preprocess, res)
    if cfg.fd_dinov2:
        runners["dinov2"] = _network_runner(cfg, "dinov2", cfg.dinov2, cfg.dinov2_weights, preprocess, res,
                                            resize=f"{cfg.dinov2_resize}-224", moments=True)
    if cfg.cmmd:
        runners["cmmd"] = _network_runner(cfg, "cmmd", cfg.cmmd_extractor, cfg.cmmd_weights, preprocess, res,
                                          resize=None, moments=False)
    gen = _generated_side(images, cfg, runners, prompts, n_gen, res, clip_scorer)
    if record is not None:
        res["inputs"]["generated"]["made_by"] = record  # the generator's sha256, sampler, seeds, prompts md5
        if record.get("prompts_truncated"):
            R.warn(res, "generated: " + truncation_warning(record["prompts_truncated"]) + " (its sidecar)")
    if "fid" in gen and save_stats and distributed.is_main():
        gen["fid"].save(save_stats)
    if runners:
        refs = _reference_side(ref, cfg, runners, res)
        if "fid" in runners:
            _fid_kid(gen["fid"], refs["fid"], cfg, res)
        if "pr" in runners:
            _precision_recall(gen["pr"], refs["pr"], cfg, res)
        if "dinov2" in runners:
            _fd_dinov2(gen["dinov2"], refs["dinov2"], cfg, res)
        if "cmmd" in runners:
            _cmmd(gen["cmmd"], refs["cmmd"], cfg, res)
    res["timing"] = {"seconds": round(time.time() - t0, 3)}
    if out and distributed.is_main():
        try:
            R.save(res, out)
        except WriteError as e:
            e.results = res  # the numbers are not lost with the file: the CLI still prints them
            raise
    return res


def _fid_runner(cfg: EvalConfig, extractor: Extractor | None, preprocess: Preprocess, res: dict) -> FeatureRunner:
    extractor = extractor or make_extractor(cfg)
    runner = FeatureRunner(extractor, preprocess, batch_size=cfg.batch_size, threads=cfg.threads,
                           channels_last=cfg.channels_last)
    res["extractors"]["fid"] = dict(extractor.describe(), channels_last=runner.channels_last)
    if extractor.is_random:
        _mark_random(res, "the feature extractor")
    return runner


def _pr_runner(cfg: EvalConfig, preprocess: Preprocess, res: dict) -> FeatureRunner:
    """VGG16 fc2 features (kept per image, no moments) after the protocol pre-resize; the net resizes to 224."""
    ext = build_extractor("vgg16-fc2", weights=cfg.pr_weights, random_weights=cfg.random_weights,
                          seed=cfg.weights_seed, device=cfg.device)
    runner = FeatureRunner(ext, Preprocess("inside-network", preprocess.pre_resize), batch_size=cfg.batch_size,
                           threads=cfg.threads, channels_last=cfg.channels_last, moments=False)
    res["extractors"]["pr"] = dict(ext.describe(), channels_last=runner.channels_last)
    if ext.is_random:
        _mark_random(res, "the precision/recall extractor")
    return runner


# What each feature runner serves, for messages.
LABELS = {"fid": "FID", "pr": "precision/recall", "dinov2": "FD-DINOv2", "cmmd": "CMMD"}
DINOV2_RESIZES = ("squash-pil", "squash-torch")


def _network_runner(cfg: EvalConfig, key: str, name: str, weights: str | None, preprocess: Preprocess, res: dict,
                    *, resize: str | None, moments: bool) -> FeatureRunner:
    """A feature network other than the FID one, with its own resize after the protocol pre-resize."""
    if key == "dinov2" and cfg.dinov2_resize not in DINOV2_RESIZES:
        raise SidbenchError(f"--dinov2-resize {cfg.dinov2_resize!r}: expected one of {', '.join(DINOV2_RESIZES)}")
    ext = build_extractor(name, weights=weights, random_weights=cfg.random_weights, seed=cfg.weights_seed,
                          device=cfg.device)
    resize = resize or get_spec(name).resize or "inside-network"
    runner = FeatureRunner(ext, Preprocess(resize, preprocess.pre_resize), batch_size=cfg.batch_size,
                           threads=cfg.threads, channels_last=False, moments=moments)
    res["extractors"][key] = dict(ext.describe(), preprocessing=runner.preprocess.describe())
    if ext.is_random:
        _mark_random(res, f"the {LABELS[key]} network")
    return runner


def _fd_dinov2(gen: FeatureStats, refs: FeatureStats, cfg: EvalConfig, res: dict) -> None:
    gen.compatible_with(refs, what="the generated and reference DINOv2 statistics")
    m = {"value": frechet_distance(gen.mean, gen.cov, refs.mean, refs.cov), "n_gen": gen.n, "n_ref": refs.n,
         "extractor": cfg.dinov2, "resize": cfg.dinov2_resize, "singular_covariance": gen.singular or refs.singular,
         "definition": "Fréchet distance of Gaussians fitted to DINOv2 post-LayerNorm CLS features (unbiased "
                       "covariance), the dgm-eval / EDM2 FD_DINOv2"}
    if cfg.bootstrap:
        from sidbench.eval.bootstrap import bootstrap_fd

        m["interval"] = bootstrap_fd(gen.ordered_features(), refs.mean, refs.cov, cfg.bootstrap, cfg.bootstrap_seed,
                                     cfg.confidence)
    res["metrics"]["fd_dinov2"] = m


def _cmmd(gen: FeatureStats, refs: FeatureStats, cfg: EvalConfig, res: dict) -> None:
    from sidbench.eval.metrics import cmmd as C

    gen.compatible_with(refs, what="the generated and reference CLIP embeddings")
    res["metrics"]["cmmd"] = {"value": C.cmmd(gen.ordered_features(), refs.ordered_features()), "n_gen": gen.n,
                              "n_ref": refs.n, "sigma": C.SIGMA, "scale": C.SCALE, "extractor": cfg.cmmd_extractor,
                              "estimator": "biased (V-statistic, diagonal included), as the reference code",
                              "definition": C.DEFINITION}
    if cfg.bootstrap:
        from sidbench.eval.bootstrap import bootstrap_cmmd

        res["metrics"]["cmmd"]["interval"] = bootstrap_cmmd(gen.ordered_features(), refs.ordered_features(),
                                                            cfg.bootstrap, cfg.bootstrap_seed, cfg.confidence)
    if cfg.cmmd_extractor != "clip-vit-l14-336":
        R.mark_not_comparable(res, f"CMMD on {cfg.cmmd_extractor}, not the published CLIP ViT-L/14@336px")


def _precision_recall(gen: FeatureStats, refs: FeatureStats, cfg: EvalConfig, res: dict) -> None:
    from sidbench.eval.metrics.prdc import precision_recall

    gen.compatible_with(refs, what="the generated and reference VGG features")
    res["metrics"]["pr"] = dict(precision_recall(refs.ordered_features(), gen.ordered_features(), k=cfg.pr_k,
                                                 density_coverage=cfg.density_coverage, device=cfg.device),
                                extractor="vgg16-fc2")


def _fid_kid(gen: FeatureStats, refs: FeatureStats, cfg: EvalConfig, res: dict) -> None:
    """FID / KID from the statistics of both sides (one extractor), into ``res``."""
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
    if cfg.fid and cfg.bootstrap:
        from sidbench.eval.bootstrap import bootstrap_fd

        res["metrics"]["fid"]["interval"] = bootstrap_fd(gen.ordered_features(), refs.mean, refs.cov, cfg.bootstrap,
                                                         cfg.bootstrap_seed, cfg.confidence)
    if cfg.fid_infinity:
        from sidbench.eval.metrics.fid_infinity import fid_infinity

        res["metrics"]["fid_infinity"] = dict(fid_infinity(gen.ordered_features(), refs.mean, refs.cov,
                                                           seed=cfg.bootstrap_seed), n_gen=gen.n, n_ref=refs.n)
    if cfg.vendi:
        from sidbench.eval.metrics.vendi import vendi_score

        res["metrics"]["vendi"] = {"value": vendi_score(gen.ordered_features()), "q": 1, "kernel": "cosine",
                                   "features": res["extractors"]["fid"].get("name"), "n": gen.n,
                                   "definition": "exp(entropy of the eigenvalues of K/n), Friedman & Dieng 2023"}
    if cfg.kid:
        res["metrics"]["kid"] = dict(kernel_inception_distance(
            gen.ordered_features(), refs.ordered_features(), num_subsets=cfg.kid_subsets,
            max_subset_size=cfg.kid_subset_size, seed=cfg.kid_seed), n_gen=gen.n, n_ref=refs.n)
        if R.kid_whole_set(res["metrics"]["kid"]):
            R.warn(res, R.kid_whole_set_warning(res["metrics"]["kid"]))


def compute_stats_file(images, out: str, cfg: EvalConfig | None = None, *, shard: tuple[int, int] | None = None,
                       extractor: Extractor | None = None) -> FeatureStats:
    """``sidbench stats compute``: statistics of one input (or one shard of it) written to ``out``.

    With ``cfg.protocol`` (not custom), the input must be that protocol's whole reference folder and the settings
    its own (:func:`protocol_stats_config`); the dataset a fetched folder holds is recorded in the provenance.
    """
    check_output(out, "--out")
    cfg = cfg or EvalConfig()
    dataset = None
    if cfg.protocol != "custom":
        dataset = protocols.reference_folder(protocols.get_protocol(cfg.protocol), images)
        cfg = protocol_stats_config(cfg)
    cfg = resolved_mode(resolved_device(cfg), extractor)
    distributed.init_if_launched(device=cfg.device)
    extractor = extractor or make_extractor(cfg)
    runner = FeatureRunner(extractor, Preprocess(cfg.mode, cfg.pre_resize), batch_size=cfg.batch_size,
                           threads=cfg.threads, channels_last=cfg.channels_last)
    source = open_source(images, value_range=cfg.value_range, array_key=cfg.array_key)
    stats, _ = compute_source_stats(source, runner, limit=cfg.n, shard=shard, keep_features=cfg.kid,
                                    skip_bad=cfg.skip_bad, progress=cfg.progress)
    if dataset is not None:
        stats.meta["input"]["dataset"] = dataset
    stats.meta["device"] = describe_device(extractor.device)  # where the features were computed
    if distributed.is_main():
        stats.save(out)
    return stats


def protocol_stats_config(cfg: EvalConfig) -> EvalConfig:
    """A protocol's reference statistics: its pre-resize, FID mode and extractor, over the whole set (no --n)."""
    proto = protocols.get_protocol(cfg.protocol)
    wanted = default_fid_extractor(proto.fid_mode)
    for flag, given, own in (("--pre-resize", cfg.pre_resize, proto.pre_resize), ("--mode", cfg.mode, proto.fid_mode),
                             ("--extractor", cfg.extractor, wanted)):
        if given is not None and given != own:
            raise SidbenchError(f"{flag} {given} breaks protocol {proto.name}, which uses {own}; leave {flag} out")
    if cfg.n is not None:
        raise SidbenchError(f"--n {cfg.n}: the {proto.name} reference statistics are over the whole set; leave --n out")
    return replace(cfg, pre_resize=proto.pre_resize, mode=proto.fid_mode)


def merge_stats_files(paths: list[str], out: str) -> FeatureStats:
    """``sidbench stats merge``: shard statistics -> the statistics of their union (exactly)."""
    check_output(out, "--out")
    merged = FeatureStats.merged([FeatureStats.load(p) for p in paths])
    merged.save(out)
    return merged
