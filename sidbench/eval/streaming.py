"""Stateful metrics for training loops, in the manner of torchmetrics: ``update`` / ``compute`` / ``reset``.

Each object holds the same ``FeatureStats`` (and CLIP sums) as ``sidbench eval``, fed by the same
preprocessing and extractor, so ``FID().update(a, real=False); .update(b, real=True); .compute()`` equals
``sidbench eval --images a --ref b`` on the same images. Under ``torch.distributed`` every process updates its
own share and ``compute()`` all-reduces the float64 sums (``sync=False`` to skip); ``merge`` adds another
object's state (e.g. from a worker) exactly.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from sidbench.core.device import AUTO
from sidbench.core.errors import SidbenchError, SidbenchWarning
from sidbench.data.images import as_image_array, to_uint8
from sidbench.data.preprocess import Preprocess
from sidbench.eval import reduce
from sidbench.eval.extractors.registry import Extractor, build_extractor, default_fid_extractor
from sidbench.eval.features import FeatureRunner
from sidbench.eval.stats import FeatureStats

__all__ = ["FID", "KID", "PrecisionRecall", "CLIPScore"]


def _as_uint8(images, value_range: str | None, layout: str | None) -> np.ndarray:
    """Any batch in memory (tensor on any device, array, list; NCHW or NHWC) as uint8 NHWC."""
    return to_uint8(as_image_array(images, layout=layout), value_range, what="images")


class _FeatureMetric:
    """Real and generated FeatureStats from one extractor; subclasses say what ``compute`` returns."""

    _keep_features = False

    def __init__(self, runner: FeatureRunner, *, value_range: str | None, layout: str | None):
        self.runner, self.value_range, self.layout = runner, value_range, layout
        self.reset(real=True)

    # -- state ------------------------------------------------------------------------------------
    def reset(self, real: bool = True) -> None:
        """Forget the generated images (and the real ones too unless ``real=False``: keep a fixed reference)."""
        self.fake = self.runner.new_stats(self._keep_features)
        if real or not hasattr(self, "real"):
            self.real = self.runner.new_stats(self._keep_features)

    @torch.no_grad()
    def update(self, images, real: bool) -> None:
        """Add a batch: uint8 (0..255) or float (with ``value_range``) images, NCHW or NHWC, any device."""
        batch = _as_uint8(images, self.value_range, self.layout)
        stats = self.real if real else self.fake
        consumer = self.runner.consumer(stats)  # the eval pass's own consumer: same resize, network, sums
        for start in range(0, len(batch), self.runner.batch_size):
            part = batch[start:start + self.runner.batch_size]
            consumer.consume(list(range(stats.n, stats.n + len(part))), [consumer.prepare(im) for im in part])

    def load_reference(self, path: str) -> None:
        """Use a statistics file (``sidbench stats compute`` or the eval cache) as the real side."""
        stats = FeatureStats.load(path)
        self.runner.new_stats(False).compatible_with(stats, what=f"{path} and this metric's extractor")
        if self._keep_features and stats.features is None:
            raise SidbenchError(f"{path} holds no per-image features, which {type(self).__name__} needs")
        self.real = stats

    def merge(self, other: "_FeatureMetric") -> "_FeatureMetric":
        """Add ``other``'s images to this one's (same extractor and settings); returns self."""
        if type(other) is not type(self):
            raise SidbenchError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        self.real = self.real.extended(other.real)
        self.fake = self.fake.extended(other.fake)
        return self

    def to(self, device: str | torch.device) -> "_FeatureMetric":
        ext = self.runner.extractor
        ext.device = torch.device(device)
        if isinstance(ext.module, torch.nn.Module):
            ext.module.to(ext.device)
        return self

    @property
    def device(self) -> torch.device:
        return self.runner.extractor.device

    def _synced(self, sync: bool) -> tuple[FeatureStats, FeatureStats]:
        if sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return reduce.all_reduce_stats(self.fake, [])[0], reduce.all_reduce_stats(self.real, [])[0]
        return self.fake, self.real

    def _both(self, sync: bool) -> tuple[FeatureStats, FeatureStats]:
        fake, real = self._synced(sync)
        for side, s in (("generated", fake), ("real", real)):
            if s.n < 2:
                raise SidbenchError(f"{type(self).__name__}: {s.n} {side} image(s) so far; update(images, "
                                    f"real={side == 'real'}) with at least 2 first")
        return fake, real


def _fid_runner(extractor, mode, pre_resize, weights, random_weights, seed, device, batch_size) -> FeatureRunner:
    from sidbench.eval.api import EvalConfig, resolved_mode

    given = extractor if isinstance(extractor, Extractor) else None
    mode = resolved_mode(EvalConfig(mode=mode, extractor=None if given else extractor), given).mode  # as eval does
    if given is None:
        extractor = build_extractor(extractor or default_fid_extractor(mode), mode=mode, weights=weights,
                                    random_weights=random_weights, seed=seed, device=device)
    return FeatureRunner(extractor, Preprocess(mode, pre_resize), batch_size=batch_size)


class FID(_FeatureMetric):
    """Fréchet Inception Distance, streaming (float64 sums: memory O(d^2) whatever N).

    ``extractor``: a registry name or an ``Extractor`` (default: clean-fid's Inception for ``mode``).
    """

    def __init__(self, *, mode: str = "clean", pre_resize: int | None = None, extractor: str | Extractor | None = None,
                 weights: str | None = None, random_weights: bool = False, seed: int = 0, device: str = AUTO,
                 value_range: str | None = None, layout: str | None = None, batch_size: int = 32):
        runner = _fid_runner(extractor, mode, pre_resize, weights, random_weights, seed, device, batch_size)
        super().__init__(runner, value_range=value_range, layout=layout)

    def compute(self, sync: bool = True) -> float:
        from sidbench.eval.metrics.fid import frechet_distance

        fake, real = self._both(sync)
        if fake.singular or real.singular:
            warnings.warn(f"FID from {fake.n} generated and {real.n} real images, not above the feature dimension "
                          f"({fake.dim}): the covariance is singular and FID is biased upward", SidbenchWarning,
                          stacklevel=2)
        return frechet_distance(fake.mean, fake.cov, real.mean, real.cov)


class KID(FID):
    """Kernel Inception Distance (cubic polynomial kernel, unbiased MMD^2 over subsets); keeps per-image features."""

    _keep_features = True

    def __init__(self, *, subsets: int = 100, subset_size: int = 1000, kid_seed: int = 0, **kw):
        self.subsets, self.subset_size, self.kid_seed = subsets, subset_size, kid_seed
        super().__init__(**kw)

    def compute(self, sync: bool = True) -> tuple[float, float]:
        """(mean, std) over the subsets, raw (not x10^3)."""
        from sidbench.eval.metrics.kid import kernel_inception_distance

        fake, real = self._both(sync)
        r = kernel_inception_distance(fake.ordered_features(), real.ordered_features(), num_subsets=self.subsets,
                                      max_subset_size=self.subset_size, seed=self.kid_seed)
        if r["subset_size"] >= min(fake.n, real.n):
            warnings.warn(f"KID subsets of {r['subset_size']} hold every image ({fake.n} generated, {real.n} real): "
                          f"the std over subsets is 0 and says nothing about uncertainty", SidbenchWarning, stacklevel=2)
        return r["mean"], r["std"]


class PrecisionRecall(_FeatureMetric):
    """Improved precision/recall (Kynkäänniemi et al. 2019; NVIDIA pr50k3 semantics) on VGG16 fc2 features."""

    _keep_features = True

    def __init__(self, *, k: int = 3, pre_resize: int | None = None, weights: str | None = None,
                 random_weights: bool = False, seed: int = 0, device: str = AUTO, value_range: str | None = None,
                 layout: str | None = None, batch_size: int = 32, density_coverage: bool = False):
        ext = build_extractor("vgg16-fc2", weights=weights, random_weights=random_weights, seed=seed, device=device)
        runner = FeatureRunner(ext, Preprocess("inside-network", pre_resize), batch_size=batch_size, moments=False)
        self.k, self.density_coverage = k, density_coverage
        super().__init__(runner, value_range=value_range, layout=layout)

    def compute(self, sync: bool = True) -> dict:
        from sidbench.eval.metrics.prdc import precision_recall

        fake, real = self._both(sync)
        return precision_recall(real.ordered_features(), fake.ordered_features(), k=self.k,
                                density_coverage=self.density_coverage, device=str(self.device))


class CLIPScore:
    """CLIP score of images against their prompts (the GigaGAN / SiD-LSG definition by default)."""

    def __init__(self, *, variant: str = "gigagan", model: str | None = None, weights: str | None = None,
                 random_weights: bool = False, seed: int = 0, device: str = AUTO, value_range: str | None = None,
                 layout: str | None = None, scorer=None):
        from sidbench.eval.metrics.clip_score import load_clip_scorer

        self.scorer = scorer or load_clip_scorer(variant, model, weights=weights, random_weights=random_weights,
                                                 seed=seed, device=device)
        self.value_range, self.layout = value_range, layout
        self.reset()

    def reset(self) -> None:
        self.scorer.reset()

    @torch.no_grad()
    def update(self, images, prompts: Sequence[str]) -> None:
        batch = _as_uint8(images, self.value_range, self.layout)
        if isinstance(prompts, str):
            prompts = [prompts]
        self.scorer.update(list(batch), list(prompts))

    def to(self, device: str | torch.device) -> "CLIPScore":
        self.scorer.device = torch.device(device)
        self.scorer.model.to(self.scorer.device)
        return self

    def merge(self, other: "CLIPScore") -> "CLIPScore":
        self.scorer.total += other.scorer.total
        self.scorer.n += other.scorer.n
        self.scorer.truncated += other.scorer.truncated
        return self

    def compute(self, sync: bool = True) -> float:
        if sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            saved = (self.scorer.total, self.scorer.n, self.scorer.truncated)
            reduce.all_reduce_clip(self.scorer)
            value = self.scorer.result()["value"]
            self.scorer.total, self.scorer.n, self.scorer.truncated = saved
            return value
        return self.scorer.result()["value"]
