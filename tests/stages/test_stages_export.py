"""``amfmedit export`` then ``predict --model`` in a fresh process, with the run folder gone, gives what
``predict`` gives from the run: the same probabilities and decisions. Bad requests are one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.models.export import EXPORT_PACKAGES, missing_packages
from amfmedit.stages.exported import open_export
from test_stages_pipeline import _raw_test_table  # noqa: E402 (tests/train: the pipeline test's inverse of prepare)

pytestmark = pytest.mark.skipif(bool(missing_packages()), reason=f"the export extra is not installed "
                                f"({', '.join(missing_packages())} of {', '.join(EXPORT_PACKAGES)} missing)")
REPO = Path(__file__).resolve().parents[2]
FINETUNE = ["--strategy", "frozen", "--epochs", "1", "--lr", "0.001", "--seeds", "2022", "--quiet"]
PROB_TOLERANCE = 1e-5


def _cli(*args, code: int = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


def _run_docs_example(folder: Path, table: Path):
    text = (REPO / "docs" / "export.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- example:export -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/export.md lost its <!-- example:export --> code block"
    (table.parent / "model-export").symlink_to(folder, target_is_directory=True)
    old = os.getcwd()
    os.chdir(table.parent)
    try:
        namespace: dict = {"__name__": "__docs__"}
        exec(compile(m.group(1), "docs/export.md", "exec"), namespace)  # noqa: S102 - the documented example itself
    finally:
        os.chdir(old)
    return namespace["scored"]


def _one_line(res) -> str:
    text = " ".join(res.output.split())
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output, res.output
    return text


@pytest.mark.parametrize("fusion,encoder", [("amf", "ft_mamba"), ("concat", "ft_transformer")])
def test_export_then_predict_model_in_a_fresh_process_reproduces_predict(fusion, encoder, pretrained_run, tiny_ol3i,
                                                                         tmp_path):
    if encoder != "ft_mamba":  # the fixture's run was pretrained with FT-Mamba (tests/train/conftest.py)
        _cli("pretrain", "--data", tiny_ol3i.name, "--run", f"pre-{encoder}", "--tabular-encoder", encoder,
             "--tabular-dim", "16", "--image-arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0",
             "--batch-size", "32", "--quiet")
    if fusion == "amf":
        _cli("rconf", "--lr", "0.01", "--epochs", "1", "--quiet")
    _cli("finetune", "--fusion", fusion, *FINETUNE)
    _cli("evaluate")
    table = _raw_test_table(tiny_ol3i, tmp_path / "new")
    _cli("predict", "--table", table, "--image-column", "image", "--out", tmp_path / "from-run.csv")
    res = _cli("export", "--out", tmp_path / "export")
    stage = f"finetune-{fusion}-frozen-seed2022"
    assert f"{stage} of run" in res.output
    folder = tmp_path / "export"
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "model.pt", "schema.json", "operating_point.json",
                                                  "export.json", "model_card.md", "SHA256SUMS"}
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["stage"] == stage and manifest["parity"]["max_abs_prob_delta"] <= PROB_TOLERANCE
    assert (manifest["model"]["scan"] is not None) == (encoder == "ft_mamba")
    assert open_export(folder).runner().name == "pytorch"  # --runtime auto: the faster here (docs/export.md)
    card = (folder / "model_card.md").read_text()
    assert "absent-modality vectors" in card
    assert "95% interval" in card and "## Intended use" in card and "## Limits" in card and "synthetic" in card

    # a fresh process that cannot see the run: the runs folder is moved away first
    shutil.move(pretrained_run.runs_dir, tmp_path / "elsewhere")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMFMEDIT_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "amfmedit", "predict", "--model", str(folder), "--table", str(table),
                           "--image-column", "image", "--out", str(tmp_path / "from-export.csv")],
                          cwd=tmp_path / "new", env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    _cli("predict", "--model", folder, "--table", table, "--image-column", "image", "--runtime", "onnxruntime",
         "--out", tmp_path / "from-export-onnx.csv")

    want = pd.read_csv(tmp_path / "from-run.csv", dtype={"id": str})
    probs = [c for c in want.columns if c.startswith("prob_")]
    if fusion == "amf":  # docs/export.md's Python example, verbatim, beside the new table
        scored = _run_docs_example(folder, table)
        assert list(scored["id"]) == list(want["id"])
        assert list(scored["decision"].astype(str)) == list(want["decision"].astype(str))
        assert (scored["prob"] - want[probs[1]]).abs().max() <= PROB_TOLERANCE
    for name in ("from-export.csv", "from-export-onnx.csv"):
        got = pd.read_csv(tmp_path / name, dtype={"id": str})
        assert list(got.columns) == list(want.columns) and list(got["id"]) == list(want["id"])
        delta = (got[probs] - want[probs]).abs().to_numpy().max()
        assert delta <= PROB_TOLERANCE, f"{name}: max |delta probability| {delta:.2e}"
        for col in ("decision", "threshold_name", "calibration", "model"):
            assert got[col].equals(want[col]), f"{name}: column {col} differs"
        assert (got["threshold"] - want["threshold"]).abs().max() <= 1e-12
        assert want["decision"].notna().all()


def test_export_and_predict_model_refuse_bad_requests_in_one_line(pretrained_run, tiny_ol3i, tmp_path):
    _cli("finetune", "--fusion", "concat", *FINETUNE)
    out = tmp_path / "export"
    line = _one_line(_cli("export", "--out", out, code=2))  # evaluate has not run
    assert "operating_points.json" in line and "amfmedit evaluate" in line and not out.exists()
    _cli("evaluate")

    run = pretrained_run.root
    unfinished = run / "finetune-concat-frozen-seed2023"
    shutil.copytree(run / "finetune-concat-frozen-seed2022", unfinished)
    (unfinished / "COMPLETE").unlink()
    line = _one_line(_cli("export", "--out", out, "--stage", unfinished.name, code=2))
    assert f"--stage {unfinished.name}: not finished" in line and not out.exists()
    line = _one_line(_cli("export", "--out", out, "--stage", "finetune-amf-frozen-seed7", code=2))
    assert "--stage finetune-amf-frozen-seed7: not a finished classifier" in line

    _cli("export", "--out", out)
    line = _one_line(_cli("export", "--out", out, code=2))
    assert f"--out {out}: exists; pass --force" in line
    before = (out / "export.json").stat().st_mtime_ns
    _cli("export", "--out", out, "--force")  # an earlier export is replaced
    assert (out / "export.json").stat().st_mtime_ns != before
    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    line = _one_line(_cli("export", "--out", mine, "--force", code=2))
    assert "is not an amfmedit export" in line and (mine / "notes.txt").read_text() == "keep me"

    table = _raw_test_table(tiny_ol3i, tmp_path / "new")
    line = _one_line(_cli("predict", "--model", out, "--table", table, "--stage", "x", code=2))
    assert "--model scores with the export folder alone" in line
    line = _one_line(_cli("predict", "--model", out, "--table", table, "--runtime", "tensorrt", code=2))
    assert "--runtime tensorrt" in line

    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    with open(damaged / "schema.json", "a") as fh:
        fh.write(" ")
    line = _one_line(_cli("predict", "--model", damaged, "--table", table, "--image-column", "image", code=2))
    assert f"{damaged / 'schema.json'}: fails its SHA-256 check" in line
    assert not (tmp_path / "new" / "new_patients.predictions.csv").exists()
    (damaged / "SHA256SUMS").unlink()
    line = _one_line(_cli("predict", "--model", damaged, "--table", table, code=2))
    assert "not an amfmedit export (no SHA256SUMS)" in line
    line = _one_line(_cli("predict", "--model", tmp_path / "nowhere", "--table", table, code=2))
    assert "no such folder" in line

    _cli("predict", "--model", out, "--table", table, "--image-column", "image")  # the default output: beside the table
    assert len(pd.read_csv(tmp_path / "new" / "new_patients.predictions.csv")) == 48
