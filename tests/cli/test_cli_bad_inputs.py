"""Bad input and faults through the CLI, every subcommand: exit code 2, one line that names the
culprit, no traceback, and nothing written (the run and data folders are byte-for-byte as before)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amfmedit.cli import app

# (arguments, what the one line must say). Run in a copy of the tiny pretrained run: ./runs/<run>
# (pretrain finished, nothing else) and ./data/<tiny synthetic OL3I>.
CASES = [
    # prepare
    (["prepare", "--data", "nosuchspec"], r"nosuchspec"),
    (["prepare", "--data", "synthetic-ol3i", "--data-dir", "{file}"], r"--data-dir .*(not a folder|is a file)"),
    (["prepare", "--data", "{bad_spec}"], r"bogus"),
    # pretrain
    (["pretrain", "--data", "synthetic-ol3j"], r"no prepared dataset 'synthetic-ol3j'"),
    (["pretrain", "--data", "{data}", "--tabular-encoder", "ft_mambo"], r"did you mean ft_mamba"),
    (["pretrain", "--data", "{data}", "--temperature", "0"], r"--temperature 0"),
    (["pretrain", "--data", "{data}", "--temperature", "inf"], r"--temperature inf"),
    (["pretrain", "--data", "{data}", "--image-arch", "resnet99"], r"--image-arch resnet99"),
    (["pretrain", "--data", "{data}", "--optimizer", "sgd"], r"--optimizer sgd"),
    (["pretrain", "--data", "{data}", "--augment-rate", "1.5"], r"--augment-rate 1.5"),
    (["pretrain", "--data", "{data}", "--tabular-encoder", "mlp", "--ft-mamba-pooling", "cls"], r"only for --tabular-encoder ft_mamba"),
    (["pretrain", "--data", "{data}", "--image-weights", "/nonexistent/w.pt"], r"--image-weights /nonexistent/w.pt: no such file"),
    (["pretrain", "--data", "{data}", "--log", "wandb"], r"--log wandb"),
    (["pretrain", "--data", "{data}", "--epochs", "0"], r"--epochs"),
    (["pretrain", "--data", "{data}", "--batch-size", "1"], r"--batch-size"),
    (["pretrain", "--data", "{data}", "--runs-dir", "{file}"], r"--runs-dir .*(not a folder|is a file)"),
    (["pretrain", "--data", "{data}", "--config", "missing.toml"], r"--config missing.toml: no such file"),
    (["pretrain", "--data", "{data}", "--recipe", "cpux"], r"did you mean cpu"),
    (["pretrain", "--run", "{run}", "--data", "{data}"], r"pretrain is finished; pass --force"),
    (["pretrain", "--run", "{run}", "--resume"], r"finished.*nothing to resume"),
    (["pretrain", "--data", "{data}", "--epochs", "abc"], r"--epochs.*integer"),
    (["pretrain", "--data", "{data}", "--no-such-option"], r"--no-such-option"),
    # rconf
    (["rconf", "--split", "train"], r"--split train"),
    (["rconf", "--d-out", "1"], r"--d-out"),
    (["rconf", "--lrs", "abc"], r"--lrs 'abc'"),
    (["rconf", "--sampler-weights", "1,2,3"], r"--sampler-weights 1.0,2.0,3.0: need one weight per class"),
    (["rconf", "--mask-features", "age_at_sacn"], r"did you mean age_at_scan"),
    (["rconf", "--mask-top-k", "2"], r"has no IG report"),
    (["rconf", "--run", "nosuchrun"], r"--run nosuchrun: no such run"),
    # finetune
    (["finetune", "--fusion", "late"], r"--fusion late: not one of"),
    (["finetune", "--fusion", "none"], r"add --modality image or --modality tabular"),
    (["finetune", "--fusion", "amf", "--rconf", "0"], r"--rconf 0"),
    (["finetune", "--fusion", "amf", "--rconf", "inf"], r"--rconf inf"),
    (["finetune", "--fusion", "amf", "--rconf", "1e9"], r"leaves a modality no dimension"),
    (["finetune", "--fusion", "amf", "--rconf", "1", "--d-out", "1"], r"--d-out"),
    (["finetune", "--fusion", "concat", "--d-out", "64"], r"--d-out 64: only for --fusion amf"),
    (["finetune", "--fusion", "amf", "--rconf", "1", "--seeds", "abc"], r"--seeds 'abc'"),
    (["finetune", "--fusion", "amf", "--rconf", "1", "--seeds", "2022,2022"], r"repeated seed"),
    (["finetune", "--fusion", "amf", "--rconf", "1", "--aux-weight", "leakage"], r"--aux-weight 'leakage'"),
    (["finetune", "--fusion", "amf", "--rconf", "1", "--aux-weight", "kl=1"], r"--aux-weight kl"),
    (["finetune", "--fusion", "amf", "--rconf", "1", "--lambda-leakage", "-1"], r"leakage=-1"),
    (["finetune", "--strategy", "half", "--rconf", "1"], r"--strategy half"),
    (["finetune", "--fusion", "none", "--modality", "text"], r"--modality text"),
    (["finetune", "--fusion", "none", "--modality", "tabular", "--strategy", "frozen"], r"trained from scratch"),
    (["finetune", "--fusion", "amf"], r"needs R_conf"),
    (["finetune", "--fusion", "amf", "--rconf", "1", "--epochs", "0"], r"--epochs"),
    (["finetune", "--fusion", "amf", "--rconf", "1", "--optimizer", "sgd"], r"--optimizer sgd"),
    # evaluate
    (["evaluate"], r"no finished finetune-\* or supervised-\* stage"),
    (["evaluate", "--split", "train"], r"--split train"),
    # explain
    (["explain", "--method", "shap"], r"--method shap"),
    (["explain", "--method", "ig"], r"has no trained model with a tabular input"),
    (["explain", "--method", "gradcam", "--cam-scale", "odd"], r"--cam-scale odd"),
    # predict
    (["predict", "--table", "missing.csv"], r"missing\.csv"),
    # report
    (["report", "--run", "nosuchrun"], r"--run nosuchrun: no such run"),
]


def _snapshot(root: Path) -> dict:
    """Every file with its size and modification time, every folder by name."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "dir"
            for p in root.rglob("*")}


