"""The Python API in a few lines: ``sidbench.evaluate`` and one ``compute_*`` function per metric family.

Every function is ``sidbench eval`` underneath (``sidbench.eval.api.evaluate``): same single pass, same
results schema, same protocol checks. Inputs (either side): a folder, an .npy/.npz array file, a statistics
file, an array or torch tensor of images (NHWC or NCHW; uint8 0..255, or float with ``value_range``), a list
of images, or a ``GenerateConfig`` (a generator sampled in memory). Settings are ``EvalConfig``'s fields by
name (``mode``, ``pre_resize``, ``random_weights``, ``device``, ...); a misspelt one is an error.
Problems that weaken a number go through Python's ``warnings`` (``SidbenchWarning``) and into the results.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Sequence

from sidbench.core.errors import SidbenchError
from sidbench.eval.api import EvalConfig
from sidbench.eval.api import evaluate as _evaluate
from sidbench.eval.extractors.registry import Extractor

_SETTINGS = {f.name for f in fields(EvalConfig)}


def _config(settings: dict) -> EvalConfig:
    unknown = sorted(set(settings) - _SETTINGS)
    if unknown:
        raise SidbenchError(f"unknown setting(s) {', '.join(unknown)}; the settings are EvalConfig's fields: "
                            f"{', '.join(sorted(_SETTINGS))}")
    settings.setdefault("progress", False)  # in a notebook or a loop, no bars unless asked
    return EvalConfig(**settings)


def evaluate(images, ref=None, *, prompts: str | Sequence[str] | None = None, out: str | None = None,
             subject: dict | None = None, extractor: str | Extractor | None = None, **settings) -> dict:
    """Metrics of ``images`` against ``ref`` as a results dict (the schema ``sidbench eval --out`` writes).

    ``fid=True`` by default; ask for ``kid=True``, ``clip=True`` (needs ``prompts``: a file or a list, caption
    i with image i) and ``pr=True``. ``extractor``: a registry name, or any ``Extractor`` to inject.
    ``out``: also write the results JSON there (atomically).
    """
    if isinstance(extractor, str):
        settings["extractor"], extractor = extractor, None
    prompt_list = None
    if prompts is not None and not isinstance(prompts, str):
        prompt_list = list(prompts)
    elif prompts is not None:
        settings["prompts"] = prompts
    cfg = _config(settings)
    return _evaluate(images, ref, cfg, extractor=extractor, out=out, subject=subject, prompt_list=prompt_list,
                     command=["python", "sidbench.evaluate"])


def _only(metric: str, settings: dict) -> dict:
    for name in ("fid", "kid", "clip", "pr"):
        if name in settings and name != metric:
            raise SidbenchError(f"compute_{metric}: ask for {name} with sidbench.evaluate(...), not here")
        settings[name] = name == metric
    return settings


def compute_fid(images, ref, **settings) -> float:
    """FID of ``images`` against ``ref`` (clean-fid's definition and numbers by default)."""
    return evaluate(images, ref, **_only("fid", settings))["metrics"]["fid"]["value"]


def compute_kid(images, ref, **settings) -> float:
    """KID (mean over subsets, raw, not x10^3) of ``images`` against ``ref``; ``evaluate(kid=True)`` gives the std."""
    return evaluate(images, ref, **_only("kid", settings))["metrics"]["kid"]["mean"]


def compute_clip_score(images, prompts: str | Sequence[str], **settings) -> float:
    """CLIP score of image i against caption i (GigaGAN / SiD-LSG definition unless ``clip_variant``)."""
    return evaluate(images, None, prompts=prompts, **_only("clip", settings))["metrics"]["clip"]["value"]


def compute_precision_recall(images, ref, **settings) -> dict:
    """Improved precision and recall (pr50k3: VGG16 fc2, k=3) as {"precision", "recall", ...}."""
    return evaluate(images, ref, **_only("pr", settings))["metrics"]["pr"]
