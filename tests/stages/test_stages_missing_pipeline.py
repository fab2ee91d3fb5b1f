"""An incomplete cohort end to end: 30 % MAR value missingness and 20 % of the patients without a
scan are pretrained on (complete pairs), fine-tuned on (every row), evaluated by availability
pattern and under the test-time missingness sweep, and predicted (new patients without an image
path or with blank values)."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.data import load_prepared
from amfmedit.data.prepare import apply_overrides
from amfmedit.data.spec import load_spec
from amfmedit.stages.prepare import prepare
from amfmedit.train.checkpoint import load_checkpoint

PRETRAIN = ["--tabular-encoder", "ft_mamba", "--tabular-dim", "16", "--image-arch", "resnet18", "--epochs", "1",
            "--warmup-epochs", "0", "--batch-size", "32", "--quiet"]
FINETUNE = ["--epochs", "1", "--lr", "0.001", "--seeds", "2022", "--quiet"]
# 16 features (14 continuous, both categorical ones), near the generator's least: every FT-Mamba of the module
# trains and exports over fewer tokens (its export unrolls the scan over them)
INCOMPLETE = dict(patients=240, seed=7, features=16, prevalence=0.2, missing_rate=0.3, missing_mechanism="mar",
                  no_image_rate=0.2)


def _cli(*args, code: int = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The incomplete cohort, pretrained, with a concatenation model (no modality dropout, so only
    rows truly without a scan train the absent-image vector) and a tabular baseline, evaluated with
    the sweep. The test runs in a folder holding ./data and ./runs."""
    data_dir = tmp_path_factory.mktemp("incomplete-data")
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=32)
    result = prepare(spec, data_dir=data_dir, synthetic=INCOMPLETE)
    work = tmp_path_factory.mktemp("incomplete-work")
    (work / "data").symlink_to(data_dir, target_is_directory=True)
    old, env = os.getcwd(), {k: os.environ.pop(k) for k in ("AMFMEDIT_RUNS", "AMFMEDIT_DATA") if k in os.environ}
    os.chdir(work)
    try:
        _cli("pretrain", "--data", spec.name, "--run", "inc", *PRETRAIN)
        _cli("finetune", "--fusion", "concat", "--strategy", "frozen", "--modality-dropout", "0", *FINETUNE)
        _cli("finetune", "--fusion", "none", "--modality", "tabular", *FINETUNE)
        ev = _cli("evaluate", "--missingness-sweep", "0,0.5", "--image-drop", "0,0.5")
        yield work, load_prepared(result.path), ev.output
    finally:
        os.chdir(old)
        os.environ.update(env)


def _metrics(work) -> dict:
    return json.loads((work / "runs" / "inc" / "evaluate" / "metrics.json").read_text())


def test_pretraining_contrasts_the_complete_pairs_only(trained):
    work, ds, _ = trained
    marker = json.loads((work / "runs" / "inc" / "pretrain" / "COMPLETE").read_text())
    for split in ("train", "val"):
        rows = ds.indices(split)
        assert marker["complete_pairs"][split] == int(ds.complete[rows].sum()) < len(rows)
    assert marker["missing"] == "token"  # the measured default, recorded in the run


def test_rows_without_an_image_train_the_absent_vector(trained):
    work, ds, _ = trained
    stage = work / "runs" / "inc" / "finetune-concat-frozen-seed2022"
    cfg = json.loads((stage / "config.json").read_text())
    assert cfg["config"]["modality_dropout"] == 0 and cfg["config"]["missing"] == "token"
    state = load_checkpoint(stage / "best.pt")["model"]["state_dict"]
    assert (~ds.image_present[ds.indices("train")]).any()
    assert state["absent_image"].abs().sum() > 0  # zero at the start: moved only by rows without a scan
    # the encoders' frozen parameters did not move, the absent vectors did (trainable with frozen encoders)
    assert torch.equal(state["absent_table"], torch.zeros_like(state["absent_table"]))  # every row has a table


def test_default_dropout_on_incomplete_rows_and_the_baseline(trained):
    work, _, _ = trained
    cfg = json.loads((work / "runs" / "inc" / "supervised-tabular-seed2022" / "config.json").read_text())
    assert cfg["config"]["modality_dropout"] == 0 and cfg["config"]["missing"] == "token"


def test_evaluate_reports_each_availability_pattern_with_intervals(trained):
    work, ds, output = trained
    m = _metrics(work)
    rows = ds.indices("test")
    assert set(m["patterns"]) == {"complete", "table_only"}  # the cohort has no patient without a table
    assert m["patterns"]["table_only"]["rows"] == int((~ds.image_present[rows]).sum())
    assert m["patterns"]["complete"]["rows"] + m["patterns"]["table_only"]["rows"] == len(rows)
    for pattern in m["patterns"].values():
        for record in pattern["models"].values():
            auc = record["intervals"]["auc"]
            assert auc["low"] <= auc["estimate"] <= auc["high"]
        assert pattern["comparisons"] is not None  # two models: one paired comparison per metric
    text = (work / "runs" / "inc" / "evaluate" / "results.md").read_text()
    assert "## By availability pattern" in text and "### Table only" in text
    assert (work / "runs" / "inc" / "evaluate" / "comparisons-table_only.csv").is_file()
    assert "By availability pattern" in output
    pred = pd.read_csv(work / "runs" / "inc" / "evaluate" / "predictions" / "finetune-concat-frozen-seed2022.csv")
    assert set(pred["inputs"]) == {"complete", "table only"}


