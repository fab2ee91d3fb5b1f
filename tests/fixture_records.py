"""Records the fixtures of every test folder hand out (a module of its own, not ``conftest``:
several folders have a ``conftest.py`` and ``from conftest import`` would be ambiguous)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PreparedFixture:
    path: Path
    data_dir: Path
    name: str

    def __fspath__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class RunFixture:
    runs_dir: Path
    data_dir: Path
    data: str
    run: str

    @property
    def root(self) -> Path:
        return self.runs_dir / self.run
