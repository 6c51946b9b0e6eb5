"""``sidbench prompts``: check, draw and fetch prompt lists (wired into the main CLI with add_typer)."""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.markup import escape

from sidbench.cli.console import console, fail
from sidbench.cli.options import Offline
from sidbench.core.errors import SidbenchError

prompts_app = typer.Typer(help="Prompt lists: list the known ones, check (recognise them by md5), draw seeded COCO samples, fetch.",
                          no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _say(text: str) -> None:
    console.print(escape(text))


@prompts_app.command("list", epilog="Examples:\n\n  sidbench prompts list\n\n  sidbench prompts list --json\n")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifests as JSON.")] = False,
):
    """The known prompt lists (one manifest each in the package's prompts folder)."""
    from dataclasses import asdict

    from sidbench.data.prompts import KNOWN_PROMPT_LISTS

    if as_json:
        typer.echo(json.dumps({k: asdict(v) for k, v in KNOWN_PROMPT_LISTS.items()}, indent=2))
        return
    for spec in KNOWN_PROMPT_LISTS.values():
        how = ("shipped with sidbench" if spec.packaged else f"fetched from {spec.url}" if spec.hub is None
               else f"extracted from an archive of {spec.url}")
        _say(f"{spec.name}: {spec.description} ({spec.protocol} protocol)")
        if spec.unpinned:
            _say(f"    no published hash (its md5 is recorded when fetched); {how}")
        else:
            _say(f"    {spec.lines} lines, {spec.distinct} distinct, md5 {spec.md5}; {how}")


@prompts_app.command("check", epilog="Examples:\n\n  sidbench prompts check captions.txt\n\n  sidbench prompts check captions.txt --json\n")
def check_cmd(
    file: Annotated[str, typer.Argument(help="A prompt list (UTF-8, one prompt per line).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
):
    """Line count, distinct prompts, md5/sha256, and whether it is a known published list."""
    from sidbench.data.prompts import describe_prompts

    try:
        d = describe_prompts(file)
    except SidbenchError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    _say(f"{d['path']}")
    _say(f"lines:    {d['lines']}")
    _say(f"distinct: {d['distinct']}")
    _say(f"md5:      {d['md5']}")
    _say(f"sha256:   {d['sha256']}")
    if d["known_list"]:
        how = "" if d["known_list_match"] == "exact" else " (same prompts; the bytes differ, e.g. line endings)"
        _say(f"recognised: {d['description']} ({d['protocol']} protocol){how}")
    else:
        _say("recognised: no (not a known published list; results on it are their own protocol)")


@prompts_app.command("coco", epilog="Examples:\n\n  sidbench prompts coco --annotations captions_val2014.json --seed 0 --out coco30k.txt\n\n  sidbench prompts coco --annotations captions_val2017.json --seed 0 --n 5000 --one-per-image --out coco5k.txt\n")
def coco_cmd(
    annotations: Annotated[str, typer.Option("--annotations", help="COCO captions annotation JSON, e.g. captions_val2014.json.")],
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (numpy.random.default_rng).")],
    out: Annotated[str, typer.Option("--out", help="Prompt list to write (a sidecar <out>.json says how it was made).")],
    n: Annotated[int, typer.Option("--n", help="Number of captions to draw.")] = 30000,
    one_per_image: Annotated[bool, typer.Option("--one-per-image", help="One caption per image, n distinct images (coco2017-5k style).")] = False,
    ids_out: Annotated[Optional[str], typer.Option("--ids-out", help="Also write '<image_id>\\t<file_name>' per prompt, in prompt order.")] = None,
    loader: Annotated[str, typer.Option("--loader", help="Read the annotation file with: json | datasets (same result).")] = "json",
    label: Annotated[Optional[str], typer.Option("--label", help="Protocol label for the sidecar (default: coco2014-30k-resampled, or coco2017-5k-resampled with --one-per-image).")] = None,
):
    """Draw a seeded caption sample from a COCO annotation file: NOT the GigaGAN list, a different protocol."""
    from sidbench.core.atomic import write_text
    from sidbench.core.outputs import check_output
    from sidbench.data.prompts import KNOWN_PROMPT_LISTS, sample_coco_captions, sidecar_path, write_prompts

    protocol = label or ("coco2017-5k-resampled" if one_per_image else "coco2014-30k-resampled")
    giga = KNOWN_PROMPT_LISTS["gigagan-coco2014-30k"]
    try:
        check_output(out, "--out")
        if ids_out:
            check_output(ids_out, "--ids-out")
        prompts, refs, info = sample_coco_captions(annotations, n, seed, one_per_image=one_per_image, loader=loader)
        meta = write_prompts(out, prompts, sidecar={
            "protocol": protocol,
            "note": (f"seeded sample drawn by sidbench; NOT the {giga.description} (md5 {giga.md5}); "
                     f"numbers on it are not comparable with published {giga.protocol} numbers"),
            **info,
            "image_ids_file": ids_out,
        })
        if ids_out:
            write_text(ids_out, "".join(f"{r.image_id}\t{r.file_name}\n" for r in refs))
    except SidbenchError as e:
        fail(e)
    _say(f"wrote {meta['n']} prompts to {out} (md5 {meta['prompts_md5']}; "
         f"{info['distinct_prompts']} distinct, from {info['distinct_images']} images)")
    _say(f"sidecar: {sidecar_path(out)}")
    if ids_out:
        _say(f"reference image ids: {ids_out}")
    console.print(f"[yellow]note:[/] {escape(f'this list is NOT the {giga.description} used by published {giga.protocol} numbers')}"
                  f"{escape(f' (md5 {giga.md5}; get it with `sidbench prompts fetch {giga.name}`). ')}"
                  f"{escape(f'Results on it are a different protocol, labelled {protocol!r} in the sidecar.')}")


@prompts_app.command("fetch", epilog="Examples:\n\n  sidbench prompts fetch gigagan-coco2014-30k --out prompts/\n\n  sidbench prompts fetch aesthetics-6plus --out data/\n\n  sidbench prompts fetch gigagan-coco2014-30k --out captions.txt --url http://mirror.local/captions.txt\n")
def fetch_cmd(
    name: Annotated[str, typer.Argument(help="A known list (sidbench prompts list), e.g. gigagan-coco2014-30k.")],
    out: Annotated[str, typer.Option("--out", help="File to write, or a folder (an existing one, or a path ending in /) for the list's usual file name.")],
    url: Annotated[Optional[str], typer.Option("--url", help="Download from this mirror instead of the manifest's URL.")] = None,
    offline: Offline = False,
):
    """Get a known prompt list (a shipped one is copied from the package); it appears only once its md5 matches, or,
    for a list no source publishes a hash of, with a sidecar <list>.json recording what was extracted."""
    from sidbench.data.prompts import fetch_prompt_list, get_known_list, sidecar_path

    try:
        spec = get_known_list(name)
        path = fetch_prompt_list(name, out, url=url)
    except SidbenchError as e:
        fail(e)
    if spec.unpinned:
        got = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        _say(f"{path}: {got['lines']} lines, {got['distinct']} distinct, md5 {got['md5']}, sha256 {got['sha256']} "
             f"({spec.description}; {got['member']} of {got['archive']}, {got['repo']} at commit {got['commit']})")
        _say(f"no published hash to check it against: {spec.unpinned}. Recorded in {sidecar_path(path)}")
        return
    _say(f"{path}: md5 {spec.md5} OK ({spec.description}, {spec.lines} lines, {spec.protocol} protocol)")
