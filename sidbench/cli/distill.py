"""``sidbench distill``: flags generated from DistillConfig (one source of truth for names, types, help)."""
from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from distill.config import DistillConfig
from sidbench.core.errors import SidbenchError

console = Console()


def _field_help() -> dict[str, str]:
    """The one-line comment after each field in config.py is its --help text."""
    import distill.config

    src = Path(distill.config.__file__).read_text(encoding="utf-8")
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s{4}(\w+): [^=]+=[^#\n]*#(.*)$", src, re.M)}


def _params() -> list[inspect.Parameter]:
    helps = _field_help()
    params = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Option("--config", help="TOML/YAML/JSON file of settings; flags override it.")]),
        inspect.Parameter("lsg", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[float], typer.Option("--lsg", help="LSG preset: k1 = k2 = k3 = k4 = K (per-scale flags still win).")]),
        inspect.Parameter("guidance_interval", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Option("--guidance-interval", help="T_LO,T_HI: apply k1, k2 and k4 only at training "
                                        "timesteps in [T_LO, T_HI] (scale 1 elsewhere; beyond the paper, after "
                                        "Kynkaanniemi et al. 2024); per-scale --cfg-*-interval flags still win.")]),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default="auto", annotation=Annotated[
            str, typer.Option("--resume", help="auto (latest checkpoint in the run folder, if any) | none | a checkpoint path.")]),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option("--quiet", "-q", help="No progress bar.")]),
    ]
    for f in fields(DistillConfig):
        flag = "--" + f.name.replace("_", "-")
        typ = {"bool": bool, "int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
        decl = f"{flag}/--no-{f.name.replace('_', '-')}" if typ is bool else flag
        default = f.default if f.default is not MISSING else None
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[typ], typer.Option(decl, help=f"{helps.get(f.name, '')} [default: {default!r}]",
                                        show_default=False)]))
    return params


def distill_cmd(**kw):
    """Distil a Stable Diffusion teacher into a one-step generator with SiD-LSG (resumable)."""
    from distill.config import resolve
    from distill.loop import train

    config, lsg, resume, quiet = kw.pop("config"), kw.pop("lsg"), kw.pop("resume"), kw.pop("quiet")
    try:
        cfg = resolve(config, kw, lsg=lsg)
        missing = [k for k in ("base", "prompts", "run_dir") if not getattr(cfg, k)]
        if missing:
            raise SidbenchError("missing required setting(s): " + ", ".join("--" + k.replace("_", "-") for k in missing))
        console.print("[bold]resolved config[/]")
        console.print_json(data=cfg.to_dict())
        trainer = train(cfg, resume=resume, progress=not quiet)
    except SidbenchError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2)
    console.print(f"done: {trainer.iteration} iterations, {trainer.cur_nimg / 1000:g} kimg; "
                  f"EMA snapshot in {cfg.run_dir}/snapshots/")


distill_cmd.__signature__ = inspect.Signature(_params())
