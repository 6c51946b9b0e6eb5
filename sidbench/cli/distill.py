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
from rich.markup import escape

from distill.config import DistillConfig
from distill.presets import describe_presets
from sidbench.cli.console import console, user_errors
from sidbench.cli.options import Offline
from sidbench.core.errors import SidbenchError
from sidbench.core.threads import set_threads

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
    """Keyword parameters (typer options, default None = not given) for every field of a config dataclass.

    The help shows each field's real default (``[default: 979]``), its panel, and ``[a|b]`` for choices."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in fields(cls):
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text: declare it with setting(default, help)")
        typ, is_list = _flag_type(hints[f.name])
        name = f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()
        decl = [f"--{name}"]  # a bool is a plain flag, as in diffusers' scripts (every bool field defaults to off)
        if typ is bool and default:
            raise TypeError(f"{cls.__name__}.{f.name} defaults to True: a flag could not turn it off")
        shown = ("none" if default is None or default == "" else ",".join(map(str, default)) if is_list
                 else str(default))
        help_text = f.metadata["help"] + (" (repeat the flag for several)" if is_list else "")
        if typ is not bool:
            help_text += " " + escape(f"[default: {shown}]")  # literal brackets, not rich markup
        choices = f.metadata.get("choices")
        scalar = typing.Literal[tuple(choices)] if choices else typ
        annotation = Optional[list[scalar]] if is_list else Optional[scalar]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            annotation, typer.Option(*decl, help=help_text, show_default=False, metavar=f.metadata.get("metavar"),
                                     rich_help_panel=f.metadata.get("panel"))]))
    return params


def _verb_options() -> list[inspect.Parameter]:
    """Flags of the verb itself, not fields: the config file, the presets, resume, threads, quiet and offline."""
    def opt(name, annotation, default, *decl, help, metavar=None, panel="Run"):
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[
            annotation, typer.Option(*decl, help=help, metavar=metavar, rich_help_panel=panel)])

    return [
        opt("config", Optional[str], None, "--config", metavar="PATH",
            help="TOML/YAML/JSON file of settings; flags override it."),
        opt("preset", Optional[str], None, "--preset", metavar="NAME",
            help="Published settings or a starting point (below --config and flags): " + describe_presets() + "."),
        opt("lsg", Optional[float], None, "--lsg", panel="Guidance (LSG)",
            help="LSG preset: k1 = k2 = k3 = k4 = K (per-scale flags still win)."),
        opt("guidance", Optional[str], None, "--guidance", metavar="STRATEGY[:K]", panel="Guidance (LSG)",
            help="A guidance strategy over the four scales: lsg:K (k1 = k2 = k4 = K), teacher-cfg:K (k4 = K only), "
                 "zero-cfg (no CFG, text-free fake score), anti-cfg:K (k2 = -K). Per-scale flags still win."),
        opt("guidance_interval", Optional[str], None, "--guidance-interval", metavar="T_LO,T_HI", panel="Guidance (LSG)",
            help="Apply k1, k2 and k4 only at training timesteps in T_LO..T_HI (scale 1 elsewhere; beyond the "
                 "paper, after Kynkaanniemi et al. 2024); per-scale --cfg-*-interval flags still win."),
        opt("plan", bool, False, "--plan", panel="Run",
            help="Print the memory per device this run needs (meta-device architecture, activations measured on "
                 "fake tensors) and stop; --base names a teacher (sd15, sdxl, sd3.5-large, flux-dev, ...: "
                 "`sidbench models list`), an architecture, a hub id or a diffusers folder."),
        opt("device_memory", Optional[float], None, "--device-memory", metavar="GIB", panel="Run",
            help="With --plan: refuse a plan above this memory per device, naming a setup that fits."),
        opt("processes", Optional[int], None, "--processes", metavar="N", panel="Run",
            help="With --plan: the process count to plan for (default: the launcher's WORLD_SIZE, else 1)."),
        opt("resume", str, "auto", "--resume", metavar="auto|none|PATH",
            help="auto: the run folder's latest checkpoint, if any; none: start afresh; or a checkpoint file."),
        opt("max_time", Optional[str], None, "--max-time", metavar="HH:MM",
            help="The job's wall-clock limit: stop in time to write a checkpoint before it (exit 124); "
                 "SIGTERM and Ctrl-C also stop after the current iteration with a checkpoint."),
        opt("threads", Optional[int], None, "--threads", panel="Performance",
            help="CPU threads per process (default: the cores / the processes on this machine)."),
        opt("quiet", bool, False, "--quiet", "-q", panel="Output and logging",
            help="No progress bar (the per-tick lines still go to log.txt)."),
        inspect.Parameter("offline", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Offline),
    ]


EXAMPLES = """Examples:

  sidbench distill --preset sd15-lsg1.5 --prompts aesthetics_6_plus.txt --run-dir runs/lsg15

  sidbench distill --config runs/lsg15/config.json --resume auto --threads 8

  sidbench distill --base sd3-medium/ --preset sd3-start --prompts prompts.txt --run-dir runs/sd3

  sidbench distill --plan --base sdxl --precision bf16 --sharding fsdp --processes 8 --device-memory 80
"""


def distill_cmd(**kw):
    """Distil a text-to-image teacher (SD, SDXL, SD3, FLUX.1, SANA) into a one-step generator with SiD (resumable)."""
    from distill.config import resolve
    from distill.loop import train
    from distill.stopping import StopRequested

    config, lsg, resume, quiet = kw.pop("config"), kw.pop("lsg"), kw.pop("resume"), kw.pop("quiet")
    kw["preset"] = kw.pop("preset")
    threads, max_time = kw.pop("threads"), kw.pop("max_time")
    kw.pop("offline")  # applied as it was parsed (options.Offline)
    want_plan, device_memory, processes = kw.pop("plan"), kw.pop("device_memory"), kw.pop("processes")
    with user_errors():
        set_threads(threads)
        cfg = resolve(config, kw, lsg=lsg)
        if want_plan:
            import os

            from distill.plan import run_plan

            if not cfg.base:
                raise SidbenchError("--plan needs --base (a teacher: sd15, sdxl, sd3.5-large, flux-dev, ...; "
                                    "see `sidbench models list`)")
            run_plan(cfg, processes or int(os.environ.get("WORLD_SIZE", 1)), device_memory)
            return
        if device_memory is not None or processes is not None:
            raise SidbenchError("--device-memory and --processes describe a --plan; a run takes its processes "
                                "from the launcher")
        missing = [k for k in ("base", "prompts", "run_dir") if not getattr(cfg, k)]
        if missing:
            raise SidbenchError("missing required setting(s): " + ", ".join("--" + k.replace("_", "-") for k in missing))
        from sidbench.gen.teachers import resolve_base

        resolve_base(cfg.base)  # a missing folder or an unknown name is said before anything else
        console.print("[bold]resolved config[/]")
        console.print_json(data=cfg.to_dict())
        try:
            train(cfg, resume=resume, progress=not quiet, max_time=max_time)  # one line per tick, and the snapshot
        except StopRequested as e:  # the trainer has printed and logged why, and the checkpoint
            raise typer.Exit(e.exit_code)


distill_cmd.__signature__ = inspect.Signature(_verb_options() + config_options(DistillConfig))
