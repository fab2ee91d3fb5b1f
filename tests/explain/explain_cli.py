"""CLI helpers shared by the explain tests.

A module of its own (not ``conftest``): several test folders have a ``conftest.py``, and
``from conftest import ...`` would pick whichever of them was imported last.
"""

from __future__ import annotations

QUICK = ["--epochs", "1", "--lr", "0.001", "--seeds", "2022", "--quiet"]


def invoke(*args: str):
    from typer.testing import CliRunner

    from amfmedit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: str):
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    return res