def test_the_sweep_at_zero_is_the_plain_evaluation(trained):
    work, _, _ = trained
    m = _metrics(work)
    sweep = m["missingness_sweep"]
    plain = {g["title"]: g["intervals"]["auc"]["estimate"] for g in m["groups"]}
    assert set(sweep["features"]) == set(plain) == set(sweep["images"])
    for title, value in plain.items():
        assert sweep["features"][title]["0"]["value"] == pytest.approx(value, abs=1e-12)
        assert sweep["images"][title]["0"]["value"] == pytest.approx(value, abs=1e-12)
    # removal changes what the models see: every model reading the table moves at r = 0.5
    for title, points in sweep["features"].items():
        assert points["0.5"]["value"] != points["0"]["value"], title
    fusion = next(t for t in plain if t.startswith("Concatenation"))
    assert sweep["images"][fusion]["0.5"]["value"] != sweep["images"][fusion]["0"]["value"]
    baseline = next(t for t in plain if t not in (fusion,))
    assert sweep["images"][baseline]["0.5"]["value"] == sweep["images"][baseline]["0"]["value"]  # reads no image
    assert (work / "runs" / "inc" / "evaluate" / "missingness_sweep.png").stat().st_size > 10_000


def _new_patients(ds, folder):
    """The test rows written back as raw values: blank values where they were missing, blank image
    cells for patients without a scan and for one more row whose cell is white space."""
    folder.mkdir()
    rows = ds.indices("test")
    out = {ds.schema.id_column: ds.ids[rows]}
    for j, f in enumerate(ds.schema.continuous):
        v = ds.x_cont[rows, j].astype(np.float64) * f.std + f.mean
        v[ds.missing[rows, j]] = np.nan
        out[f.column] = v
    for j, f in enumerate(ds.schema.categorical):
        out[f.column] = [f.categories[c - 1] if c > 0 else None for c in ds.x_cat[rows, j]]
    low, high = ds.schema.image.window
    cells = []
    for i in rows:
        if not ds.image_present[i]:
            cells.append("")
            continue
        np.save(folder / f"{ds.ids[i]}.npy", ds.images[i, 0].astype(np.float32) / 255.0 * (high - low) + low)
        cells.append(f"{ds.ids[i]}.npy")
    first = next(k for k, i in enumerate(rows) if ds.image_present[i])
    cells[first] = "  "
    out["image"] = cells
    pd.DataFrame(out).to_csv(folder / "new.csv", index=False)
    return folder / "new.csv", rows, first


def test_predict_scores_patients_without_an_image_or_with_missing_values(trained, tmp_path):
    work, ds, _ = trained
    table, rows, blank = _new_patients(ds, tmp_path / "new")
    out = tmp_path / "scored.csv"
    cwd = os.getcwd()
    os.chdir(work)
    try:
        _cli("predict", "--table", table, "--image-column", "image", "--stage", "finetune-concat-frozen-seed2022",
             "--out", out)
    finally:
        os.chdir(cwd)
    got = pd.read_csv(out, dtype={"id": str})
    assert list(got["id"]) == list(ds.ids[rows])
    no_image = ~ds.image_present[rows]
    no_image[blank] = True
    assert list(got["has_image"]) == list(~no_image)
    assert list(got["inputs"]) == ["table only" if n else "complete" for n in no_image]
    assert list(got["n_missing"]) == list(ds.missing[rows].sum(axis=1))
    assert np.isfinite(got[["prob_0", "prob_1"]].to_numpy()).all() and set(got["decision"]) <= {0, 1}
    # the same patients as evaluate scored them (rows with an image path as prepared)
    scored = pd.read_csv(work / "runs" / "inc" / "evaluate" / "predictions" / "finetune-concat-frozen-seed2022.csv",
                         dtype={"id": str})
    same = np.flatnonzero(~no_image | ~ds.image_present[rows])
    same = [k for k in same if k != blank]
    assert np.allclose(got["decision"].to_numpy()[same], scored["decision"].to_numpy()[same])
    assert not math.isnan(got["threshold"].iloc[0])


