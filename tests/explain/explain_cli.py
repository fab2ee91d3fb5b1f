"""CLI helpers and records shared by the explain tests.

A module of its own (not ``conftest``): several test folders have a ``conftest.py``, and
``from conftest import ...`` would pick whichever of them was imported last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QUICK = ["--epochs", "1", "--lr", "0.001", "--seeds", "2022", "--quiet"]


@dataclass(frozen=True)
class TrainedRun:
    runs_dir: Path
    data_dir: Path
    data: str
    run: str

    @property
    def root(self) -> Path:
        return self.runs_dir / self.run


def invoke(*args: str):
    from typer.testing import CliRunner

    from amfmedit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: str):
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    return res


@dataclass(frozen=True)
class Prepared:
    path: Path
    data_dir: Path
    name: str

    def __fspath__(self) -> str:
        return str(self.path)
