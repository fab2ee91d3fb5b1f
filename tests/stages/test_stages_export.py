"""``amfmedit export`` then ``predict --model`` in a fresh process, with the run folder gone, gives what
``predict`` gives from the run: the same probabilities and decisions. Bad requests are one line.

Each classifier is trained, evaluated, predicted from its run and exported once per module
(:func:`exported`: tracing a model to ONNX takes 10-20 s on a CPU); the tests read those folders
and change only copies, except that the fresh-process test moves the runs folder away while it
scores and puts it back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.models.export import EXPORT_PACKAGES, missing_packages
from amfmedit.stages import export as export_stage
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


@dataclass(frozen=True)
class Exported:
    """A classifier fine-tuned on a copy of the tiny pretrained run, evaluated, and exported."""

    work: Path  # the folder holding ./data and ./runs, where every command was typed
    run: Path  # the run folder (work/runs/NAME)
    stage: str  # the exported stage
    folder: Path  # what ``export --out`` wrote
    table: Path  # new patients: the test rows written back as raw values, with .npy images beside them
    from_run: Path  # ``predict --table`` of those patients from the run
    output: str  # what ``export`` printed


def _export_pipeline(work: Path, template, tiny_ol3i, fusion: str, encoder: str) -> Exported:
    shutil.copytree(template.root, work / "runs" / template.run)
    (work / "data").symlink_to(template.data_dir, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AMFMEDIT_RUNS", raising=False)
        mp.delenv("AMFMEDIT_DATA", raising=False)
        mp.chdir(work)
        if encoder != "ft_mamba":  # the template run was pretrained with FT-Mamba (tests/conftest.py)
            _cli("pretrain", "--data", tiny_ol3i.name, "--run", f"pre-{encoder}", "--tabular-encoder", encoder,
                 "--tabular-dim", "16", "--image-arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0",
                 "--batch-size", "32", "--quiet")
        if fusion == "amf":
            _cli("rconf", "--lr", "0.01", "--epochs", "1", "--quiet")
        _cli("finetune", "--fusion", fusion, *FINETUNE)
        _cli("evaluate")
        table = _raw_test_table(tiny_ol3i, work / "new")
        _cli("predict", "--table", table, "--image-column", "image", "--out", work / "from-run.csv")
        res = _cli("export", "--out", work / "export")
    manifest = json.loads((work / "export" / "export.json").read_text())
    return Exported(work, work / "runs" / manifest["run"], manifest["stage"], work / "export", table,
                    work / "from-run.csv", res.output)


@pytest.fixture(scope="module")
def exported(pretrained_template, tiny_ol3i, tmp_path_factory):
    """``exported(fusion, encoder) -> Exported``, built on first request and kept for the module."""
    made: dict[tuple[str, str], Exported] = {}

    def get(fusion: str, encoder: str) -> Exported:
        if (fusion, encoder) not in made:
            made[fusion, encoder] = _export_pipeline(tmp_path_factory.mktemp(f"export-{fusion}-{encoder}"),
                                                     pretrained_template, tiny_ol3i, fusion, encoder)
        return made[fusion, encoder]

    return get


def _run_docs_example(folder: Path, table: Path):
    text = (REPO / "docs" / "export.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- example:export -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/export.md lost its <!-- example:export --> code block"
    link = table.parent / "model-export"
    link.symlink_to(folder, target_is_directory=True)
    old = os.getcwd()
    os.chdir(table.parent)
    try:
        namespace: dict = {"__name__": "__docs__"}
        exec(compile(m.group(1), "docs/export.md", "exec"), namespace)  # noqa: S102 - the documented example itself
    finally:
        os.chdir(old)
        link.unlink()
    return namespace["scored"]


def _one_line(res) -> str:
    text = " ".join(res.output.split())
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output, res.output
    return text


@pytest.mark.parametrize("fusion,encoder", [("amf", "ft_mamba"), ("concat", "ft_transformer")])
def test_export_then_predict_model_in_a_fresh_process_reproduces_predict(fusion, encoder, exported, tmp_path,
                                                                         monkeypatch):
    done = exported(fusion, encoder)
    folder, table, stage = done.folder, done.table, f"finetune-{fusion}-frozen-seed2022"
    assert done.stage == stage and f"{stage} of run" in done.output
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "model.pt", "schema.json", "operating_point.json",
                                                  "export.json", "model_card.md", "SHA256SUMS"}
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["stage"] == stage and manifest["parity"]["max_abs_prob_delta"] <= PROB_TOLERANCE
    assert (manifest["model"]["scan"] is not None) == (encoder == "ft_mamba")
    assert open_export(folder).runner().name == "pytorch"  # --runtime auto: the faster here (docs/export.md)
    card = (folder / "model_card.md").read_text()
    assert "absent-modality vectors" in card
    assert "95% interval" in card and "## Intended use" in card and "## Limits" in card and "synthetic" in card

    # a fresh process that cannot see the run: the runs folder is moved away first (and back at the end)
    aside = tmp_path / "elsewhere"
    shutil.move(done.work / "runs", aside)
    monkeypatch.delenv("AMFMEDIT_RUNS", raising=False)
    monkeypatch.delenv("AMFMEDIT_DATA", raising=False)
    monkeypatch.chdir(done.work)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMFMEDIT_")}
        env["PYTHONPATH"] = str(REPO)
        proc = subprocess.run([sys.executable, "-m", "amfmedit", "predict", "--model", str(folder), "--table",
                               str(table), "--image-column", "image", "--out", str(tmp_path / "from-export.csv")],
                              cwd=table.parent, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        _cli("predict", "--model", folder, "--table", table, "--image-column", "image", "--runtime", "onnxruntime",
             "--out", tmp_path / "from-export-onnx.csv")
        scored = _run_docs_example(folder, table) if fusion == "amf" else None
    finally:
        shutil.move(aside, done.work / "runs")

    want = pd.read_csv(done.from_run, dtype={"id": str})
    probs = [c for c in want.columns if c.startswith("prob_")]
    if scored is not None:  # docs/export.md's Python example, verbatim, beside the new table
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


def _reuse_graph(folder: Path):
    """A stand-in for ``export_onnx`` that copies the graph ``folder`` holds instead of tracing the model
    again: the export stage around it runs unchanged, and its parity check (ONNX Runtime against the
    PyTorch model on the test split) refuses the copy unless it was traced from the same weights."""
    manifest = json.loads((folder / "export.json").read_text())

    def export_onnx(model, example, path, **_):
        shutil.copyfile(folder / "model.onnx", path)
        return {**{k: manifest["model"][k] for k in ("exporter", "opset", "scan")}, "inputs": manifest["inputs"],
                "output": manifest["output"]}

    return export_onnx


def test_export_and_predict_model_refuse_bad_requests_in_one_line(exported, tiny_ol3i, tmp_path, monkeypatch):
    """On a copy of the exported concatenation run: every refusal comes before any export work."""
    shared = exported("concat", "ft_transformer")
    shutil.copytree(shared.work / "runs", tmp_path / "runs")
    (tmp_path / "data").symlink_to((shared.work / "data").resolve(), target_is_directory=True)
    monkeypatch.delenv("AMFMEDIT_RUNS", raising=False)
    monkeypatch.delenv("AMFMEDIT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / shared.run.name
    out = tmp_path / "export"

    shutil.move(run / "evaluate", tmp_path / "evaluate-aside")  # the run as it was before `amfmedit evaluate`
    line = _one_line(_cli("export", "--out", out, code=2))
    assert "operating_points.json" in line and "amfmedit evaluate" in line and not out.exists()
    shutil.move(tmp_path / "evaluate-aside", run / "evaluate")

    unfinished = run / "finetune-concat-frozen-seed2023"
    shutil.copytree(run / "finetune-concat-frozen-seed2022", unfinished)
    (unfinished / "COMPLETE").unlink()
    line = _one_line(_cli("export", "--out", out, "--stage", unfinished.name, code=2))
    assert f"--stage {unfinished.name}: not finished" in line and not out.exists()
    line = _one_line(_cli("export", "--out", out, "--stage", "finetune-amf-frozen-seed7", code=2))
    assert "--stage finetune-amf-frozen-seed7: not a finished classifier" in line

    shutil.copytree(shared.folder, out)  # `amfmedit export --out export` of this run, made by the fixture
    line = _one_line(_cli("export", "--out", out, code=2))
    assert f"--out {out}: exists; pass --force" in line
    before = (out / "export.json").stat().st_mtime_ns
    monkeypatch.setattr(export_stage, "export_onnx", _reuse_graph(shared.folder))
    _cli("export", "--out", out, "--force")  # an earlier export is replaced
    assert (out / "export.json").stat().st_mtime_ns != before
    assert json.loads((out / "export.json").read_text())["stage"] == shared.stage
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
