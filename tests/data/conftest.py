"""Fixtures for tests/data; the raw-release writers live in ``data_raw.py``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"
