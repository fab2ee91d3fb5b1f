"""The run report's list of commands: every command that changed the run (the dataset's ``prepare``
first), never a refused one, and a command still running marked as such."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.errors import UserError
from amfmedit.io import read_json, write_json
from amfmedit.train import rundir


def _commands(text: str) -> list[str]:
    block = text.split("## Commands", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines() if line.strip()]


def test_report_lists_prepare_never_a_refused_command_and_marks_running_ones(pretrained_run):
    from amfmedit.stages.lifecycle import recorded
    from amfmedit.stages.report import build_report

    run = rundir.open_run()
    report = (run.root / "report.md").read_text()
    # the dataset's preparation is part of the run's story: its spec, and its command first
    assert "Prepared with `amfmedit prepare` from spec" in report and "generated (no raw files)" in report
    prov = read_json(pretrained_run.data_dir / pretrained_run.data / "provenance.json")
    first, *rest = _commands(report)
    (pretrain,) = read_json(run.root / "run.json")["commands"]  # (under pytest, argv is pytest's)
    assert first == prov["command"] and rest == [pretrain["argv"]]
    assert pretrain["stage"] == "pretrain" and pretrain["state"] == "finished"

    # a resume with other settings is refused (fit compares them with the interrupted run's) ...
    (run.stage("pretrain") / rundir.MARKER).unlink()
    config = (run.stage("pretrain") / "config.json").read_text()
    res = CliRunner().invoke(app, ["pretrain", "--resume", "--epochs", "9", "--quiet"])
    assert res.exit_code == 2 and "settings differ" in res.output
    # ... and changed nothing: not listed, and the stage's record still says how it was trained
    assert (run.stage("pretrain") / "config.json").read_text() == config
    assert not any("--epochs 9" in c for c in _commands(build_report(run)))
    assert [c["state"] for c in read_json(run.root / "run.json")["commands"]][-1] == "refused"

    # a command is listed as running while it runs, and plainly once it has finished
    argv = ["amfmedit", "finetune", "--fusion", "concat"]
    with recorded(run, "finetune-concat-frozen", argv):
        assert _commands(build_report(run))[-1] == "amfmedit finetune --fusion concat   # running"
    assert _commands((run.root / "report.md").read_text())[-1] == "amfmedit finetune --fusion concat"
    with pytest.raises(UserError), recorded(run, "rconf", ["amfmedit", "rconf", "--split", "tset"]):
        raise UserError("--split tset: use val or test")
    assert not any("tset" in c for c in _commands(build_report(run)))

    # a process that died while its command ran: stopped, not running
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = read_json(run.root / "run.json")
    info["commands"].append({"time": "2026-01-01T00:00:00", "stage": "rconf", "argv": "amfmedit rconf",
                             "state": "running", "pid": dead.pid})
    write_json(run.root / "run.json", info)
    assert _commands(build_report(run))[-1] == "amfmedit rconf   # stopped before it finished"
