"""Fixtures for the explain tests: one tiny trained run, copied per test.

The cohort is the shared ``tiny_ol3i`` one (240 patients, 40 features, seed 7) prepared at
64 x 64: at 32 x 32 ResNet's last stage is a single cell and Grad-CAM has nothing to localise.
The run holds a 1-epoch contrastive pretraining (ResNet-18 + MLP of width 16), a fine-tuned
concatenation model with frozen encoders (Grad-CAM's default) and a supervised MLP tabular
model (IG's default).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def ol3i64(tmp_path_factory) -> Prepared:
    """The tiny synthetic OL3I cohort at 64 x 64 pixels."""
    from amfmedit.data.prepare import apply_overrides, prepare
    from amfmedit.data.spec import load_spec

    data_dir = tmp_path_factory.mktemp("explain-data")
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=64)
    res = prepare(spec, data_dir=data_dir, synthetic=dict(patients=240, seed=7, features=40, prevalence=0.2))
    return Prepared(res.path, data_dir, spec.name)


@pytest.fixture(scope="session")
def trained_template(ol3i64, tmp_path_factory) -> TrainedRun:
    runs = tmp_path_factory.mktemp("explain-runs")
    common = ["--runs-dir", runs, "--data-dir", ol3i64.data_dir]
    ok("pretrain", "--data", ol3i64.name, "--run", "tiny", "--tabular-encoder", "mlp", "--tabular-dim", "16",
       "--image-arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "32", "--quiet", *common)
    ok("finetune", "--run", "tiny", "--fusion", "concat", "--strategy", "frozen", *QUICK, *common)
    ok("finetune", "--run", "tiny", "--fusion", "none", "--modality", "tabular", "--epochs", "2", "--lr", "0.01",
       "--seeds", "2022", "--quiet", *common)
    return TrainedRun(runs, ol3i64.data_dir, ol3i64.name, "tiny")


@pytest.fixture
def trained_run(trained_template, tmp_path, monkeypatch) -> TrainedRun:
    """A private copy of the tiny trained run; $AMFMEDIT_RUNS / $AMFMEDIT_DATA point at it."""
    runs = tmp_path / "runs"
    shutil.copytree(trained_template.root, runs / trained_template.run)
    monkeypatch.setenv("AMFMEDIT_RUNS", str(runs))
    monkeypatch.setenv("AMFMEDIT_DATA", str(trained_template.data_dir))
    return TrainedRun(runs, trained_template.data_dir, trained_template.data, trained_template.run)
