"""``sidbench weights``: the known weight files, listed, fetched (sha256-verified) and verified."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from sidbench.cli.console import console, user_errors

weights_app = typer.Typer(help="Known weight files: list, fetch (sha256-verified), verify.", no_args_is_help=True)


@weights_app.command("list")
def weights_list():
    """Known weight files, their URLs, hashes, and whether they are present locally."""
    from rich.table import Table

    from sidbench.eval.extractors.weights import WEIGHTS, locate, weights_dir

    table = Table(title=f"weights folder: {weights_dir()}")
    table.add_column("name", no_wrap=True)
    table.add_column("file", no_wrap=True)
    for col in ("present", "used for", "sha256"):
        table.add_column(col, overflow="fold")
    for w in WEIGHTS.values():
        present = locate(w).is_file()
        table.add_row(w.name, w.filename, "yes" if present else "no", w.used_for,
                      w.sha256 or (f"{w.sha256_prefix}… (prefix)" if w.sha256_prefix else "not pinned"))
    console.print(table)


@weights_app.command("fetch")
def weights_fetch(
    name: Annotated[str, typer.Argument(help="A name from `sidbench weights list`.")],
    dest: Annotated[Optional[str], typer.Option("--dir", help="Destination folder (default: the weights folder).")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Download from this mirror instead of the table's URL.")] = None,
):
    """Download a known weight file and verify it; nothing appears until the hash checks out."""
    from sidbench.eval.extractors.weights import fetch, get_spec

    with user_errors():
        path, sha = fetch(name, dest, url=url)
    pinned = get_spec(name).sha256
    console.print(f"{path}\nsha256 {sha}" + ("" if pinned else "  (no pinned hash to verify against: recorded in results)"))


@weights_app.command("verify")
def weights_verify(
    name: Annotated[str, typer.Argument(help="A name from `sidbench weights list`.")],
    path: Annotated[str, typer.Argument(help="The local file.")],
):
    """Check a local file against the table; prints its sha256."""
    from sidbench.eval.extractors.weights import find_weights

    with user_errors():
        p, sha = find_weights(name, path)
    console.print(f"{p}: sha256 {sha} OK")
