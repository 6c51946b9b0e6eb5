"""``sidbench models``: the teachers by short name and the released one-step generators, from their one table."""
from __future__ import annotations

from typing import Annotated

import typer

from sidbench.cli.console import print_json, stdout

models_app = typer.Typer(help="Models by name: the teachers' short names and the released SiD-LSG generators.",
                         no_args_is_help=True)


def models_table() -> dict:
    """Both tables as plain data: what ``--json`` prints and what the docs page is checked against."""
    from dataclasses import asdict

    from sidbench.gen.releases import PREFIX, RELEASES, SOURCE
    from sidbench.gen.teachers import TEACHERS

    return {"teachers": [{**asdict(t), "page": t.page} for t in TEACHERS.values()],
            "releases": [{"generator": PREFIX + r.name, **asdict(r), "url": r.url} for r in RELEASES.values()],
            "releases_source": SOURCE}


def models_markdown(data: dict) -> str:
    """Both tables in Markdown (docs/guide/models.md carries this text; a test keeps them equal)."""
    lines = ["| short name | hub id | model | gated | `--plan` architecture |", "|---|---|---|---|---|"]
    lines += [f"| `{t['name']}` | [`{t['hub_id']}`]({t['page']}) | {t['title']} | {'yes' if t['gated'] else 'no'} | "
              f"{t['architecture'] or 'not planned yet'} |" for t in data["teachers"]]
    lines += ["", "| `--generator` | teacher | LSG k | kimg | FID | CLIP | file | sha256 (hub LFS id) |",
              "|---|---|---:|---:|---:|---:|---|---|"]
    lines += [f"| `{r['generator']}` | `{r['teacher']}` | {r['guidance']:g} | {r['kimg']} | {r['fid']:.2f} | "
              f"{r['clip']:.3f} | `{r['filename']}` | {('`' + r['sha256'] + '`') if r['sha256'] else 'not pinned'} |"
              for r in data["releases"]]
    return "\n".join(lines) + "\n"


@models_app.command("list", epilog="Examples:\n\n  sidbench models list\n\n  sidbench models list --json\n\n"
                                   "  sidbench models list --markdown\n")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print both tables as JSON.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print both tables as Markdown.")] = False,
):
    """Short names for --base (with hub ids, gated or not, what --plan plans) and sid-lsg:NAME generators."""
    from rich.table import Table

    data = models_table()
    if as_json:
        print_json(data)
        return
    if markdown:
        typer.echo(models_markdown(data), nl=False)
        return
    teachers = Table(title="teachers: --base NAME (or the hub id; gated ones need a token and the licence accepted)")
    for col in ("name", "hub id", "model", "gated", "--plan architecture"):
        teachers.add_column(col, no_wrap=col in ("name", "hub id"))
    for t in data["teachers"]:
        teachers.add_row(t["name"], t["hub_id"], t["title"], "yes" if t["gated"] else "no",
                         t["architecture"] or "not planned yet")
    stdout.print(teachers)
    releases = Table(title="released one-step generators: --generator sid-lsg:NAME (fetched on first use, ~3.4 GB)")
    for col in ("generator", "teacher", "LSG k", "kimg", "FID", "CLIP", "file", "sha256"):
        releases.add_column(col, no_wrap=col in ("generator", "file"), overflow="fold")
    for r in data["releases"]:
        releases.add_row(r["generator"], r["teacher"], f"{r['guidance']:g}", str(r["kimg"]), f"{r['fid']:.2f}",
                         f"{r['clip']:.3f}", r["filename"], r["sha256"] or "not pinned (recorded when downloaded)")
    stdout.print(releases)
    stdout.print(f"published FID/CLIP and pins: {data['releases_source']}")
