"""Released one-step generators by name: ``--generator sid-lsg:NAME`` fetches the authors' SiD-LSG checkpoint
from the hub (into the hub cache, at a pinned commit) and it is read through the restricted unpickler.

The table is the authors' repository UT-Austin-PML/SiD-LSG at commit 08b9319 ("adding all checkpoints for
table 1"), as their code names the files (mingyuanzhou/SiD-LSG @ 709fc22, generate_onestep.py's docstring): each
file's guidance scale k (kappa1 = kappa2 = kappa3 = kappa4), generator timestep t_init, batch and training length
(kimg) are in its name; FID and CLIP are the paper's Table 1 (arXiv 2406.01561, COCO-2014 30k, the GigaGAN
captions), which the README and generate_onestep.py repeat next to each file. sha256 is the hub's LFS object id
shown on the file's page, where read; a file without one is recorded by the hash of what was downloaded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sidbench.core.errors import SidbenchError

PREFIX = "sid-lsg:"
REPO = "UT-Austin-PML/SiD-LSG"
REVISION = "08b9319239ee023737744d5790ee7466268bffed"
SOURCE = ("arXiv 2406.01561 Table 1; mingyuanzhou/SiD-LSG README and generate_onestep.py @ 709fc22; "
          "file pins: huggingface.co/UT-Austin-PML/SiD-LSG file pages (Git LFS SHA256)")


@dataclass(frozen=True)
class Release:
    name: str
    filename: str
    teacher: str                 # short name in gen.teachers.TEACHERS: the base it was distilled from
    guidance: float              # LSG k = kappa1..4
    kimg: int                    # training images seen, thousands (the number in the file name)
    fid: float                   # published, COCO-2014 30k (coco2014-30k protocol)
    clip: float                  # published CLIP score (ViT-g-14)
    sha256: str | None = None    # hub LFS object id
    size: int | None = None      # bytes, where the hub states them exactly
    t_init: int = 625
    batch: int = 512
    repo: str = REPO
    revision: str = REVISION

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{self.filename}"

    def describe(self) -> dict:
        return {"release": PREFIX + self.name, **asdict(self), "source": SOURCE}

    def subject(self) -> dict:
        """How a results table names it, as the published rows do (method, teacher, steps, guidance, kimg)."""
        from sidbench.gen.teachers import TEACHERS

        teacher = TEACHERS[self.teacher].label if self.teacher in TEACHERS else self.teacher
        return {"name": PREFIX + self.name, "method": "SiD-LSG", "teacher": teacher, "steps": 1,
                "guidance": f"LSG k={self.guidance:g}", "kimg": self.kimg}


RELEASES: dict[str, Release] = {r.name: r for r in (
    Release("sd15-lsg1.5", "batch512_cfg1.51.51.5_t625_18789_v2.pkl", "sd15", 1.5, 18789, 8.15, 0.304,
            sha256="a646a47faffd8300b7015d599980b3f642538aef6d357769609690ab322b48e0"),
    Release("sd15-lsg1.5-8806kimg", "batch512_cfg1.51.51.5_t625_8806_v2.pkl", "sd15", 1.5, 8806, 8.71, 0.302,
            sha256="057b363b3640cabb646386a6c19168ad67c9eedf57b81e54f87dbf521784f5b1", size=3_438_419_160),
    Release("sd15-lsg2", "batch512_cfg222_t625_4812_v2.pkl", "sd15", 2.0, 4812, 9.56, 0.313,
            sha256="dc6a030744b0ee56b9a7761837125c758eb1276ad8d02404bc91a2c2da0283b9"),
    Release("sd15-lsg3", "batch512_cfg333_t625_6349_v2.pkl", "sd15", 3.0, 6349, 13.21, 0.314),
    Release("sd15-lsg4.5", "batch512_cfg4.54.54.5_t625_8380_v2.pkl", "sd15", 4.5, 8380, 16.59, 0.317,
            sha256="8750dd6e4953f2fba4bf2a859310e6d2005eff16df5ff9290cc32fa5c272e80c"),
    Release("sd21base-lsg1.5", "batch512_sd21_cfg1.51.51.5_t625_9728_v2.pkl", "sd21-base", 1.5, 9728, 9.52, 0.308),
    Release("sd21base-lsg2", "batch512_sd21_cfg222_t625_8482_v2.pkl", "sd21-base", 2.0, 8482, 10.97, 0.318),
    Release("sd21base-lsg3", "batch512_sd21_cfg333_t625_6144_v2.pkl", "sd21-base", 3.0, 6144, 13.50, 0.321),
    Release("sd21base-lsg4.5", "batch512_sd21_cfg4.54.54.5_t625_7168_v2.pkl", "sd21-base", 4.5, 7168, 16.54, 0.322),
)}


def release_of(generator: str | None) -> Release | None:
    """The release a ``--generator`` names (``sid-lsg:NAME``), None for anything else; an unknown name is an error
    that lists the known ones."""
    if generator is None or not str(generator).startswith(PREFIX):
        return None
    name = str(generator)[len(PREFIX):]
    if name not in RELEASES:
        raise SidbenchError(f"unknown SiD-LSG release {name!r}; known: "
                            + ", ".join(PREFIX + n for n in RELEASES) + " (sidbench models list)")
    return RELEASES[name]


def fetch_release(r: Release) -> Path:
    """The release's .pkl in the hub cache: downloaded (about 3.4 GB) and checked against its pins on first use."""
    from sidbench.core.hub import hub_file

    return hub_file(r.repo, r.filename, revision=r.revision, sha256=r.sha256, size=r.size,
                    fetch_hint=f"Run it once online to cache it, or download {r.url} and give the file as --generator.")
