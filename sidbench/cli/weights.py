"""``sidbench weights``: the known weight files, listed, fetched (sha256-verified) and verified."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from sidbench.cli.console import console, print_json, stdout, user_errors

weights_app = typer.Typer(help="Known weight files: list, fetch (sha256-verified), verify.", no_args_is_help=True)


@weights_app.command("list", epilog="Examples:\n\n  sidbench weights list\n\n  sidbench weights list | grep vgg16\n")
def weights_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON (one object per weight file).")] = False,
):
    """Known weight files, their URLs, hashes, and whether they are present locally."""
    from rich.table import Table

    from sidbench.eval.extractors.weights import WEIGHTS, locate, weights_dir

    entries = [{"name": w.name, "file": w.filename, "present": locate(w).is_file(), "path": str(locate(w)),
                "url": w.url, "used_for": w.used_for, "sha256": w.sha256, "sha256_prefix": w.sha256_prefix}
               for w in WEIGHTS.values()]
    if as_json:
        print_json({"weights_folder": str(weights_dir()), "weights": entries})
        return
    table = Table(title=f"weights folder: {weights_dir()}")
    table.add_column("name", no_wrap=True)
    table.add_column("file", no_wrap=True)
    for col in ("present", "url", "used for", "sha256"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(e["name"], e["file"], "yes" if e["present"] else "no", e["url"], e["used_for"],
                      e["sha256"] or (f"{e['sha256_prefix']}... (prefix)" if e["sha256_prefix"] else "not pinned"))
    stdout.print(table)


@weights_app.command("fetch", epilog="Examples:\n\n  sidbench weights fetch inception-2015-12-05\n\n  sidbench weights fetch vgg16-torchvision --url http://mirror.local/vgg16-397923af.pth\n")
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


@weights_app.command("verify", epilog="Examples:\n\n  sidbench weights verify inception-2015-12-05 inception-2015-12-05.pt\n\n  sidbench weights verify vgg16-torchvision ~/weights/vgg16-397923af.pth\n")
def weights_verify(
    name: Annotated[str, typer.Argument(help="A name from `sidbench weights list`.")],
    path: Annotated[str, typer.Argument(help="The local file.")],
):
    """Check a local file against the table; prints its sha256."""
    from sidbench.eval.extractors.weights import find_weights

    with user_errors():
        p, sha = find_weights(name, path)
    console.print(f"{p}: sha256 {sha} OK")
