"""The command line's consoles and error printer: messages and tables on stderr, machine output on stdout.

stdout carries only what a script would read (``--json``, ``--out -``), so ``sidbench eval ... --json | jq``
works. Outside a terminal nothing is wrapped (paths, URLs and table rows stay on one line each).
"""
from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from sidbench.core.errors import SidbenchError, SidbenchWarning


_made: dict[int, tuple[object, Console]] = {}


def _console(stream) -> Console:
    """One rich Console per stream: terminal width on a TTY, unbounded (never wrapped) elsewhere."""
    known = _made.get(id(stream))
    if known is None or known[0] is not stream:
        tty = hasattr(stream, "isatty") and stream.isatty()
        known = _made[id(stream)] = (stream, Console(file=stream, soft_wrap=True, highlight=False,
                                                     width=None if tty else 10_000))
    return known[1]


class _Lazy:
    """A console bound to the stream at use time (tests and runners swap sys.stderr/sys.stdout)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        return getattr(_console(getattr(sys, self._name)), attr)


console = _Lazy("stderr")   # everything a person reads: progress, tables, warnings, "written to ..."
err_console = console       # errors too (kept as a name for readability at call sites)
stdout = _Lazy("stdout")    # only machine-readable output


def print_json(data) -> None:
    """The results object on stdout, as JSON (for ``--json`` and ``--out -``)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def fail(e: Exception | str) -> NoReturn:
    """Print ``error: ...`` (the text as is, never read as markup) and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {escape(str(e))}")
    raise typer.Exit(2)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, SidbenchWarning):
        console.print(f"[yellow]warning:[/] {escape(str(message))}")
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def install_warning_printer() -> None:
    """On the command line a SidbenchWarning reads ``warning: ...`` (no file:line of our code)."""
    warnings.showwarning = _show_warning


@contextmanager
def user_errors():
    """Inside a verb: a SidbenchError (bad input, missing file) becomes ``error: ...`` and exit 2, not a traceback."""
    try:
        yield
    except SidbenchError as e:
        fail(e)