def test_a_second_pretraining_compares_impute_with_token(trained, tmp_path):
    """``pretrain --run R --config <R>/pretrain/config.toml --missing impute`` pretrains the other mode in
    pretrain-impute/ with every other setting of pretrain/; fusions and probes on it carry -impute."""
    work, _, _ = trained
    copy = tmp_path / "work"
    (copy / "runs").mkdir(parents=True)
    (copy / "data").symlink_to((work / "data").resolve(), target_is_directory=True)
    shutil.copytree(work / "runs" / "inc", copy / "runs" / "inc")
    cwd = os.getcwd()
    os.chdir(copy)
    try:
        res = _cli("finetune", "--fusion", "concat", "--strategy", "frozen", "--missing", "impute", *FINETUNE, code=2)
        assert "run inc has no pretrain-impute/ stage; run `amfmedit pretrain --run inc --config " in res.output
        assert "Traceback" not in res.output
        res = _cli("rconf", "--missing", "impute", "--quiet", code=2)
        assert "pretrain-impute/" in res.output
        toml = copy / "runs" / "inc" / "pretrain" / "config.toml"
        res = _cli("pretrain", "--run", "inc", "--config", toml, "--missing", "impute", "--quiet")
        assert "amfmedit finetune --fusion amf --missing impute" in " ".join(res.output.split())  # wrapped
        stage = copy / "runs" / "inc" / "pretrain-impute"
        first = json.loads(toml.with_name("config.json").read_text())["config"]
        second = json.loads((stage / "config.json").read_text())["config"]
        assert second == {**first, "missing": "impute"}  # the two pretrainings differ in the mode only
        _cli("finetune", "--fusion", "concat", "--strategy", "frozen", "--missing", "impute", "--modality-dropout",
             "0", *FINETUNE)
        _cli("rconf", "--missing", "impute", "--epochs", "1", "--lrs", "0.001", "--quiet")
    finally:
        os.chdir(cwd)
    run = copy / "runs" / "inc"
    tuned = run / "finetune-concat-frozen-impute-seed2022"
    assert json.loads((tuned / "config.json").read_text())["config"]["missing"] == "impute"
    state = load_checkpoint(tuned / "best.pt")["model"]["state_dict"]
    assert not any("missing" in k for k in state)  # an imputing encoder holds no missing embeddings
    assert json.loads((run / "rconf-impute" / "rconf.json").read_text())["r_conf"] > 0
    assert not (run / "rconf").exists()  # the run's own probes were never asked for


@pytest.mark.skipif(bool(__import__("amfmedit.models.export", fromlist=["x"]).missing_packages()),
                    reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")
@pytest.mark.parametrize("stage", ["finetune-concat-frozen-seed2022", "supervised-tabular-seed2022"])
def test_export_then_predict_model_scores_rows_with_missing_values_or_without_an_image(stage, trained, tmp_path):
    """The exported graph takes the missing mask and the presence flags: on PyTorch and on ONNX Runtime,
    ``predict --model`` gives the run's ``predict`` probabilities for rows with missing values and rows
    without an image, and evaluate's for the rows as prepared."""
    work, ds, _ = trained
    table, rows, blank = _new_patients(ds, tmp_path / "new")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        _cli("predict", "--table", table, "--image-column", "image", "--stage", stage, "--out", tmp_path / "run.csv")
        res = _cli("export", "--stage", stage, "--out", tmp_path / "export")
    finally:
        os.chdir(cwd)
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    assert [s["name"] for s in manifest["inputs"]][-3:] == ["missing", "image_present", "table_present"]
    assert manifest["parity"]["max_abs_prob_delta"] <= 1e-5, res.output
    want = pd.read_csv(tmp_path / "run.csv", dtype={"id": str})
    probs = ["prob_0", "prob_1"]
    no_image = ~ds.image_present[rows]
    no_image[blank] = True
    missing = ds.missing[rows].any(axis=1)
    assert missing.sum() >= 5 and (no_image & missing).sum() >= 1  # the cohort holds both kinds of row
    evaluated = pd.read_csv(work / "runs" / "inc" / "evaluate" / "predictions" / f"{stage}.csv", dtype={"id": str})
    for runtime in ("pytorch", "onnxruntime"):
        out = tmp_path / f"{runtime}.csv"
        _cli("predict", "--model", tmp_path / "export", "--table", table, "--image-column", "image",
             "--runtime", runtime, "--out", out)
        got = pd.read_csv(out, dtype={"id": str})
        assert list(got.columns) == list(want.columns) and list(got["id"]) == list(want["id"])
        assert np.abs(got[probs].to_numpy() - want[probs].to_numpy()).max() <= 1e-5, runtime
        for col in ("decision", "has_image", "has_table", "n_missing", "inputs"):
            assert got[col].equals(want[col]), f"{runtime}: column {col} differs"
        # as evaluate scored them: every row but the one whose image cell was blanked by hand
        same = [k for k in range(len(rows)) if k != blank]
        assert np.array_equal(got["decision"].to_numpy()[same], evaluated["decision"].to_numpy()[same]), runtime
    # evaluate's probabilities are as trained: the graph's, uncalibrated, are the same
    _cli("predict", "--model", tmp_path / "export", "--table", table, "--image-column", "image", "--runtime",
         "onnxruntime", "--calibration", "none", "--out", tmp_path / "raw.csv")
    raw = pd.read_csv(tmp_path / "raw.csv", dtype={"id": str})
    assert np.abs(raw["prob_1"].to_numpy()[same] - evaluated["prob_1"].to_numpy()[same]).max() <= 1e-5
