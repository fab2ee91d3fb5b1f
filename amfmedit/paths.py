"""Where prepared datasets and runs live: an explicit option, else an environment variable, else ./."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "AMFMEDIT_DATA"
RUNS_ENV = "AMFMEDIT_RUNS"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``--data-dir``, else ``$AMFMEDIT_DATA``, else ``./data``."""
    return Path(explicit or os.environ.get(DATA_ENV) or "data")


def runs_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The runs root: ``--runs-dir``, else ``$AMFMEDIT_RUNS``, else ``./runs``."""
    return Path(explicit or os.environ.get(RUNS_ENV) or "runs")


def repo_root() -> Path:
    """The source checkout holding ``data_specs/`` (editable installs and clones)."""
    return Path(__file__).resolve().parents[1]
