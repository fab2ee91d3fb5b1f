"""A refused command leaves nothing new behind: every input (weights files, the logging backend,
each item of a list option, the validation split, values from --config) is checked before any
run or stage folder exists; the one line names the file or option and what to do."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.errors import UserError
from amfmedit.io import torch_load

SMALL_PRETRAIN = ["--tabular-encoder", "mlp", "--tabular-dim", "16", "--image-arch", "resnet18", "--epochs", "1",
                  "--warmup-epochs", "0", "--batch-size", "32", "--quiet"]
BASELINE = ["finetune", "--fusion", "none", "--modality", "tabular", "--seeds", "2022", "--lr", "0.001",
            "--batch-size", "64", "--epochs", "1", "--quiet"]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "dir"
            for p in root.rglob("*")} if root.exists() else {}


def _refused(argv, match: str, *watch: Path) -> str:
    """Run the CLI; exit 2, one line matching ``match``, and every folder in ``watch`` as it was."""
    before = [_snapshot(w) for w in watch]
    res = CliRunner().invoke(app, [str(a) for a in argv])
    text = res.output.strip()
    assert res.exit_code == 2, f"{argv}: exit {res.exit_code}\n{text}\n{res.exception!r}"
    assert "Traceback" not in text
    lines = [x for x in text.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), f"{argv}: not one line:\n{text}"
    assert re.search(match, lines[0]), f"{lines[0]!r} does not match {match!r}"
    for w, b in zip(watch, before):
        after = _snapshot(w)
        assert after == b, f"{argv}: {w} changed: {sorted(set(after) ^ set(b))}"
    return lines[0]


@pytest.fixture
def env(tiny_ol3i, tmp_path, monkeypatch):
    """No run yet: ./runs (absent) and the tiny data dir through the environment."""
    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "runs"


class Payload:
    """Unpickling this runs code (what a hostile weights file does)."""

    def __reduce__(self):
        return (os.getcwd, ())


def _weights_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"text": folder / "notes.pt", "wrong": folder / "wrong.pt", "zip-payload": folder / "payload.pt",
             "pickle-payload": folder / "payload.pkl"}
    files["text"].write_text("these are not weights\n")
    torch.save({"encoder.weight": torch.zeros(3, 3)}, files["wrong"])
    torch.save({"conv1.weight": Payload()}, files["zip-payload"])
    with open(files["pickle-payload"], "wb") as fh:
        pickle.dump({"conv1.weight": Payload()}, fh)
    return files


@pytest.mark.parametrize("kind, message", [
    ("text", r"notes\.pt: not a readable checkpoint"),
    ("wrong", r"wrong\.pt: not a resnet18 state dict"),
    ("zip-payload", r"payload\.pt: .*refused as unsafe"),
    ("pickle-payload", r"payload\.pkl: .*refused as unsafe"),
])
def test_image_weights_are_loaded_before_the_run_folder_exists(env, tiny_ol3i, tmp_path, kind, message):
    files = _weights_files(tmp_path / "weights")
    line = _refused(["pretrain", "--data", tiny_ol3i.name, "--image-weights", files[kind], *SMALL_PRETRAIN],
                    message, tmp_path)
    assert not env.exists()
    assert "weights_only" not in line and "damaged or truncated" not in line or kind == "text"


def test_a_pickle_payload_is_refused_as_unsafe_not_damaged(tmp_path):
    files = _weights_files(tmp_path)
    for kind in ("zip-payload", "pickle-payload"):
        with pytest.raises(UserError) as err:
            torch_load(files[kind])
        text = str(err.value)
        assert "refused as unsafe" in text, text
        assert "weights_only" not in text and "damaged" not in text and "truncated" not in text, text
    with pytest.raises(UserError, match=r"notes\.pt: not a readable checkpoint \(damaged or truncated"):
        torch_load(files["text"])  # a file that is not a checkpoint at all is still called damaged


def test_a_missing_logging_backend_is_refused_before_any_folder(env, tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # not installed (import fails)
    _refused(["pretrain", "--data", tiny_ol3i.name, "--log", "mlflow", *SMALL_PRETRAIN],
             r"--log mlflow: the mlflow package is not installed; pip install mlflow", tmp_path)
    _refused([*BASELINE, "--data", tiny_ol3i.name, "--log", "mlflow"], r"--log mlflow: .*pip install mlflow", tmp_path)
    assert not env.exists()


def test_every_item_of_a_list_option_is_checked_before_the_first_trains(env, tiny_ol3i, tmp_path):
    _refused([*BASELINE, "--data", tiny_ol3i.name, "--tabular-encoder", "mlp,ft_mambo"],
             r"--tabular-encoder ft_mambo: not one of .*did you mean ft_mamba", tmp_path)
    _refused([*BASELINE, "--data", tiny_ol3i.name, "--tabular-encoder", "mlp", "--image-arch", "resnet99"],
             r"--image-arch resnet99: not one of", tmp_path)
    assert not env.exists()


@pytest.fixture
def one_class_val(tiny_ol3i, tmp_path):
    """A copy of the tiny cohort whose validation split holds only negatives."""
    data = tmp_path / "data-1c"
    folder = shutil.copytree(tiny_ol3i.path, data / "oneclass")
    table = pd.read_parquet(folder / "tabular.parquet")
    table.loc[table["split"] == "val", "label"] = 0
    table.to_parquet(folder / "tabular.parquet", index=False)
    return data


def test_a_one_class_validation_split_starts_no_run(env, one_class_val, tmp_path):
    _refused([*BASELINE, "--data", "oneclass", "--data-dir", one_class_val],
             r"oneclass: the val split \(38 rows\) holds only class 0: .*prepare the data with a split where it is defined",
             tmp_path)
    _refused(["pretrain", "--data", "oneclass", "--data-dir", one_class_val, *SMALL_PRETRAIN],
             r"oneclass: the val split \(38 rows\) holds only class 0", tmp_path)
    assert not env.exists()


def test_pretrain_without_data_and_without_a_run_is_one_line(env, tmp_path):
    _refused(["pretrain", "--quiet"], r"pretrain needs --data NAME", tmp_path)
    _refused(["pretrain", "--resume", "--quiet"], r"no run in .*; start one with `amfmedit pretrain --data NAME`",
             tmp_path)


def test_a_value_from_a_config_file_is_reported_with_the_file(env, tiny_ol3i, tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text("epochs = 0\n")
    line = _refused(["pretrain", "--data", tiny_ol3i.name, "--config", config, "--quiet"],
                    r"--config .*settings\.toml: epochs = 0: must be at least 1", tmp_path)
    assert "--epochs 0" not in line
    config.write_text("[finetune]\nlr = -1.0\n")
    _refused([*BASELINE[:7], "--quiet", "--data", tiny_ol3i.name, "--config", config],
             r"--config .*settings\.toml: lr = -1\.0: ", tmp_path)
    # a typed value is still reported as typed
    line = _refused(["pretrain", "--data", tiny_ol3i.name, "--epochs", "0", "--quiet"], r"--epochs", tmp_path)
    assert "settings.toml" not in line


def test_predict_that_would_score_no_row_is_refused_and_writes_nothing(pretrained_run, tiny_ol3i, tmp_path):
    from test_train_pipeline import _raw_test_table  # noqa: E402 (tests/train: raw rows of the tiny cohort)

    res = CliRunner().invoke(app, [*BASELINE])
    assert res.exit_code == 0, res.output
    raw = pd.read_csv(_raw_test_table(tiny_ol3i, tmp_path / "new")).head(3)
    raw["age_at_scan"] = ["old", "older", "oldest"]  # every row bad, each in its own way
    table = tmp_path / "new.csv"
    raw.to_csv(table, index=False)
    out = tmp_path / "scored.csv"
    _refused(["predict", "--table", table, "--out", out, "--skip-bad-rows"],
             r"new\.csv: none of the 3 rows can be scored .*; fix them", tmp_path)
    assert not out.exists() and not (tmp_path / "scored.skipped.csv").exists()


HOLD_LOCK = textwrap.dedent('''
    import sys, time
    from amfmedit.train import rundir
    run = rundir.Run(__import__("pathlib").Path(sys.argv[1]))
    with rundir.stage_lock(run, sys.argv[2]):
        print("locked", flush=True)
        time.sleep(120)
''')


def test_evaluate_refuses_while_a_stage_of_the_run_is_training(pretrained_run, tmp_path):
    res = CliRunner().invoke(app, [*BASELINE])
    assert res.exit_code == 0, res.output
    run = pretrained_run.root
    (run / "finetune-amf-trainable-seed2022").mkdir()  # the training in progress: no COMPLETE yet
    script = tmp_path / "hold.py"
    script.write_text(HOLD_LOCK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(run), "finetune-amf-trainable-lrsearch"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        _refused(["evaluate"], rf"another amfmedit process \(pid {proc.pid}\) is still writing "
                               rf"finetune-amf-trainable-seed\*; wait for it to finish, then run `amfmedit evaluate` "
                               rf"again", run)
    finally:
        proc.kill()
        proc.wait(10)
    assert not (run / "evaluate").exists()
    res = CliRunner().invoke(app, ["evaluate"])  # once it is gone, evaluate scores what is finished
    assert res.exit_code == 0, res.output
    assert (run / "evaluate" / "COMPLETE").is_file()
