"""``sidbench demo``: the demo world end to end, offline."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from sidbench.cli.console import console, user_errors
from sidbench.cli.options import Threads
from pathlib import Path


EXAMPLES = """Examples:

  sidbench demo                       # ~8 min on 2 cores: distil, evaluate, report in reports/demo/

  sidbench demo --sweep --out reports/sweep --threads 2
"""


def demo_cmd(
    out: Annotated[Optional[str], typer.Option("--out", metavar="PATH", help="Report folder, regenerated whole (default reports/demo, with --sweep reports/demo-sweep).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A reduced run for CI (targets not expected).")] = False,
    sweep: Annotated[bool, typer.Option("--sweep", help="Train k = 1, 1.5, 2, 3 at one budget and draw the trade-off (~16 min on 2 cores).")] = False,
    rebuild_teacher: Annotated[bool, typer.Option("--rebuild-teacher", help="Retrain the shipped teacher and metric network (~10 min).")] = False,
    replot: Annotated[bool, typer.Option("--replot", help="Redraw the figures of an earlier run's --out folder from its figure_data.json (no training).")] = False,
    threads: Threads = None,
):
    """SiD-LSG end to end, offline: distil a small world's teacher, evaluate, and write a report."""
    from sidbench.demo.run import run_demo

    from sidbench.core.outputs import check_output
    from sidbench.core.threads import set_threads

    with user_errors():
        set_threads(threads)
        if replot:
            from sidbench.demo.run import replot as redraw

            for p in redraw(Path(out or ("reports/demo-sweep" if sweep else "reports/demo"))):
                console.print(f"figure written to {p}")
            return
        folder = Path(out or ("reports/demo-sweep" if sweep else "reports/demo"))
        check_output(folder, "--out", folder=True)  # before minutes of training
        run_demo(folder, quick=quick, sweep=sweep,
                 rebuild_teacher=rebuild_teacher, console=console)
