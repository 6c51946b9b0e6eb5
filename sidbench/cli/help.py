"""Help text in click's conventions: ``INT``/``PATH`` metavars, ``[a|b|c]`` choices, nothing after a flag.

Typer 0.29 prints ``<int>``/``<str>``/``<bool>`` instead (so ``--kid true`` looks valid); one override of
its option class's type column fixes every verb at once. Older Typers have no such column: then nothing.
"""
from __future__ import annotations

import typing

import typer.core

_NAMES = {"int": "INT", "float": "FLOAT", "str": "TEXT", "bool": "BOOL", "Path": "PATH"}


def option_metavar(param) -> str | None:
    """What the help shows after an option: None for a flag, its choices in brackets, else an upper-case type."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):  # a flag takes no value
        return None
    if param.metavar is not None:
        return param.metavar
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and desc.is_choice:
        shown = "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
    elif desc is not None:
        annotation = desc.annotation
        inner = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
        shown = _NAMES.get(getattr(inner, "__name__", ""), "VALUE")
    else:
        shown = "VALUE"
    return shown + ("..." if getattr(param, "multiple", False) else "")


def install() -> None:
    for name in ("TyperOption", "TyperArgument"):
        cls = getattr(typer.core, name, None)
        if cls is not None and hasattr(cls, "display_type_rich"):
            cls.display_type_rich = lambda self, ctx: option_metavar(self)
