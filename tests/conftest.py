"""Shared fixtures for every area's tests, built once per test session in a temporary folder.

``tiny_ol3i``
    Prepared synthetic OL3I (``synthetic-ol3i`` spec): 240 patients, 1 x 32 x 32 CT images
    (window [-125, 275] HU), 40 features (38 continuous incl. the 12 informative ones,
    2 categorical: gender, smoker), binary ``label_1y`` with prevalence 0.2 so that every
    split has positives; splits in OL3I's proportions (154 / 38 / 48). Seed 7.
``tiny_dvm``
    Prepared synthetic DVM (``synthetic-dvm`` spec, ``min_class_count`` lowered to 20): 360
    adverts of 5 car models generated, 306 kept after DVM's filters (220 / 55 / 31), 3 x 32 x 32
    RGB images, 13 features (9 continuous, 4 categorical), multiclass label ``Genmodel_ID``,
    random 72/18/10 split. Seed 7.

Each returns a :class:`PreparedFixture`: ``path`` (the dataset folder), ``data_dir`` (its parent,
for ``--data-dir``) and ``name`` (for ``--data NAME``). It is ``os.PathLike``, so
``amfmedit.data.load_prepared(tiny_ol3i)`` works. Both live in the same data dir. Treat them as
read-only (copy the folder first if a test must change it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fixture_records import PreparedFixture, RunFixture  # noqa: E402  (tests/fixture_records.py)

TINY_OL3I = dict(patients=240, seed=7, features=40, prevalence=0.2)
TINY_DVM = dict(patients=360, seed=7, classes=5)


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("amfmedit-data")


def _prepare(spec_name: str, data_dir: Path, image_size: int, options: dict, **spec_changes) -> PreparedFixture:
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.stages.prepare import prepare
    from amfmedit.data.spec import load_spec

    spec = apply_overrides(load_spec(spec_name), image_size=image_size)
    for key, value in spec_changes.items():
        section, field = key.split("__")
        setattr(getattr(spec, section), field, value)
    result = prepare(spec, data_dir=data_dir, synthetic=options)
    return PreparedFixture(path=result.path, data_dir=data_dir, name=spec.name)


@pytest.fixture(scope="session")
def tiny_ol3i(shared_data_dir) -> PreparedFixture:
    """Prepared synthetic OL3I: 240 patients, 1 x 32 x 32, 40 features, prevalence 0.2."""
    return _prepare("synthetic-ol3i", shared_data_dir, 32, TINY_OL3I)


@pytest.fixture(scope="session")
def tiny_dvm(shared_data_dir) -> PreparedFixture:
    """Prepared synthetic DVM: ~360 adverts, 5 classes, 3 x 32 x 32, 13 features."""
    return _prepare("synthetic-dvm", shared_data_dir, 32, TINY_DVM, table__min_class_count=20)


# ---- one tiny pretrained run per session, copied per test (the stage and CLI tests)

# Small but real: ResNet-18 (the zoo's quick image encoder) at 32 x 32, FT-Mamba of width 16.
PRETRAIN_ARGS = ["--tabular-encoder", "ft_mamba", "--tabular-dim", "16", "--image-arch", "resnet18",
                 "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "32", "--probe-every", "1", "--quiet"]


@pytest.fixture(scope="session")
def pretrained_template(tiny_ol3i, tmp_path_factory) -> RunFixture:
    """``amfmedit pretrain --data NAME`` typed in a folder holding ./data, with no other path."""
    import os

    from typer.testing import CliRunner

    from amfmedit.cli import app

    work = tmp_path_factory.mktemp("template")
    (work / "data").symlink_to(tiny_ol3i.data_dir, target_is_directory=True)
    old, env = os.getcwd(), {k: os.environ.pop(k) for k in ("AMFMEDIT_RUNS", "AMFMEDIT_DATA") if k in os.environ}
    os.chdir(work)
    try:
        res = CliRunner().invoke(app, ["pretrain", "--data", tiny_ol3i.name, *PRETRAIN_ARGS])
    finally:
        os.chdir(old)
        os.environ.update(env)
    assert res.exit_code == 0, res.output
    (run,) = list((work / "runs").iterdir())
    return RunFixture(work / "runs", tiny_ol3i.data_dir, tiny_ol3i.name, run.name)


@pytest.fixture
def pretrained_run(pretrained_template, tmp_path, monkeypatch) -> RunFixture:
    """A private copy of the tiny pretrained run; the test runs in a folder with ./data and ./runs."""
    runs = tmp_path / "runs"
    shutil.copytree(pretrained_template.root, runs / pretrained_template.run)
    (tmp_path / "data").symlink_to(pretrained_template.data_dir, target_is_directory=True)
    monkeypatch.delenv("AMFMEDIT_RUNS", raising=False)
    monkeypatch.delenv("AMFMEDIT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    return RunFixture(runs, pretrained_template.data_dir, pretrained_template.data, pretrained_template.run)
