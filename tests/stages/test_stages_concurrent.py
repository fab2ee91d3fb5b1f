"""Two processes on one stage: the second is refused at once, naming the holder, and touches
nothing; the first finishes and its result survives (with and without the learning-rate search)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from amfmedit.cli import app

from amfmedit.io import lock_file_for

ARGS = ["finetune", "--fusion", "none", "--modality", "tabular", "--tabular-encoder", "mlp", "--tabular-dim", "16",
        "--epochs", "40", "--patience", "1000", "--seeds", "2022", "--quiet"]


def _start(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "amfmedit", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("search", [False, True], ids=["--lr", "lr-search"])
def test_a_second_writer_is_refused_and_the_first_result_survives(pretrained_run, tmp_path, search, monkeypatch):
    run = pretrained_run.root
    args = ARGS + ([] if search else ["--lr", "0.001"])
    monkeypatch.chdir(run.parent.parent)  # the fixture's folder: ./runs and ./data, as the first process sees it
    first = _start(args, run.parent.parent)
    lock = lock_file_for(run / "supervised-tabular-lrsearch")
    deadline = time.time() + 120
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert lock.exists(), first.communicate()[1][-2000:]
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*") if ".locks" not in p.parts)
    # the second writer: this test process (already imported, so it arrives while the first trains)
    second = CliRunner().invoke(app, args)
    assert first.poll() is None, "the first process ended before the second arrived; the test proves nothing"
    out, err = first.communicate(timeout=600)
    assert second.exit_code == 2, second.output
    lines = [x for x in second.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "another amfmedit process" in lines[0] and f"pid {first.pid}" in lines[0], lines
    assert "Traceback" not in second.output
    assert first.returncode == 0, err[-2000:]
    stage = run / "supervised-tabular-seed2022"
    assert (stage / "COMPLETE").is_file() and (stage / "best.pt").is_file()
    # the loser changed nothing while the winner ran (all it saw existed already or was the winner's)
    assert not [p for p in before if p.startswith(".") and "deleting" in p]
