"""``sidbench report``: our results next to published numbers, as a table, plots and an HTML page.

The verb only wires options to ``sidbench.report``; registered in ``sidbench.cli.app`` as
``app.command("report")(report_cmd)``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from sidbench.cli.console import console, err_console, fail
from sidbench.core.errors import SidbenchError

FORMATS = ("md", "latex", "csv", "html")

def report_cmd(
    results: Annotated[Optional[list[str]], typer.Argument(metavar="RESULTS.json", help="Results JSON files (sidbench.results/1) to put in the table; none with --protocol: the published rows alone.")] = None,
    against: Annotated[str, typer.Option("--against", rich_help_panel="Rows", metavar="ROWS", help="Published rows: 'published' (the rows shipped with sidbench, from published.csv), a CSV path, or 'none'.")] = "published",
    protocol: Annotated[Optional[str], typer.Option("--protocol", rich_help_panel="Rows", metavar="NAME", help="Only results of this protocol, next to all its published rows; results of any other are listed apart, never mixed in. Default: every result, each with its protocol, and the published rows of those protocols.")] = None,
    fmt: Annotated[Literal["md", "latex", "csv", "html"], typer.Option("--format", rich_help_panel="Output", help="Table format (html: one page with table, plots and samples).")] = "md",
    out: Annotated[Optional[str], typer.Option("--out", rich_help_panel="Output", metavar="PATH", help="Write the table here (atomically); without it (or with -), print it on stdout.")] = None,
    delta_to: Annotated[Optional[str], typer.Option("--delta-to", rich_help_panel="Rows", metavar="ROW", help="Row the ΔFID/ΔCLIP columns are relative to: a row label, name or method, or a results file (path or stem).")] = None,
    plots_dir: Annotated[Optional[str], typer.Option("--plots-dir", rich_help_panel="Output", metavar="PATH", help="Write the FID-CLIP trade-off (and training curves) as PNG and SVG here.")] = None,
    curves: Annotated[Optional[str], typer.Option("--curves", rich_help_panel="Output", metavar="LOG", help="A distillation log (JSON Lines with kimg, fid, clip) to plot training curves from.")] = None,
    grid: Annotated[Optional[str], typer.Option("--grid", rich_help_panel="Output", metavar="PNG", help="A sample image grid (PNG) for the HTML page.")] = None,
    gallery: Annotated[Optional[str], typer.Option("--gallery", rich_help_panel="Gallery", metavar="HTML", help="Write the best and worst images of one result (evaluated with --per-sample) by a per-image score to this page.")] = None,
    by: Annotated[Optional[str], typer.Option("--by", rich_help_panel="Gallery", metavar="SCORE", help="Score the gallery ranks by (clip, aesthetic, hps, pickscore, image_reward; default: the first).")] = None,
    top: Annotated[int, typer.Option("--top", rich_help_panel="Gallery", metavar="N", help="Images shown at each end of the gallery.")] = 8,
    include_not_comparable: Annotated[bool, typer.Option("--include-not-comparable", rich_help_panel="Rows", help="With --protocol: keep results marked not comparable in the table, flagged with † and their deviations (without --protocol they always are).")] = False,
):
    """A comparison table of RESULTS, each on its protocol, next to the published numbers of that protocol, with plots."""
    from sidbench.core.atomic import write_text
    from sidbench.core.outputs import check_output
    from sidbench.report import (build_table, html_report, load_published, load_results, plot_tradeoff,
                                 plot_training_curves, render)
    from sidbench.report.plots import tradeoff_panels
    from sidbench.report.render import APART_HINT

    if gallery is not None:
        from sidbench.report.gallery import gallery_html

        try:
            if len(results or []) != 1:
                raise SidbenchError("--gallery shows one evaluation: give exactly one results file")
            page = gallery_html(results[0], gallery, by=by, top=top)
        except SidbenchError as e:
            fail(e)
        console.print(f"gallery written to {page}", highlight=False)
        return
    if out == "-":
        out = None  # stdout, as without --out
    results = results or []
    try:
        for path, what, folder in ((out, "--out", False), (plots_dir, "--plots-dir", True)):
            if path is not None:
                check_output(path, what, folder=folder)
        if not results and protocol is None:
            raise SidbenchError("give results files, or --protocol NAME for that protocol's published rows alone")
        if fmt not in FORMATS:
            raise SidbenchError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        if fmt == "html" and out is None:
            raise SidbenchError("--format html writes a page: give it a file with --out")
        if grid is not None and fmt != "html":
            raise SidbenchError("--grid goes on the HTML page: use it with --format html")
        if curves is not None and fmt != "html" and plots_dir is None:
            raise SidbenchError("--curves needs somewhere to go: --plots-dir DIR or --format html")
        # Sources are shown relative to where the table goes (its folder, or here when printed).
        ours = load_results(results, relative_to=Path(out).parent if out is not None else Path.cwd())
        published = None if against == "none" else load_published(None if against == "published" else against)
        table = build_table(ours, published, protocol, delta_to=delta_to,
                            include_not_comparable=include_not_comparable)
        for e in table.excluded.itertuples(index=False):
            err_console.print(f"[yellow]listed apart, not in the {protocol} table:[/] {e.label} ({e.source}): "
                              f"{e.reason}", highlight=False)
        if any("not comparable" in why for why in table.excluded["reason"]):
            err_console.print(f"({APART_HINT})", highlight=False)

        with tempfile.TemporaryDirectory(prefix="sidbench-report-") as tmp:
            where = Path(plots_dir) if plots_dir is not None else Path(tmp)
            plots = {}
            if plots_dir is not None or fmt == "html":
                if tradeoff_panels(table):  # FID or an FD by network, against CLIP or adherence
                    plots["Trade-off"] = plot_tradeoff(table, where / "tradeoff")[0]
                else:
                    err_console.print("[yellow]no row has both a Fréchet distance and CLIP:[/] no trade-off plot",
                                      highlight=False)
                if curves is not None:
                    plots["Training curves (proxy metrics)"] = plot_training_curves(curves, where / "training_curves")[0]
            if plots_dir is not None:
                for p in plots.values():
                    console.print(f"plot written to {p} (and .svg)", highlight=False)
            if fmt == "html":
                html_report(table, plots, image_grid=grid, out=out)
            elif out is not None:
                write_text(out, render(table, fmt))
            else:
                typer.echo(render(table, fmt), nl=False)
    except SidbenchError as e:
        fail(e)
    if out is not None:
        what = f"protocol {table.protocol}" if table.filtered else f"protocols: {table.protocol}"
        console.print(f"report written to {out} ({len(table.rows)} rows, {what})", highlight=False)


EXAMPLES = """Examples:

  sidbench report results/*.json --out table.md

  sidbench report --protocol coco2014-30k --plots-dir docs/report --out docs/report/coco2014-30k.md

  sidbench report results/*.json --protocol coco2014-30k --format latex --out table.tex --plots-dir figs/

  sidbench report r.json --gallery gallery.html --by clip --top 8
"""
