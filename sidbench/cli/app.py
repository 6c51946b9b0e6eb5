"""The ``sidbench`` command: the root app and its verbs, one module each under ``sidbench.cli``."""
from __future__ import annotations

from typing import Annotated

import typer

import sidbench.demo  # noqa: F401  (registers the demo world's extractor, world-cnn, for eval and stats)
from sidbench import __version__
from sidbench.cli import help as _help
from sidbench.cli.console import install_warning_printer, stdout
from sidbench.cli.compare import EXAMPLES as compare_examples, compare_cmd
from sidbench.cli.data import data_app
from sidbench.cli.demo import EXAMPLES as demo_examples, demo_cmd
from sidbench.cli.distill import EXAMPLES as distill_examples, distill_cmd
from sidbench.cli.eval import EXAMPLES as eval_examples, eval_cmd
from sidbench.cli.generate import EXPORT_EXAMPLES as export_examples, GENERATE_EXAMPLES as generate_examples, export_cmd, generate_cmd
from sidbench.cli.report import EXAMPLES as report_examples, report_cmd
from sidbench.cli.models import models_app
from sidbench.cli.prompts import prompts_app
from sidbench.cli.stats import stats_app
from sidbench.cli.weights import weights_app

_help.install()
app = typer.Typer(help="SiD-LSG distillation and reproducible text-to-image evaluation.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
app.command("eval", epilog=eval_examples)(eval_cmd)
app.command("generate", epilog=generate_examples)(generate_cmd)
app.command("export", epilog=export_examples)(export_cmd)
app.command("distill", epilog=distill_examples)(distill_cmd)
app.command("report", epilog=report_examples)(report_cmd)
app.command("compare", epilog=compare_examples)(compare_cmd)
app.command("demo", epilog=demo_examples)(demo_cmd)
app.add_typer(stats_app, name="stats")
app.add_typer(data_app, name="data")
app.add_typer(weights_app, name="weights")
app.add_typer(models_app, name="models")
app.add_typer(prompts_app, name="prompts", help="Prompt lists: check (recognises known lists), draw from COCO, fetch.")


def _print_version(value: bool) -> None:
    if value:
        stdout.print(f"sidbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False):
    """SiD-LSG distillation and reproducible text-to-image evaluation."""
    install_warning_printer()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
