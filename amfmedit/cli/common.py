"""Shared CLI plumbing: the Typer app and error handling (options: :mod:`amfmedit.cli.options`).

Commands are thin: parse, validate, call the library, print. A :class:`UserError` from the
library becomes one red line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
from typing import Callable

import typer
from rich.console import Console

from amfmedit.errors import UserError

app = typer.Typer(
    name="amfmedit",
    help="AMF-MedIT: image-tabular pretraining, modality confidence, AMF fusion, evaluation, explanations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

def warn(messages) -> None:
    """A stage's sanity warnings, one yellow line each on stderr (the text printed literally)."""
    for m in messages or []:
        err_console.print("[yellow]warning:[/] ", end="", highlight=False)
        err_console.print(str(m), markup=False, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guarded(fn: Callable) -> Callable:
    """Turn library UserErrors (and Ctrl-C) into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; finished files are intact, partial ones were removed", 130)

    return wrapper


def command(name: str | None = None, **kwargs) -> Callable:
    """``@command()`` = ``@app.command()`` with :func:`guarded` error handling."""

    def deco(fn: Callable) -> Callable:
        return app.command(name, **kwargs)(guarded(fn))

    return deco