@pytest.fixture(scope="module")
def workspace(pretrained_template, tmp_path_factory):
    """One copy of the tiny pretrained run shared by the cases (none of them may change it)."""
    work = tmp_path_factory.mktemp("bad-inputs")
    shutil.copytree(pretrained_template.root, work / "runs" / pretrained_template.run)
    (work / "data").symlink_to(pretrained_template.data_dir, target_is_directory=True)
    (work / "a-file").write_text("not a folder\n")
    (work / "bad-spec.toml").write_text('name = "x"\nreader = "table"\nbogus = 1\n')
    return work, pretrained_template


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workspace, args, message, monkeypatch):
    work, template = workspace
    monkeypatch.chdir(work)
    monkeypatch.delenv("AMFMEDIT_RUNS", raising=False)
    monkeypatch.delenv("AMFMEDIT_DATA", raising=False)
    fill = {"{file}": str(work / "a-file"), "{data}": template.data, "{run}": template.run,
            "{bad_spec}": str(work / "bad-spec.toml")}
    argv = [fill.get(a, a) for a in args]
    before = _snapshot(work / "runs"), _snapshot(Path(os.path.realpath(work / "data")))
    res = CliRunner().invoke(app, argv)
    text = res.output.strip()
    assert res.exit_code == 2, f"{argv}: exit {res.exit_code}\n{text}\n{res.exception!r}"
    assert "Traceback" not in text
    lines = [x for x in text.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), f"{argv}: not one line:\n{text}"
    assert re.search(message, lines[0]), f"{argv}: {lines[0]!r} does not match {message!r}"
    after = _snapshot(work / "runs"), _snapshot(Path(os.path.realpath(work / "data")))
    assert after == before, f"{argv}: files changed: {set(after[0]) ^ set(before[0])}"
    assert len(CASES) >= 40
