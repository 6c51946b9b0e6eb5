"""``sidbench distill``: one flag per ``DistillConfig`` field, built from the fields' own metadata.

Names, types, defaults and help come from the dataclass (``distill.config.setting``): nothing is written
twice, and a field added there is a flag here. ``Optional[X]`` fields take X; ``list[X]`` fields repeat.
"""
from __future__ import annotations

import inspect
import types
import typing
from dataclasses import MISSING, fields
from typing import Annotated, Optional

import typer

from distill.config import DistillConfig
from sidbench.cli.console import console, user_errors
from sidbench.core.errors import SidbenchError

SCALARS = (bool, int, float, str)


def _flag_type(hint) -> tuple[type, bool]:
    """(scalar type, is a list) of a field's annotation; Optional is unwrapped (None stays "not given")."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        (inner,) = typing.get_args(hint)
        return inner, True
    if hint not in SCALARS:
        raise TypeError(f"no flag type for annotation {hint!r}")
    return hint, False


def config_options(cls) -> list[inspect.Parameter]:
    """Keyword parameters (typer options, default None = not given) for every field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in fields(cls):
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text: declare it with setting(default, help)")
        typ, is_list = _flag_type(hints[f.name])
        name = f.name.replace("_", "-")
        decl = [f"--{name}/--no-{name}"] if typ is bool else [f"--{name}"]
        default = f.default if f.default is not MISSING else f.default_factory()
        shown = "none" if default is None else ",".join(map(str, default)) if is_list else repr(default)
        help_text = f.metadata["help"] + (" (repeat the flag for several)" if is_list else "") + f" [default: {shown}]"
        annotation = Optional[list[typ]] if is_list else Optional[typ]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            annotation, typer.Option(*decl, help=help_text, show_default=False)]))
    return params


def _verb_options() -> list[inspect.Parameter]:
    """Flags of the verb itself, not fields: the config file, the presets, resume and quiet."""
    def opt(name, annotation, default, *decl, help):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[annotation, typer.Option(*decl, help=help)])

    return [
        opt("config", Optional[str], None, "--config", help="TOML/YAML/JSON file of settings; flags override it."),
        opt("lsg", Optional[float], None, "--lsg", help="LSG preset: k1 = k2 = k3 = k4 = K (per-scale flags still win)."),
        opt("guidance_interval", Optional[str], None, "--guidance-interval",
            help="T_LO,T_HI: apply k1, k2 and k4 only at training timesteps in [T_LO, T_HI] (scale 1 elsewhere; "
                 "beyond the paper, after Kynkaanniemi et al. 2024); per-scale --cfg-*-interval flags still win."),
        opt("resume", str, "auto", "--resume", help="auto (latest checkpoint in the run folder, if any) | none | a checkpoint path."),
        opt("quiet", bool, False, "--quiet", "-q", help="No progress bar."),
    ]


def distill_cmd(**kw):
    """Distil a Stable Diffusion teacher into a one-step generator with SiD-LSG (resumable)."""
    from distill.config import resolve
    from distill.loop import train

    config, lsg, resume, quiet = kw.pop("config"), kw.pop("lsg"), kw.pop("resume"), kw.pop("quiet")
    with user_errors():
        cfg = resolve(config, kw, lsg=lsg)
        missing = [k for k in ("base", "prompts", "run_dir") if not getattr(cfg, k)]
        if missing:
            raise SidbenchError("missing required setting(s): " + ", ".join("--" + k.replace("_", "-") for k in missing))
        console.print("[bold]resolved config[/]")
        console.print_json(data=cfg.to_dict())
        trainer = train(cfg, resume=resume, progress=not quiet)
    console.print(f"done: {trainer.iteration} iterations, {trainer.cur_nimg / 1000:g} kimg; "
                  f"EMA snapshot in {cfg.run_dir}/snapshots/")


distill_cmd.__signature__ = inspect.Signature(_verb_options() + config_options(DistillConfig))
