"""Named distillation settings: the published ones, and starting points where the papers give no full recipe.

``--preset NAME`` sets these below a config file and the flags (either still wins). A preset whose teacher is
one model names it (``base``: a short name of ``sidbench.gen.teachers``), so ``--preset sd15-lsg1.5`` needs no
``--base``; sana-start and sd3-start fit several sizes and leave it to ``--base``. Each names its source;
"starting point" means the values come from the authors' released code or are carried over from SiD-LSG, not
from a table of the paper (the SiD-DiT and few-step SiD papers' method sections could not be read here: see
docs/spec/sid-flow-matching.md, sections 0 and 7).
"""
from __future__ import annotations

from sidbench.core.errors import SidbenchError

# SiD-DiT code (apple-aiml-research/ml-sid-dit @ 9596ed92, run_sid_dit.sh and its CLI): common to its RF teachers.
_SID_DIT = {"t_init": 999, "t_min": 0, "t_max": 999, "t_sampling": "logit-normal", "t_logit_mean": 0.6931471805599453,
            "t_logit_std": 1.6, "gen_weighting": "1-minus-sigma", "alpha": 1.0, "lr_gen": 5e-6, "lr_fake": 5e-6,
            "batch": 256, "prompt_dropout": 0.0, "adam_beta1": 0.0, "adam_beta2": 0.999, "precision": "bf16",
            "grad_checkpointing": True, "duration_kimg": 1000.0}

PRESETS: dict[str, dict] = {
    # SiD-LSG, arXiv 2406.01561, Table 1 / reference code: SD1.5, k = 1.5 everywhere, the FID 8.15 run (18,789 kimg).
    "sd15-lsg1.5": {"base": "sd15", "lsg": 1.5, "t_init": 625, "alpha": 1.0, "lr_gen": 1e-6, "lr_fake": 1e-6, "batch": 512,
                    "duration_kimg": 18789.0},
    # SiD-LSG, arXiv 2406.01561: SD1.5 with k = 4.5 (FID 16.59, CLIP 0.317), otherwise as above.
    "sd15-lsg4.5": {"base": "sd15", "lsg": 4.5, "t_init": 625, "alpha": 1.0, "lr_gen": 1e-6, "lr_fake": 1e-6, "batch": 512},
    # SiD-LSG, arXiv 2406.01561: SD2.1-base with k = 2 (the same learning rates and batch as SD1.5).
    "sd21base-lsg2": {"base": "sd21-base", "lsg": 2.0, "t_init": 625, "alpha": 1.0, "lr_gen": 1e-6, "lr_fake": 1e-6, "batch": 512},
    # Starting point for SDXL (few-step SiD, arXiv 2505.12674: its recipe not read here). SiD-LSG's values, with
    # the generator started from t = 999 as the SiD few-step scripts do for their DDPM teachers.
    "sdxl-start": {"base": "sdxl", "lsg": 1.5, "t_init": 999, "alpha": 1.0, "lr_gen": 1e-6, "lr_fake": 1e-6, "batch": 512,
                   "precision": "bf16", "grad_checkpointing": True},
    # Starting points from the SiD-DiT code (arXiv 2509.25127), one step (the code trains four).
    "sana-start": {**_SID_DIT, "lsg": 4.5},                   # its SANA 600M launch script: CFG 4.5 x 3
    "sd3-start": {**_SID_DIT, "lsg": 4.5},                    # "the same hyperparameters" (its README); k assumed
    "flux-start": {**_SID_DIT, "base": "flux-dev", "lsg": 1.0, "embedded_guidance": 3.5},  # guidance-distilled: the embedding, no CFG
}


def describe_presets() -> str:
    """The presets for help text, each with its teacher where it names one: "sd15-lsg1.5 (teacher sd15), ..."."""
    return ", ".join(n + (f" (teacher {v['base']})" if v.get("base") else "") for n, v in PRESETS.items())


def preset_values(name: str) -> dict:
    if name not in PRESETS:
        raise SidbenchError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
