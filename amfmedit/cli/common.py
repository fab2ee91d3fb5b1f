"""Shared CLI plumbing: the Typer app, option aliases defined once, and error handling.

Commands are thin: parse, validate, call the library, print. A :class:`UserError` from the
library becomes one red line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Callable, Optional

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

DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Folder of prepared datasets (default: $AMFMEDIT_DATA, else ./data)."),
]
RunsDir = Annotated[
    Optional[Path],
    typer.Option("--runs-dir", help="Folder of runs (default: $AMFMEDIT_RUNS, else ./runs)."),
]
RunName = Annotated[
    Optional[str],
    typer.Option("--run", help="Run name or path (default: the most recent run)."),
]
Force = Annotated[bool, typer.Option("--force", help="Replace a finished result instead of refusing.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")]


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
