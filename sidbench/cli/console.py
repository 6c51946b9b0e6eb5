"""The command line's one console and one error printer: results on stdout, messages on stderr, exit 2 on error."""
from __future__ import annotations

from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from sidbench.core.errors import SidbenchError

console = Console(soft_wrap=True, highlight=False)          # soft wrap: paths and URLs are never split
err_console = Console(stderr=True, soft_wrap=True, highlight=False)


def fail(e: Exception | str) -> NoReturn:
    """Print ``error: ...`` (the text as is, never read as markup) and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {escape(str(e))}")
    raise typer.Exit(2)


@contextmanager
def user_errors():
    """Inside a verb: a SidbenchError (bad input, missing file) becomes ``error: ...`` and exit 2, not a traceback."""
    try:
        yield
    except SidbenchError as e:
        fail(e)
