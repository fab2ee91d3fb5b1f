"""Shared CLI plumbing: the Typer app and error handling (options: :mod:`amfmedit.cli.options`).

Commands are thin: parse, validate, call the library, print. A :class:`UserError` from the
library becomes one red line on stderr and a non-zero exit, never a traceback. Help texts are
printed literally: ``[finetune]`` in a help string is a TOML section name, not Rich markup.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Callable

import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from amfmedit.errors import UserError
from amfmedit.io import DISK_FULL_HINT, is_disk_full, written_file

try:  # Typer >= 0.2x ships its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # older Typer depends on click itself
    from click import exceptions as click_exceptions


def _literally(command) -> None:
    # Typer reads help texts as Rich markup, which swallows "[pretrain]" and "[default: 5]";
    # escaped, every help text prints as written.
    command.help = escape(command.help) if command.help else command.help
    command.short_help = escape(command.short_help) if command.short_help else command.short_help
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)


class LiteralHelp(TyperCommand):
    """A command whose help texts (its own and its options') print literally."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _literally(self)


class OneLineErrors(TyperGroup):
    """A mistyped option or value is one line on stderr and exit 2, as every other bad input
    (Typer would draw a usage panel of several lines); help texts print literally."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _literally(self)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `amfmedit` alone: the help, as asked
                print(exc.format_message())
                sys.exit(0)
            where = exc.ctx.command_path if exc.ctx is not None else "amfmedit"
            message = " ".join(exc.format_message().split())
            _error_line(f"{message} (see `{where} --help`)")
            sys.exit(2)
        except click_exceptions.ClickException as exc:
            _error_line(" ".join(exc.format_message().split()))
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
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


_PACKAGE = Path(__file__).resolve().parents[1]


def show_warnings_as_lines() -> None:
    """Warnings raised by amfmedit's own code print as one yellow line on stderr, like :func:`warn`
    (Python's format adds the file, the line number and the source line of the call); others keep
    Python's format. For the console script, which owns its process."""
    python_format = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if Path(filename).resolve().is_relative_to(_PACKAGE):
            warn([message])
        else:
            python_format(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _error_line(message: str) -> None:
    err_console.print("[bold red]error:[/] ", end="", highlight=False)
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)  # paths and values literally


def fail(message: str, code: int = 2) -> None:
    _error_line(message)
    raise typer.Exit(code)


def guarded(fn: Callable) -> Callable:
    """Turn library UserErrors (and Ctrl-C) into one line and an exit code; a full disk that no
    writer named (:class:`amfmedit.io.DiskFullError`) is one line too, naming the file when the
    OS error does."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; finished files are intact, partial ones were removed", 130)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            fail(f"disk full while writing {written_file(exc) or 'a file (the OS did not say which)'}; "
                 f"{DISK_FULL_HINT}", 2)

    return wrapper


def command(name: str | None = None, **kwargs) -> Callable:
    """``@command()`` = ``@app.command()`` with :func:`guarded` error handling."""

    def deco(fn: Callable) -> Callable:
        return app.command(name, cls=LiteralHelp, **kwargs)(guarded(fn))

    return deco
