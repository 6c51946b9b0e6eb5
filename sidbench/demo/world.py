"""A small synthetic captioned-image world with an exact sampler (coloured shapes on grey).

Used by the demo and by tests as data with known truth: every image comes with its caption and
attributes, and fresh samples of the true distribution are always one call away.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SIZES = {"small": 0.22, "large": 0.38}
POSITIONS = {"top left": (0.3, 0.3), "top right": (0.7, 0.3), "bottom left": (0.3, 0.7), "bottom right": (0.7, 0.7)}


@dataclass(frozen=True)
class Sample:
    shape: str
    colour: str
    size: str
    position: str

    @property
    def caption(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} at the {self.position}"


def all_captions() -> list[str]:
    return [Sample(s, c, z, p).caption for s in SHAPES for c in COLOURS for z in SIZES for p in POSITIONS]


PROMPT_SET = "demo-world"  # all_captions(), shipped as prompts/demo-world.txt with its manifest


def write_prompt_set(folder) -> dict:
    """Write ``demo-world.txt`` (:func:`all_captions`, in order) and its manifest into ``folder``.

    The repository's copies in ``prompts/`` are made by this function (``python -m sidbench.demo.world
    prompts``); a test checks that they still equal its output. Returns the manifest.
    """
    from sidbench.data.prompts import write_packaged_list

    return write_packaged_list(
        folder, all_captions(), name=PROMPT_SET,
        description="sidbench demo world: every caption of the shapes world",
        protocol="sidbench-demo",
        licence="Apache-2.0: made by sidbench's own code, part of the project",
        licence_source="pyproject.toml, [project] license",
        made_by=(f"sidbench.demo.world.all_captions(): 'a {{size}} {{colour}} {{shape}} at the {{position}}' for "
                 f"shape in {list(SHAPES)}, colour in {list(COLOURS)}, size in {list(SIZES)}, position in "
                 f"{list(POSITIONS)} (nested loops in that order); one per line, UTF-8, final newline; written by "
                 f"sidbench.demo.world.write_prompt_set. `sidbench demo` trains on these (train_prompts.txt)."),
    )


def draw(sample: Sample, res: int, rng: np.random.Generator) -> np.ndarray:
    """Render one sample (uint8 HWC) with +-1 px jitter (scaled to the resolution)."""
    img = Image.new("RGB", (res, res), (128, 128, 128))
    d = ImageDraw.Draw(img)
    cx, cy = POSITIONS[sample.position]
    jitter = rng.integers(-1, 2, size=2) * max(1, res // 16)
    cx, cy = cx * res + jitter[0], cy * res + jitter[1]
    r = SIZES[sample.size] * res / 2
    colour = COLOURS[sample.colour]
    if sample.shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif sample.shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return np.asarray(img)


def sample_world(n: int, res: int = 32, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """n images (uint8 NHWC) and their captions from the true distribution (uniform attributes)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, res, res, 3), np.uint8)
    caps = []
    for i in range(n):
        s = Sample(SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))],
                   list(SIZES)[rng.integers(len(SIZES))], list(POSITIONS)[rng.integers(len(POSITIONS))])
        out[i] = draw(s, res, rng)
        caps.append(s.caption)
    return out, caps


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m sidbench.demo.world FOLDER   (writes demo-world.txt and demo-world.json)")
    print(write_prompt_set(sys.argv[1])["md5"])
