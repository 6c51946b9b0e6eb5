"""``sidbench weights``: the known weight files, listed (pin, its source, where each lives), fetched, verified."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from sidbench.cli.console import console, print_json, stdout, user_errors
from sidbench.cli.options import Offline

weights_app = typer.Typer(help="Known weight files: list, fetch (verified), verify.", no_args_is_help=True)


@weights_app.command("list", epilog="Examples:\n\n  sidbench weights list\n\n  sidbench weights list --json | jq '.weights[] | {name, pin, pin_source}'\n")
def weights_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON (one object per weight file).")] = False,
):
    """Known weight files: their URLs, pins and where each pin comes from, and where each file is (or will go)."""
    from rich.table import Table

    from sidbench.eval.extractors.weights import WEIGHTS, weights_dir, where

    entries = []
    for w in WEIGHTS.values():
        path, store = where(w)
        entries.append({"name": w.name, "file": w.filename, "present": path.is_file(), "path": str(path),
                        "store": store, "url": w.url, "hub_repo": w.hub_repo, "hub_filename": w.hub_filename,
                        "revision": w.revision if w.hub_repo else None, "used_for": w.used_for, "pin": w.pin,
                        "sha256": w.sha256, "sha256_prefix": w.sha256_prefix, "size": w.size,
                        "pin_source": w.pin_source})
    if as_json:
        print_json({"weights_folder": str(weights_dir()), "weights": entries})
        return
    table = Table(title=f"weights folder: {weights_dir()} (files not here are downloaded on first use)")
    table.add_column("name", no_wrap=True)
    table.add_column("file", no_wrap=True)
    for col in ("where", "url", "used for", "pin", "pin source"):
        table.add_column(col, overflow="fold")
    for e in entries:
        place = f"{e['store']}: {e['path']}" if e["present"] else f"not here (goes to the {e['store']})"
        table.add_row(e["name"], e["file"], place, e["url"] + (f" (revision {e['revision']})" if e["revision"] else ""),
                      e["used_for"], e["pin"], e["pin_source"] or "none published: the file's own sha256 is recorded")
    stdout.print(table)


@weights_app.command("fetch", epilog="Examples:\n\n  sidbench weights fetch inception-2015-12-05\n\n  sidbench weights fetch vgg16-torchvision --url http://mirror.local/vgg16-397923af.pth\n")
def weights_fetch(
    name: Annotated[str, typer.Argument(help="A name from `sidbench weights list`.")],
    dest: Annotated[Optional[str], typer.Option("--dir", help="Destination folder (default: the weights folder, or the Hugging Face cache for hub files).")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Download from this mirror instead of the table's URL (into the weights folder or --dir).")] = None,
    offline: Offline = False,
):
    """Download a known weight file and verify it (resumed if cut); nothing is put in place until it verifies."""
    from sidbench.eval.extractors.weights import fetch, get_spec

    with user_errors():
        path, sha = fetch(name, dest, url=url)
        pinned = get_spec(name).pin_source
    console.print(f"{path}\nsha256 {sha}" + ("" if pinned else "  (no published hash to verify against: recorded in results)"))


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
