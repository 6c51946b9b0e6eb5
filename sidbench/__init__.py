"""sidbench: SiD-LSG distillation and reproducible text-to-image evaluation.

The Python API (see the README's "Python API")::

    import sidbench
    fid = sidbench.compute_fid("generated/", "reference/")
    res = sidbench.evaluate("generated/", "reference/", kid=True, clip=True, prompts="prompts.txt")

and, inside a training loop, the stateful metrics ``sidbench.FID``, ``KID``, ``PrecisionRecall`` and
``CLIPScore`` (``update`` / ``compute`` / ``reset``). Names load on first use, so ``import sidbench`` is cheap.
"""
from sidbench.core import _tvguard  # noqa: F401  (must run before anything imports torchvision)

__version__ = "0.1.0"

# public name -> module that defines it (PEP 562 lazy attributes)
_EXPORTS = {
    "evaluate": "sidbench.api", "compute_fid": "sidbench.api", "compute_kid": "sidbench.api",
    "compute_clip_score": "sidbench.api", "compute_precision_recall": "sidbench.api",
    "FID": "sidbench.eval.streaming", "KID": "sidbench.eval.streaming",
    "PrecisionRecall": "sidbench.eval.streaming", "CLIPScore": "sidbench.eval.streaming",
    "EvalConfig": "sidbench.eval.api", "GenerateConfig": "sidbench.gen.generate",
    "FeatureStats": "sidbench.eval.stats", "Extractor": "sidbench.eval.extractors.registry",
    "SidbenchError": "sidbench.core.errors", "SidbenchWarning": "sidbench.core.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sidbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
