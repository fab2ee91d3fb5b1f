"""The ``amfmedit`` command line. One module per subcommand; each only parses, calls, prints."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from amfmedit import __version__
from amfmedit.cli.common import app, show_warnings_as_lines

# Subcommands register themselves on import (one module per stage).
from amfmedit.cli import info as _info  # noqa: E402,F401
from amfmedit.cli import prepare as _prepare  # noqa: E402,F401
from amfmedit.cli import pretrain as _pretrain  # noqa: E402,F401
from amfmedit.cli import rconf as _rconf  # noqa: E402,F401
from amfmedit.cli import finetune as _finetune  # noqa: E402,F401
from amfmedit.cli import baseline as _baseline  # noqa: E402,F401
from amfmedit.cli import evaluate as _evaluate  # noqa: E402,F401
from amfmedit.cli import predict as _predict  # noqa: E402,F401
from amfmedit.cli import export as _export  # noqa: E402,F401
from amfmedit.cli import explain as _explain  # noqa: E402,F401
from amfmedit.cli import report as _report  # noqa: E402,F401
from amfmedit.cli import bench as _bench  # noqa: E402,F401
from amfmedit.cli import study as _study  # noqa: E402,F401


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"amfmedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """AMF-MedIT: prepare -> pretrain -> rconf -> finetune -> evaluate -> explain."""


def main() -> None:
    show_warnings_as_lines()
    app()
