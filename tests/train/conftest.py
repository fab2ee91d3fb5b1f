"""Fixtures for the training tests: a tiny pretrained run, copied per test so tests stay independent."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

# Small but real: ResNet-18 (the zoo's quick image encoder) at 32 x 32, FT-Mamba of width 16.
PRETRAIN_ARGS = ["--tabular-encoder", "ft_mamba", "--tabular-dim", "16", "--image-arch", "resnet18",
                 "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "32", "--quiet"]


@dataclass(frozen=True)
class RunFixture:
    runs_dir: Path
    data_dir: Path
    data: str
    run: str

    @property
    def root(self) -> Path:
        return self.runs_dir / self.run

    def env(self) -> dict:
        return {"AMFMEDIT_RUNS": str(self.runs_dir), "AMFMEDIT_DATA": str(self.data_dir)}


@pytest.fixture(scope="session")
def pretrained_template(tiny_ol3i, tmp_path_factory) -> RunFixture:
    from typer.testing import CliRunner

    from amfmedit.cli import app

    runs = tmp_path_factory.mktemp("template-runs")
    res = CliRunner().invoke(app, ["pretrain", "--data", tiny_ol3i.name, "--data-dir", str(tiny_ol3i.data_dir),
                                   "--runs-dir", str(runs), "--run", "tiny", *PRETRAIN_ARGS])
    assert res.exit_code == 0, res.output
    return RunFixture(runs, tiny_ol3i.data_dir, tiny_ol3i.name, "tiny")


@pytest.fixture
def pretrained_run(pretrained_template, tmp_path, monkeypatch) -> RunFixture:
    """A private copy of the tiny pretrained run; $AMFMEDIT_RUNS / $AMFMEDIT_DATA point at it."""
    runs = tmp_path / "runs"
    shutil.copytree(pretrained_template.root, runs / pretrained_template.run)
    fx = RunFixture(runs, pretrained_template.data_dir, pretrained_template.data, pretrained_template.run)
    for k, v in fx.env().items():
        monkeypatch.setenv(k, v)
    return fx
