"""Fixtures for the explain tests: one tiny trained run, copied per test.

The cohort is the shared ``tiny_ol3i`` one (240 patients, 40 features, seed 7) prepared at
64 x 64: at 32 x 32 ResNet's last stage is a single cell and Grad-CAM has nothing to localise.
The run holds a 1-epoch contrastive pretraining (ResNet-18 + MLP of width 16), a fine-tuned
concatenation model with frozen encoders (the run's model: what ``predict`` scores and
``explain`` explains by default) and a supervised MLP tabular model (IG's paper setting, named
with ``--stage``).
"""

from __future__ import annotations

import shutil

import pytest

from explain_cli import QUICK, ok  # noqa: E402  (tests/explain/explain_cli.py)
from fixture_records import PreparedFixture, RunFixture  # noqa: E402  (tests/fixture_records.py)


@pytest.fixture(scope="session")
def ol3i64(tmp_path_factory) -> PreparedFixture:
    """The tiny synthetic OL3I cohort at 64 x 64 pixels."""
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.stages.prepare import prepare
    from amfmedit.data.spec import load_spec

    data_dir = tmp_path_factory.mktemp("explain-data")
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=64)
    res = prepare(spec, data_dir=data_dir, synthetic=dict(patients=240, seed=7, features=40, prevalence=0.2))
    return PreparedFixture(res.path, data_dir, spec.name)


@pytest.fixture(scope="session")
def trained_template(ol3i64, tmp_path_factory) -> RunFixture:
    runs = tmp_path_factory.mktemp("explain-runs")
    common = ["--runs-dir", runs, "--data-dir", ol3i64.data_dir]
    ok("pretrain", "--data", ol3i64.name, "--run", "tiny", "--tabular-encoder", "mlp", "--tabular-dim", "16",
       "--image-arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "32", "--quiet", *common)
    ok("finetune", "--run", "tiny", "--fusion", "concat", "--strategy", "frozen", *QUICK, *common)
    ok("finetune", "--run", "tiny", "--fusion", "none", "--modality", "tabular", "--epochs", "2", "--lr", "0.01",
       "--seeds", "2022", "--quiet", *common)
    return RunFixture(runs, ol3i64.data_dir, ol3i64.name, "tiny")


@pytest.fixture
def trained_run(trained_template, tmp_path, monkeypatch) -> RunFixture:
    """A private copy of the tiny trained run; $AMFMEDIT_RUNS / $AMFMEDIT_DATA point at it."""
    runs = tmp_path / "runs"
    shutil.copytree(trained_template.root, runs / trained_template.run)
    monkeypatch.setenv("AMFMEDIT_RUNS", str(runs))
    monkeypatch.setenv("AMFMEDIT_DATA", str(trained_template.data_dir))
    return RunFixture(runs, trained_template.data_dir, trained_template.data, trained_template.run)
