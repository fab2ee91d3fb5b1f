"""Survival and regression through the CLI, end to end on tiny synthetic cohorts:
prepare -> pretrain -> rconf -> finetune --fusion amf --fusion concat -> evaluate -> explain -> predict,
with every table and figure, and the numbers in the files agreeing with each other."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from test_stages_pipeline import _raw_test_table  # noqa: E402 (tests/stages: the inverse of prepare)

SIZE = dict(patients=140, image=64, features=24)  # Grad-CAM needs 64 pixels (a 2 x 2 map at ResNet's last stage)
PRETRAIN = ["--tabular-encoder", "mlp", "--tabular-dim", "16", "--image-arch", "resnet18", "--epochs", "1",
            "--warmup-epochs", "0", "--batch-size", "32", "--quiet"]


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _pipeline(tmp_path, monkeypatch, spec: str, *evaluate_args):
    from amfmedit.data import load_prepared

    monkeypatch.chdir(tmp_path)
    _cli("prepare", "--data", spec, "--patients", SIZE["patients"], "--image-size", SIZE["image"], "--features",
         SIZE["features"], "--prevalence", "0.15", "--seed", "3", "--quiet")
    _cli("pretrain", "--data", spec, "--run", "r", *PRETRAIN)
    _cli("rconf", "--lr", "0.01", "--epochs", "1", "--quiet")
    _cli("finetune", "--fusion", "amf", "--fusion", "concat", "--strategy", "trainable", "--seeds", "2022,2023",
         "--lr", "0.001", "--epochs", "1", "--quiet")
    res = _cli("evaluate", *evaluate_args)
    return tmp_path / "runs" / "r", load_prepared(tmp_path / "data" / spec), res.output


def test_survival_end_to_end(tmp_path, monkeypatch):
    from amfmedit.stats.survival import harrell_c

    run, ds, out = _pipeline(tmp_path, monkeypatch, "synthetic-ol3i-survival", "--horizons", "1,2")
    rec = json.loads((run / "rconf" / "rconf.json").read_text())
    assert rec["metric"] == "c_index"
    assert rec["r_conf"] == pytest.approx(rec["image"]["metric"] / rec["tabular"]["metric"])  # C_img / C_tab
    assert rec["image"]["interval"]["chance"] == 0.5

    ev = run / "evaluate"
    metrics = json.loads((ev / "metrics.json").read_text())
    oracle = ds.provenance["synthetic"]["oracle"]
    assert metrics["metric"] == "c_index" and metrics["oracle_auc"] == pytest.approx(oracle["test"])
    assert f"Oracle C-index (test split): {oracle['test']:.4f}" in " ".join(out.split())
    for g in metrics["groups"]:
        assert set(g["intervals"]) >= {"c_index", "c_uno", "auc@1", "auc@2", "brier@1", "brier@2", "ibs"}
        iv = g["intervals"]["c_index"]
        assert iv["low"] <= iv["estimate"] <= iv["high"] and iv["n_boot"] == 2000
        assert set(g["calibration"]) == {"1", "2"} and len(g["risk_groups"]["rows"]) == 3
        assert np.isfinite(g["risk_groups"]["logrank"]["chi2"])
    for row in metrics["stages"]:  # the reported C-index is Harrell's C of the written risk scores
        pred = pd.read_csv(ev / "predictions" / f"{row['stage']}.csv")
        assert list(pred.columns) == ["id", "time", "event", "risk_score", "surv_1", "surv_2", "risk_group", "inputs"]
        assert row["c_index"] == pytest.approx(harrell_c(pred["time"], pred["event"], pred["risk_score"]))
        assert (np.diff(pred[["surv_1", "surv_2"]].to_numpy(), axis=1) <= 0).all()  # survival falls with time
    md = (ev / "results.md").read_text()
    for section in ("Test metrics with 95% intervals", "Calibration at the horizons", "Kaplan-Meier curves by risk "
                    "group", "Paired comparisons (Harrell's C)", "AUC(1)", "integrated Brier score"):
        assert section in md
    figures = metrics["figures"]
    assert {k.split(":")[0] for k in figures} == {"km", "calibration"}
    assert all((ev / v).stat().st_size > 5000 for v in figures.values())
    assert "Uno's C" in (ev / "comparisons.md").read_text()
    ops = json.loads((ev / "operating_points.json").read_text())
    assert ops["horizons"] == [1.0, 2.0]
    # the run report shows the follow-up of every split
    _cli("report")
    assert "median follow-up (years)" in (run / "report.md").read_text()

    _cli("explain", "--method", "ig", "--max-samples", "12", "--steps", "32")  # 8 steps left 7% on a 1-epoch model
    ig = json.loads(next((run / "explain").glob("ig-*/summary.json")).read_text())
    assert ig["target"]["name"] == "risk score" and ig["output"] == "logit"
    assert ig["completeness"]["relative"] < 0.05
    _cli("explain", "--method", "gradcam", "--cases", "2")
    cam_dir = next((run / "explain").glob("gradcam-*"))
    cam = json.loads((cam_dir / "summary.json").read_text())
    assert list(cam["cases"]) == ["earliest-events", "longest-event-free"]
    test = ds.split == "test"
    ev_times = np.sort(ds.targets["time"][test & (ds.targets["event"] == 1)])[:2]
    chosen = [ds.targets["time"][list(ds.ids).index(i)] for i in cam["cases"]["earliest-events"]]
    np.testing.assert_allclose(sorted(chosen), ev_times)
    assert (cam_dir / "earliest-events.png").is_file() and (cam_dir / "longest-event-free.png").is_file()
    _cli("report")  # the report names the kind's case groups, not positive / negative
    assert "2 earliest-events and 2 longest-event-free test cases" in (run / "report.md").read_text()

    table = _raw_test_table(ds, tmp_path / "new")
    res = _cli("predict", "--table", table, "--image-column", "image")
    stage = res.output.split("scored with ")[1].split()[0]
    got = pd.read_csv(run / "predict" / "new_patients.csv").set_index("id")
    want = pd.read_csv(ev / "predictions" / f"{stage}.csv").set_index("id").loc[got.index]
    for col in ("risk_score", "surv_1", "surv_2"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-5, atol=1e-6)
    assert (got["risk_group"] == want["risk_group"]).all()
    _cli("predict", "--table", table, "--image-column", "image", "--horizons", "0.5,3", "--out", tmp_path / "h.csv")
    assert {"surv_0.5", "surv_3"} <= set(pd.read_csv(tmp_path / "h.csv").columns)
    bad = CliRunner().invoke(app, ["evaluate", "--horizons", "40"])
    assert bad.exit_code == 2 and "lies outside the scored split's follow-up" in " ".join(bad.output.split())


def test_regression_end_to_end(tmp_path, monkeypatch):
    from sklearn.metrics import mean_squared_error

    run, ds, out = _pipeline(tmp_path, monkeypatch, "synthetic-ol3i-regression")
    rec = json.loads((run / "rconf" / "rconf.json").read_text())
    assert rec["metric"] == "rmse"
    assert rec["r_conf"] == pytest.approx(rec["tabular"]["metric"] / rec["image"]["metric"])  # RMSE_tab / RMSE_img
    ev = run / "evaluate"
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["oracle_auc"] == pytest.approx(ds.provenance["synthetic"]["oracle"]["test"])  # the oracle RMSE
    for row in metrics["stages"]:
        pred = pd.read_csv(ev / "predictions" / f"{row['stage']}.csv")
        assert list(pred.columns) == ["id", "observed", "predicted", "inputs"]
        assert row["rmse"] == pytest.approx(np.sqrt(mean_squared_error(pred["observed"], pred["predicted"])))
    for g in metrics["groups"]:
        assert set(g["intervals"]) == {"rmse", "mae", "r2", "calibration_slope", "calibration_intercept"}
    md = (ev / "results.md").read_text()
    assert "Trainable RMSE |" in md and "(%)" not in md.split("\n## Test")[0]
    assert (ev / "predicted_vs_observed.png").stat().st_size > 5000
    _cli("explain", "--method", "ig", "--max-samples", "12", "--steps", "8")
    _cli("explain", "--method", "gradcam", "--cases", "2")
    cam = json.loads(next((run / "explain").glob("gradcam-*/summary.json")).read_text())
    assert list(cam["cases"]) == ["highest", "lowest"]
    table = _raw_test_table(ds, tmp_path / "new")
    res = _cli("predict", "--table", table, "--image-column", "image")
    stage = res.output.split("scored with ")[1].split()[0]
    got = pd.read_csv(run / "predict" / "new_patients.csv").set_index("id")
    want = pd.read_csv(ev / "predictions" / f"{stage}.csv").set_index("id").loc[got.index]
    np.testing.assert_allclose(got["predicted_cardiometabolic_score"], want["predicted"], rtol=1e-5)
