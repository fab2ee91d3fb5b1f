"""Run directory: runs written first, latest run by default, finished stages protected."""

import pytest

from amfmedit.errors import UserError
from amfmedit.io import read_json
from amfmedit.train import rundir


def _run(tmp_path, name, data="synthetic-ol3i"):
    return rundir.create_run(tmp_path, name, data=data, data_dir=None, environment={"torch": "x"})


def test_create_writes_run_and_environment_and_latest_is_default(tmp_path):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b")
    assert read_json(a.root / "run.json")["data"] == "synthetic-ol3i"
    assert (a.root / "environment.json").is_file()
    assert rundir.open_run(tmp_path).name == "b"
    assert rundir.open_run(tmp_path, "a").root == a.root
    b.record_command("pretrain", ["amfmedit", "pretrain", "--data", "x y"])
    assert read_json(b.root / "run.json")["commands"][0]["argv"] == "amfmedit pretrain --data 'x y'"


def test_unknown_run_and_no_run_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="no run in .*amfmedit pretrain --data"):
        rundir.open_run(tmp_path)
    _run(tmp_path, "alpha")
    with pytest.raises(UserError, match="--run alpah: no such run .*did you mean alpha"):
        rundir.open_run(tmp_path, "alpah")


def test_finished_stage_needs_force_and_unfinished_needs_resume_or_force(tmp_path):
    run = _run(tmp_path, "r")
    d = rundir.begin_stage(run, "pretrain")
    (d / "last.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="holds an unfinished stage; continue it with --resume"):
        rundir.begin_stage(run, "pretrain")
    assert rundir.begin_stage(run, "pretrain", resume=True) == d and (d / "last.pt").exists()
    rundir.mark_complete(d, {"epochs": 1})
    with pytest.raises(UserError, match="is finished; pass --force"):
        rundir.begin_stage(run, "pretrain")
    d2 = rundir.begin_stage(run, "pretrain", force=True)
    assert d2 == d and not (d / "last.pt").exists()
    with pytest.raises(UserError, match="nothing to resume"):
        rundir.begin_stage(run, "rconf", resume=True)


def test_require_stage_names_the_command(tmp_path):
    run = _run(tmp_path, "r")
    with pytest.raises(UserError, match=r"run r has no pretrain/ stage; run `amfmedit pretrain --data synthetic-ol3i` first"):
        rundir.require_stage(run, "pretrain", "amfmedit pretrain --data synthetic-ol3i")
