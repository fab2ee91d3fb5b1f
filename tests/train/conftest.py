"""Fixtures for the training tests: one tiny pretrained run per session, copied per test."""

from __future__ import annotations

import shutil

import pytest

from fixture_records import RunFixture  # noqa: E402  (tests/fixture_records.py)

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
