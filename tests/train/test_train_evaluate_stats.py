"""`evaluate` with intervals, operating points, calibration and comparisons; `predict` with decisions.

On the tiny pretrained run (tests/train/conftest.py), fine-tuned for one epoch, through the CLI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from amfmedit.cli import app

FINETUNE = ["--epochs", "1", "--lr", "0.001", "--quiet"]
AMF = "AMF module + FT-Mamba, frozen"
CONCAT = "Concatenation + FT-Mamba, frozen"
DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"


def _cli(*args, code: int = 0):
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, res.output
    return res


def _raw_table(fx, folder: Path) -> Path:
    from test_train_pipeline import _raw_test_table  # the pipeline test's inverse of prepare

    return _raw_test_table(fx, folder)


def test_evaluate_reports_intervals_thresholds_calibration_and_comparisons(pretrained_run, tiny_ol3i, tmp_path):
    run = pretrained_run.root
    _cli("finetune", "--fusion", "amf", "--rconf", "1.0", "--seeds", "2022", "--strategy", "frozen", *FINETUNE)
    _cli("finetune", "--fusion", "concat", "--strategy", "frozen", "--seeds", "2022,2023", *FINETUNE)
    res = _cli("evaluate")  # --threshold youden
    ev = run / "evaluate"
    m = json.loads((ev / "metrics.json").read_text())

    # the Table-2 keys other code reads are all still there
    assert {"groups", "stages", "metric", "split", "oracle_auc"} <= set(m)
    for g in m["groups"]:
        assert {"fusion", "strategy", "modality", "encoder", "mask", "mask_features", "r_conf", "seeds", "values",
                "mean", "std"} <= set(g)
    by_title = {g["title"]: g for g in m["groups"]}
    assert set(by_title) == {AMF, CONCAT}
    for g in by_title.values():
        ivs = g["intervals"]
        assert ivs["auc"]["method"] == "DeLong"
        assert {"auprc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece"} <= set(ivs)
        for name, iv in ivs.items():  # each interval holds its point estimate
            assert iv["low"] - 1e-12 <= iv["estimate"] <= iv["high"] + 1e-12, (name, iv)
        assert g["seed_mean"]["auc"] == pytest.approx(np.mean(g["values"]))  # spread over seeds, as Table 2
        assert g["threshold"]["name"] == "youden"
        c = g["counts"]
        assert c["tp"] + c["fp"] + c["tn"] + c["fn"] == 48
        cal = g["calibration"]
        assert len(cal["temperatures"]) == len(g["seeds"])
        assert all(a <= b + 1e-9 for a, b in zip(cal["val_nll_after"], cal["val_nll_before"]))
        assert {"brier", "ece"} <= set(cal["before"]) and {"brier", "ece"} <= set(cal["after"])

    # each stage's threshold maximises Youden's J on that stage's own validation predictions
    ops = json.loads((ev / "operating_points.json").read_text())["stages"]
    assert len(ops) == 3
    for stage, op in ops.items():
        val = pd.read_csv(ev / "predictions" / "val" / f"{stage}.csv")
        pos = val["label"].to_numpy() == 1

        def youden(t):  # the CSV holds float32 probabilities: compare at that precision
            called = val["prob_1"].to_numpy() >= np.float32(t) - 1e-7
            return called[pos].mean() + (~called[~pos]).mean() - 1

        assert youden(op["threshold"]) == pytest.approx(max(youden(t) for t in val["prob_1"]))
        assert op["threshold_name"] == "youden" and op["temperature"] > 0
        test = pd.read_csv(ev / "predictions" / f"{stage}.csv")
        assert (test["decision"] == (test["prob_1"] >= op["threshold"])).all()

    # one pair, compared on the same rows: DeLong for AUC, paired bootstrap for the rest
    comp = pd.read_csv(ev / "comparisons.csv")
    assert set(comp["metric"]) >= {"auc", "auprc", "sensitivity", "specificity", "brier", "ece"}
    assert (comp.loc[comp["metric"] == "auc", "method"] == "DeLong").all()
    assert ((comp["p_holm"] >= comp["p"] - 1e-12) | comp["p"].isna()).all()
    md = (ev / "comparisons.md").read_text()
    assert AMF in md and CONCAT in md
    assert "too small" in md  # 48 test rows, ~10 positives: said in words
    for fig in ("roc.png", "pr.png", "decision.png"):
        assert (ev / fig).stat().st_size > 5000, fig
    assert len(list((ev / "reliability").glob("*.png"))) == 2
    assert m["figures"]["roc"] == "roc.png"

    results = (ev / "results.md").read_text()
    assert "| AMF module | FT-Mamba |" in results  # the Table-2 layout the report reads
    assert "## Calibration" in results and "## Paired comparisons (AUC)" in results
    amf = by_title[AMF]["intervals"]["auc"]
    assert f"{amf['estimate']:.3f} ({amf['low']:.3f}\u2013{amf['high']:.3f})" in results
    assert "finetu\u2026" not in res.stdout and AMF.split()[0] in res.stdout

    # the demo's summary reads this metrics.json; it looks for the trainable AMF group, for which the
    # frozen one stands in (same record; training the encoders would cost this test ~15 s)
    script = DEMO.read_text()
    block = re.search(r"<<'EOF'\n(.*?)\nEOF", script, re.S).group(1)
    demo_metrics = json.loads((ev / "metrics.json").read_text())
    for g in demo_metrics["groups"]:
        g["strategy"] = "trainable" if g["fusion"] == "amf" else g["strategy"]
    (tmp_path / "demo.json").write_text(json.dumps(demo_metrics))
    out = subprocess.run([sys.executable, "-", str(tmp_path / "demo.json"), "12"], input=block, text=True,
                         capture_output=True, check=True).stdout
    assert f"AUC {amf['estimate']:.3f} (95% CI {amf['low']:.3f}-{amf['high']:.3f})" in out
    assert "sensitivity" in out and "specificity" in out and "youden" in out

    # predict: decisions at the stored threshold, named; calibration none vs temperature
    stage = "finetune-amf-frozen-seed2022"
    table = _raw_table(tiny_ol3i, tmp_path / "new")
    _cli("predict", "--table", str(table), "--stage", stage, "--image-column", "image", "--out", str(tmp_path / "t.csv"))
    _cli("predict", "--table", str(table), "--stage", stage, "--image-column", "image", "--out", str(tmp_path / "n.csv"),
         "--calibration", "none")
    cal, raw = pd.read_csv(tmp_path / "t.csv"), pd.read_csv(tmp_path / "n.csv")
    want = pd.read_csv(ev / "predictions" / f"{stage}.csv")
    np.testing.assert_allclose(raw["prob_1"], want["prob_1"], atol=1e-5)  # none: the probabilities as trained
    assert np.abs(cal["prob_1"] - raw["prob_1"]).max() > 1e-4  # temperature: rescaled
    assert (cal["threshold_name"] == "youden").all() and (cal["decision"] == raw["decision"]).all()
    assert (cal["decision"].astype(str) == np.where(cal["prob_1"] >= cal["threshold"], "1", "0")).all()
    assert raw["threshold"].iloc[0] == pytest.approx(ops[stage]["threshold"])
    assert cal["threshold"].iloc[0] == pytest.approx(ops[stage]["threshold_calibrated"])
    assert cal["calibration"].iloc[0].startswith("temperature")


def test_bad_threshold_is_one_line_and_writes_nothing(pretrained_run):
    run = pretrained_run.root
    before = sorted(p.name for p in run.iterdir())
    for spec in ("sensitivity:1.5", "youdn", "1.2"):
        res = _cli("evaluate", "--threshold", spec, code=2)
        assert len(res.output.strip().splitlines()) == 1 and "--threshold" in res.output and spec in res.output
        assert "Traceback" not in res.output
    assert sorted(p.name for p in run.iterdir()) == before


def test_predict_before_evaluate_and_a_one_class_test_split(pretrained_run, tiny_ol3i, tmp_path):
    _cli("finetune", "--fusion", "concat", "--strategy", "frozen", "--seeds", "2022", *FINETUNE)
    table = _raw_table(tiny_ol3i, tmp_path / "new")
    res = _cli("predict", "--table", str(table), "--image-column", "image")
    assert res.stderr.count("warning:") == 1 and "amfmedit evaluate" in res.stderr
    got = pd.read_csv(pretrained_run.root / "predict" / "new_patients.csv")
    assert got["decision"].isna().all() and got["threshold_name"].isna().all()
    assert np.isfinite(got["prob_1"]).all() and (got["calibration"] == "none").all()

    bad = pd.read_csv(table)
    col = next(c for c in bad.columns if c not in ("image", "anon_id") and np.issubdtype(bad[c].dtype, np.floating))
    bad.loc[3, col] = 1e308
    bad.to_csv(tmp_path / "new" / "bad.csv", index=False)
    res = _cli("predict", "--table", str(tmp_path / "new" / "bad.csv"), "--image-column", "image", code=2)
    assert len(res.output.strip().splitlines()) == 1 and str(bad.iloc[3, 0]) in res.output

    # a test split with one class: a warning naming the split and the skipped metrics, not NaN tables
    import shutil

    one = tmp_path / "one-class"
    shutil.copytree(tiny_ol3i.path, one / tiny_ol3i.path.name)
    tab = pd.read_parquet(one / tiny_ol3i.path.name / "tabular.parquet")
    tab.loc[tab["split"] == "test", "label"] = 0
    tab.to_parquet(one / tiny_ol3i.path.name / "tabular.parquet")
    res = _cli("evaluate", "--data-dir", str(one))
    (warning,) = [w for w in res.stderr.split("warning: ")[1:] if w.startswith("test split")]
    assert "only class 0 present" in warning and "AUC, AUPRC" in " ".join(warning.split())
    m = json.loads((pretrained_run.root / "evaluate" / "metrics.json").read_text())
    assert any(w.startswith("test split: only class 0") for w in m["warnings"]) and "auc" in m["skipped"]
    assert "auc" not in m["groups"][0]["intervals"] and "brier" in m["groups"][0]["intervals"]
    assert not (pretrained_run.root / "evaluate" / "roc.png").exists()


def test_threshold_targets_are_met_on_validation():
    from amfmedit.stages import evalstats

    rng = np.random.default_rng(1)
    y_val, y_test = (rng.random(300) < 0.2).astype(int), (rng.random(200) < 0.2).astype(int)

    def probs(y, seeds=2):
        p1 = 1 / (1 + np.exp(-(rng.normal(size=(seeds, len(y))) + 1.5 * y - 1)))
        return np.stack([1 - p1, p1], axis=2)

    preds = {AMF: evalstats.ModelPredictions(probs(y_val), probs(y_test))}
    for spec, key, target in (("sensitivity:0.9", "sens", 0.9), ("specificity:0.95", "spec", 0.95)):
        stats = evalstats.compute(y_val, y_test, preds, spec, n_boot=200, thresholded=True)
        for thr, p in [(stats.thresholds[AMF], preds[AMF].val.mean(axis=0)[:, 1]),
                       *zip(stats.seed_thresholds[AMF], preds[AMF].val[:, :, 1])]:
            called = p >= thr.value
            got = called[y_val == 1].mean() if key == "sens" else (~called[y_val == 0]).mean()
            assert thr.name == spec and got >= target
    with pytest.raises(Exception, match="--threshold"):
        evalstats.compute(y_val, y_test, preds, "sensitivity:1.5", thresholded=True)


def test_seed_spread_uses_each_seeds_own_threshold_and_a_bias_at_its_bound_warns():
    """The spread over seeds of sensitivity etc. is taken at each seed's own validation threshold (the one
    ``predict`` applies with that seed); a recalibration bias that reached +-20 says so in the warnings."""
    from scipy import special

    from amfmedit.stages import evalstats
    from amfmedit.stats import bootstrap

    rng = np.random.default_rng(3)
    y_val, y_test = (rng.random(300) < 0.25).astype(int), (rng.random(200) < 0.25).astype(int)
    offsets = np.array([[-1.5], [0.0], [1.5]])  # seeds calibrated differently: their thresholds differ

    def probs(y, extra=0.0):
        p1 = special.expit(rng.normal(size=(3, len(y))) + 1.5 * y - 1 + offsets + extra)
        return np.stack([1 - p1, p1], axis=2)

    preds = {AMF: evalstats.ModelPredictions(probs(y_val), probs(y_test))}
    stats = evalstats.compute(y_val, y_test, preds, "youden", n_boot=100, thresholded=True)
    own = [t.value for t in stats.seed_thresholds[AMF]]
    assert len(set(own)) == 3
    m = stats.summary.models[AMF]
    for metric in ("sensitivity", "specificity", "ppv", "npv"):
        per_seed = [bootstrap.point_estimates(y_test, q[:, 1], t)[metric] for q, t in zip(preds[AMF].test, own)]
        assert m.seed_mean[metric] == pytest.approx(np.mean(per_seed)), metric
    assert m.seed_thresholds == own
    assert not any("bias" in w for w in stats.warnings)

    shifted = {AMF: evalstats.ModelPredictions(probs(y_val, 24.0), probs(y_test, 24.0))}
    stats = evalstats.compute(y_val, y_test, shifted, "youden", n_boot=100, thresholded=True)
    assert any(w.startswith(f"{AMF}: the recalibration bias fitted on validation reached the end of its range")
               and "class-balanced sampler" in w for w in stats.warnings), stats.warnings


def test_one_class_test_split_warns_names_the_split_and_skips_figures(tmp_path):
    from amfmedit.stages import evalstats

    rng = np.random.default_rng(0)
    y_val = np.r_[np.ones(15, int), np.zeros(45, int)]
    y_test = np.zeros(40, int)

    def probs(n, shift):
        p1 = 1 / (1 + np.exp(-(rng.normal(size=(2, n)) + shift)))
        return np.stack([1 - p1, p1], axis=2)

    preds = {AMF: evalstats.ModelPredictions(probs(60, y_val), probs(40, 0.0)),
             CONCAT: evalstats.ModelPredictions(probs(60, y_val * 0.5), probs(40, 0.0))}
    stats = evalstats.compute(y_val, y_test, preds, "youden", n_boot=200, thresholded=True)
    (w,) = [w for w in stats.warnings if w.startswith("test split")]
    assert "only class 0" in w and "AUC" in w and "sensitivity" in w and "Brier and ECE still reported" in w
    assert "auc" not in stats.summary.models[AMF].intervals and "brier" in stats.summary.models[AMF].intervals
    figures = evalstats.write_figures(tmp_path, y_test, stats)
    assert "roc" not in figures and (tmp_path / "decision.png").is_file()
    assert "n/a" in evalstats.terminal_markdown(stats)


def test_multiclass_reports_top1_with_intervals_and_no_threshold():
    from amfmedit.stages import evalstats

    rng = np.random.default_rng(2)
    y_val, y_test = rng.integers(0, 4, 80), rng.integers(0, 4, 60)

    def probs(y):
        z = rng.normal(size=(2, len(y), 4))
        z[:, np.arange(len(y)), y] += 1.5
        return np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)

    preds = {"A": evalstats.ModelPredictions(probs(y_val), probs(y_test)),
             "B": evalstats.ModelPredictions(probs(y_val), probs(y_test))}
    stats = evalstats.compute(y_val, y_test, preds, "youden", n_boot=200, class_names=list("abcd"), thresholded=False)
    rec = stats.model_record("A")
    assert rec["threshold"] == {"name": "argmax", "value": None}
    acc = rec["intervals"]["acc"]
    assert acc["low"] <= acc["estimate"] <= acc["high"]
    assert acc["estimate"] == pytest.approx(np.mean(preds["A"].test.mean(axis=0).argmax(axis=1) == y_test))
    assert stats.summary.comparisons.headline == "acc" and evalstats.operating_markdown(stats) == ""
