"""``sidbench data``: the datasets sidbench knows (COCO images and captions), listed and fetched."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape

from sidbench.cli.console import console, print_json, stdout, user_errors
from sidbench.cli.options import Offline, Quiet

data_app = typer.Typer(help="Datasets: list the known ones, fetch one (downloaded, verified, extracted).",
                       no_args_is_help=True)


@data_app.command("list", epilog="Examples:\n\n  sidbench data list\n\n  sidbench data list --json\n")
def data_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifests as JSON (one object per dataset).")] = False,
):
    """The known datasets: official archive, size, sha256 and image count, each with its source."""
    from dataclasses import asdict

    from rich.table import Table

    from sidbench.data.dataset_table import KNOWN_DATASETS

    if as_json:
        print_json({"datasets": [asdict(d) for d in KNOWN_DATASETS.values()]})
        return
    table = Table()
    for col in ("name", "images", "archive", "GB"):
        table.add_column(col, no_wrap=True)
    for col in ("url", "sha256"):
        table.add_column(col, overflow="fold")
    for d in KNOWN_DATASETS.values():
        table.add_row(d.name, f"{d.images:,}" if d.images else "-", d.archive, f"{d.bytes / 1e9:.2f}", d.url,
                      d.sha256 or "not pinned")
    stdout.print(table)


@data_app.command("fetch", epilog="Examples:\n\n  sidbench data fetch coco2014-val data/coco2014-val\n\n"
                                  "  sidbench data fetch coco2014-annotations data/coco2014-annotations --keep-archive\n")
def data_fetch(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A dataset from `sidbench data list`, e.g. coco2014-val.")],
    dest: Annotated[str, typer.Argument(metavar="DIR", help="The folder to fill (new or empty); the archive is downloaded beside it.")],
    url: Annotated[Optional[str], typer.Option("--url", metavar="URL", help="Download the archive from this mirror (its size and sha256 are still checked).")] = None,
    keep_archive: Annotated[bool, typer.Option("--keep-archive", help="Keep the archive after extracting it.")] = False,
    offline: Offline = False,
    quiet: Quiet = False,
):
    """Download a dataset's official archive (resumed when cut), verify it, extract it, write DIR's manifest."""
    from sidbench.data.dataset_fetch import FOLDER_MANIFEST, fetch_dataset

    with user_errors():
        doc, done = fetch_dataset(name, dest, url=url, keep_archive=keep_archive, progress=not quiet)
    what = f"{doc['images']:,} images" if doc.get("images") is not None else f"{doc['files']:,} file(s)"
    state = "fetched" if done else "already complete, nothing to do"
    console.print(escape(f"{doc['name']}: {what} in {dest} ({state}); manifest {dest}/{FOLDER_MANIFEST}"))
