"""Where prepared datasets and runs live: an explicit option, else an environment variable, else ./."""

from __future__ import annotations

import os
from pathlib import Path

from amfmedit.errors import UserError

DATA_ENV = "AMFMEDIT_DATA"
RUNS_ENV = "AMFMEDIT_RUNS"


def _folder(path: Path, option: str, env: str, given: bool) -> Path:
    if path.exists() and not path.is_dir():
        source = option if given else (f"${env}" if os.environ.get(env) else "the default")
        raise UserError(f"{source} {path}: is a file, not a folder; pass a folder (it is created when missing)")
    return path


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``--data-dir``, else ``$AMFMEDIT_DATA``, else ``./data`` (a file there is an error)."""
    return _folder(Path(explicit or os.environ.get(DATA_ENV) or "data"), "--data-dir", DATA_ENV, explicit is not None)


def runs_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The runs root: ``--runs-dir``, else ``$AMFMEDIT_RUNS``, else ``./runs`` (a file there is an error)."""
    return _folder(Path(explicit or os.environ.get(RUNS_ENV) or "runs"), "--runs-dir", RUNS_ENV, explicit is not None)


def repo_root() -> Path:
    """The source checkout holding ``data_specs/`` (editable installs and clones)."""
    return Path(__file__).resolve().parents[1]
