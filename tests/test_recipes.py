"""The recipes' figures are what the code computes now: a memory figure on a recipe page is the output of the
`--plan` command named beside it, not a copy that can drift."""
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sidbench.cli.app import app

RECIPES = sorted((Path(__file__).resolve().parents[1] / "docs" / "recipes").glob("*.md"))
PLAN_MARK = re.compile(r"<!-- plan: sidbench (.+?) -->\n(.*?)(?:\n\n|\Z)", re.S)


def plan_claims():
    for page in RECIPES:
        for command, prose in PLAN_MARK.findall(page.read_text(encoding="utf-8")):
            yield page.name, command, prose


def test_the_recipe_has_a_plan_figure():
    assert any(name == "sid-lsg-sd15.md" for name, _, _ in plan_claims())


@pytest.mark.parametrize("page, command, prose", list(plan_claims()))
def test_a_recipes_plan_figures_equal_the_plan(page, command, prose):
    r = CliRunner().invoke(app, shlex.split(command))
    assert r.exit_code == 0, r.output
    parts = dict(re.findall(r"^\s+(\S.*?)\s{2,}([\d.]+) GiB", r.output, re.M))
    total = float(parts.pop("total per device"))
    activations = sum(float(v) for k, v in parts.items() if k.startswith("activations"))
    static = sum(float(v) for k, v in parts.items() if not k.startswith("activations"))
    said = re.search(r"\*\*([\d.]+) GiB per GPU\*\* \(static ([\d.]+) GiB, activations ([\d.]+) GiB\)", prose)
    assert said, f"{page}: no '**X GiB per GPU** (static Y GiB, activations Z GiB)' after the plan mark"
    assert [float(x) for x in said.groups()] == [round(total, 1), round(static, 1), round(activations, 1)], r.output
