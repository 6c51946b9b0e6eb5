"""``sidbench compare``: which of two generators is better on the same prompts, with a p-value."""
from __future__ import annotations

from typing import Annotated

import typer

from sidbench.cli.console import console, print_json, user_errors

EXAMPLES = """Examples:

  sidbench compare runs/a/per_sample.csv runs/b/per_sample.csv

  sidbench compare a.csv b.csv --json --seed 1
"""


def compare_cmd(
    a: Annotated[str, typer.Argument(metavar="A", help="Per-sample CSV of the first result (eval --per-sample).")],
    b: Annotated[str, typer.Argument(metavar="B", help="Per-sample CSV of the second, on the same prompts.")],
    replicates: Annotated[int, typer.Option("--bootstrap", metavar="B", help="Bootstrap replicates for the interval.")] = 2000,
    permutations: Annotated[int, typer.Option("--permutations", metavar="R", help="Sign-flip draws for the p-value.")] = 10000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of both.")] = 0,
    level: Annotated[float, typer.Option("--confidence", metavar="LEVEL", help="Interval level.")] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="The comparison as JSON on stdout.")] = False,
):
    """Paired test of B against A on per-image scores: mean difference, bootstrap interval, permutation p-value."""
    from rich.table import Table

    from sidbench.eval.compare import compare_files

    with user_errors():
        out = compare_files(a, b, b_boot=replicates, r_perm=permutations, seed=seed, level=level)
    if as_json:
        print_json(out)
        return
    t = Table(title=f"B - A on {out[0]['n']} paired images")
    for col in ("metric", "A", "B", "B - A", f"{100 * level:g}% interval", "p (two-sided)"):
        t.add_column(col)
    for r in out:
        ci = r["interval"]
        t.add_row(r["metric"], f"{r['mean_a']:.4f}", f"{r['mean_b']:.4f}", f"{r['difference']:+.4f}",
                  f"[{ci['low']:+.4f}, {ci['high']:+.4f}]", f"{r['p_value']:.4g}")
    console.print(t)
