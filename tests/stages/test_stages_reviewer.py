"""The reviewer's first questions on the tiny pretrained run (tests/conftest.py), through the CLI:
baselines ranked with a neural model by the same statistics code, an external cohort prepared --like the
run's dataset and scored with the run unchanged, subgroups, permutation importance of a baseline, and the
TRIPOD+AI / CLAIM 2024 sections of report.md filled from the run's own files.

One run is built per module (fine-tuning, three baselines, evaluate with --external and --subgroup); the
tests read it and never change it (the checklist tests change copies).
"""

from __future__ import annotations

import hashlib
import traceback
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.data import load_prepared
from amfmedit.stages.baseline_models import BASELINES
from amfmedit.stats.delong import delong_auc

FINETUNE = ["--epochs", "1", "--lr", "0.001", "--quiet"]
CONCAT = "Concatenation + FT-Mamba, frozen"
# the published item numbers, typed here independently of amfmedit.stages.checklist
TRIPOD_ITEMS = ("1 2 3a 3b 3c 4 5a 5b 6a 6b 6c 7 8a 8b 8c 9a 9b 9c 10 11 12a 12b 12c 12d 12e 12f 12g 13 14 15 16 17 "
                "18a 18b 18c 18d 18e 18f 19 20a 20b 20c 21 22 23a 23b 24 25 26 27a 27b 27c").split()
CLAIM_ITEMS = [str(i) for i in range(1, 45)]


def _cli(*args, code: int = 0):
    res = CliRunner().invoke(app, list(args))
    tb = "".join(traceback.format_exception(res.exception)) if res.exit_code not in (0, 2) and res.exception else ""
    assert res.exit_code == code, res.output + tb
    return res


def _digests(root: Path, skip: tuple[str, ...]) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(skip)}


@pytest.fixture(scope="module")
def reviewed(pretrained_template, tmp_path_factory):
    """A copy of the tiny pretrained run with a neural model, the three baselines (two seeds), an external cohort
    (shifted age, prevalence and scanner scale) and ``evaluate --external --subgroup``."""
    work = tmp_path_factory.mktemp("reviewed")
    shutil.copytree(pretrained_template.root, work / "runs" / pretrained_template.run)
    (work / "data").symlink_to(pretrained_template.data_dir, target_is_directory=True)
    ext_dir = work / "external"
    old, env = os.getcwd(), {k: os.environ.pop(k) for k in ("AMFMEDIT_RUNS", "AMFMEDIT_DATA") if k in os.environ}
    os.chdir(work)
    try:
        _cli("finetune", "--fusion", "concat", "--strategy", "frozen", "--seeds", "2022", *FINETUNE)
        _cli("baseline", "--model", "logistic", "--model", "gbdt", "--model", "late-fusion", "--seeds", "2022,2023",
             "--pca-components", "4", "--quiet")
        _cli("prepare", "--data", "synthetic-ol3i", "--like", str(work / "data" / pretrained_template.data),
             "--name", "site-b",
             "--patients", "200", "--prevalence", "0.3", "--age-shift", "10", "--hu-scale", "1.2", "--seed", "31",
             "--data-dir", str(ext_dir), "--quiet")
        run = work / "runs" / pretrained_template.run
        before = _digests(run, ("evaluate", "external-", "report", "model_card", "run.json"))
        out = _cli("evaluate", "--external", str(ext_dir / "site-b"), "--subgroup", "sex",
                   "--subgroup", "age_at_scan=55,70", "--recalibrate-on", "val").output
        after = _digests(run, ("evaluate", "external-", "report", "model_card", "run.json"))
        _cli("explain", "--method", "permutation", "--repeats", "2")
        _cli("report")
    finally:
        os.chdir(old)
        os.environ.update(env)
    return {"run": run, "data": pretrained_template.data_dir / pretrained_template.data, "external": ext_dir / "site-b",
            "work": work, "unchanged": before == after, "output": out}


def _metrics(run: Path) -> dict:
    return json.loads((run / "evaluate" / "metrics.json").read_text())


def _stored(run: Path, stage: str, split: str):
    with np.load(run / stage / "predictions.npz") as z:
        return z[f"{split}_rows"], z[f"{split}_preds"]


# ---------------------------------------------------------------------------------------------- baselines


def test_baselines_are_stages_ranked_with_the_neural_model(reviewed):
    run = reviewed["run"]
    for model in BASELINES:
        for seed in (2022, 2023):
            marker = json.loads((run / f"baseline-{model}-seed{seed}" / "COMPLETE").read_text())
            assert {"best_val", "best_epoch", "model_sha256", "params"} <= set(marker)
        search = json.loads((run / f"baseline-{model}-search" / "selection.json").read_text())
        assert search["chosen"] in [c["params"] for c in search["candidates"]] and search["seed"] == 2022
    late = json.loads((run / "baseline-late-fusion-seed2022" / "config.json").read_text())
    assert late["pca"]["components"] == 4 and late["features"][-1] == "image_pc4"
    titles = {g["title"]: g for g in _metrics(run)["groups"]}
    assert set(titles) == {CONCAT} | {b.title for b in BASELINES.values()}
    comparisons = pd.read_csv(run / "evaluate" / "comparisons.csv")
    pairs = {frozenset(p) for p in zip(comparisons["a"], comparisons["b"])}
    assert frozenset((CONCAT, BASELINES["gbdt"].title)) in pairs
    results = (run / "evaluate" / "results.md").read_text()
    assert "## Baselines" in results and BASELINES["gbdt"].title not in results.split("## Baselines")[0]


def test_logistic_auc_equals_scikit_learns_on_the_same_prepared_rows(reviewed):
    run, data = reviewed["run"], reviewed["data"]
    chosen = json.loads((run / "baseline-logistic-search" / "selection.json").read_text())["chosen"]["C"]
    ds = load_prepared(data)
    table = pd.read_parquet(data / "tabular.parquet")
    onehot = [pd.get_dummies(pd.Categorical(table[f.name], categories=range(f.cardinality)), prefix=f.name)
              for f in ds.schema.categorical]
    y = table["label"].to_numpy()
    train, test = (table["split"] == "train").to_numpy(), (table["split"] == "test").to_numpy()
    # the prepared (median-imputed) values and an indicator per continuous feature missing in the training rows
    gaps = ds.missing[:, :ds.schema.n_cont]
    indicators = gaps[:, gaps[train].any(axis=0)].astype(float)
    assert indicators.shape[1] > 0  # the tiny cohort has missing labs: the indicators are exercised
    X = np.concatenate([pd.concat([table[[f.name for f in ds.schema.continuous]], *onehot], axis=1).to_numpy(float),
                        indicators], axis=1)
    ref = LogisticRegression(C=chosen, max_iter=5000).fit(X[train], y[train])
    expected = roc_auc_score(y[test], ref.predict_proba(X[test])[:, 1])
    (g,) = [g for g in _metrics(run)["groups"] if g["baseline"] == "logistic"]
    assert g["intervals"]["auc"]["estimate"] == pytest.approx(expected, abs=1e-6)


def test_gbdt_is_scored_by_the_same_delong_code(reviewed):
    run = reviewed["run"]
    rows, p22 = _stored(run, "baseline-gbdt-seed2022", "test")
    _, p23 = _stored(run, "baseline-gbdt-seed2023", "test")
    ref = delong_auc(load_prepared(reviewed["data"]).labels[rows], (p22[:, 1] + p23[:, 1]) / 2)
    (g,) = [g for g in _metrics(run)["groups"] if g["baseline"] == "gbdt"]
    iv = g["intervals"]["auc"]
    assert iv["method"] == "DeLong" and (iv["estimate"], iv["low"], iv["high"]) == pytest.approx(
        (ref.auc, ref.low, ref.high))


def test_each_seed_is_the_model_a_fresh_fit_gives(reviewed):
    """The first seed's trees are the search's fit of the chosen candidate, later seeds are refitted, and the
    logistic regression (lbfgs: no seed) is one model for every seed."""
    from amfmedit.data.design import table_design
    from amfmedit.stages.kinds.tabular import ClassifierBaselines

    run, ds = reviewed["run"], load_prepared(reviewed["data"])
    chosen = json.loads((run / "baseline-gbdt-search" / "selection.json").read_text())["chosen"]
    est = ClassifierBaselines(2)
    designs = {s: table_design(ds, ds.indices(s), "trees") for s in ("train", "val", "test")}
    for seed in (2022, 2023):
        fresh = est.fit(est.build("trees", chosen, seed, designs["train"]), "trees", designs["train"].X,
                        ds.labels[ds.indices("train")], designs["val"].X, ds.labels[ds.indices("val")])
        rows, stored = _stored(run, f"baseline-gbdt-seed{seed}", "test")
        np.testing.assert_array_equal(rows, ds.indices("test"))
        np.testing.assert_allclose(stored, est.outputs(fresh, designs["test"].X), rtol=0, atol=1e-12)
    _, a = _stored(run, "baseline-logistic-seed2022", "test")
    _, b = _stored(run, "baseline-logistic-seed2023", "test")
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------- external


def test_external_scores_every_classifier_with_the_run_unchanged(reviewed):
    run, ext = reviewed["run"], reviewed["external"]
    assert reviewed["unchanged"], "evaluate --external changed a file of the run outside evaluate/ and external-*/"
    m = json.loads((run / "external-site-b" / "metrics.json").read_text())
    assert set(m["models"]) == {CONCAT} | {b.title for b in BASELINES.values()}
    ds = load_prepared(ext)
    y = ds.labels
    gbdt = [pd.read_csv(run / "external-site-b" / "predictions" / f"baseline-gbdt-seed{s}.csv") for s in (2022, 2023)]
    assert (gbdt[0]["id"].astype(str) == ds.ids).all()
    expected = roc_auc_score(y, (gbdt[0]["prob_1"] + gbdt[1]["prob_1"]) / 2)
    rec = m["models"][BASELINES["gbdt"].title]
    assert rec["external"]["auc"]["estimate"] == pytest.approx(expected)
    assert rec["internal"]["auc"] == _metrics(run)["groups"][[g["baseline"] for g in _metrics(run)["groups"]]
                                                              .index("gbdt")]["intervals"]["auc"]
    cal = rec["calibration"]["external"]
    assert cal["slope_low"] <= cal["slope"] <= cal["slope_high"] and np.isfinite(cal["citl"])
    recal = m["recalibration"]
    assert recal["subset"] == "val" and recal["fitted_rows"] == int((ds.split == "val").sum())
    after = recal["models"][CONCAT]["after"]["calibration"]
    assert after["citl"] == pytest.approx(0.0, abs=0.5)  # a fit on 1/5 of the rows, scored on the others
    mix = m["shift"]
    age = [r for r in mix["continuous"] if r["feature"] == "age_at_scan"][0]
    assert age["smd"] > 0.3 and age["mean_external"] > age["mean_internal"] + 4
    assert mix["outcome"]["1"]["external"] > mix["outcome"]["1"]["internal"]
    assert abs(mix["images"]["smd_image_mean"]) > 0.05  # another scanner's intensity scale
    text = (run / "external-site-b" / "results.md").read_text()
    assert "Internal vs external" in text and "Case-mix and shift" in text and "recalibration" in text


def test_external_cohort_is_the_training_pipeline_applied(reviewed):
    from amfmedit.data.like import same_pipeline

    train, ext = load_prepared(reviewed["data"]), load_prepared(reviewed["external"])
    assert same_pipeline(train.schema, ext.schema) and ext.name == "site-b"
    prov = json.loads((reviewed["external"] / "provenance.json").read_text())
    assert prov["like"]["dataset"] == train.name and prov["synthetic"]["options"]["age_shift"] == 10


# ---------------------------------------------------------------------------------------------- subgroups


def test_subgroups_report_every_metric_with_a_test_against_the_rest(reviewed):
    run = reviewed["run"]
    sg = json.loads((run / "evaluate" / "subgroups.json").read_text())
    rows = [r for r in sg["rows"] if r["variable"] == "sex" and r["model"] == BASELINES["gbdt"].title]
    assert {r["subgroup"] for r in rows} == {"female", "male"}
    ds = load_prepared(reviewed["data"])
    kept = pd.read_parquet(reviewed["data"] / "columns.parquet")
    rows_test, p22 = _stored(run, "baseline-gbdt-seed2022", "test")
    _, p23 = _stored(run, "baseline-gbdt-seed2023", "test")
    sex = kept["sex"].to_numpy()[rows_test]
    for r in rows:
        inside = sex == r["subgroup"]
        y = ds.labels[rows_test][inside]
        assert r["n"] == int(inside.sum()) and r["events"] == int(y.sum())
        if len(set(y)) == 2:
            assert r["metrics"]["auc"]["estimate"] == pytest.approx(roc_auc_score(y, ((p22 + p23) / 2)[inside, 1]))
        assert {"sensitivity", "specificity", "brier", "ece"} <= set(r["metrics"])
        assert "brier" in r["vs_rest"] and r["too_small"] == (min(int(y.sum()), int((1 - y).sum())) < 10)
    bands = {r["subgroup"] for r in sg["rows"] if r["variable"] == "age_at_scan=55,70"}
    assert bands <= {"< 55", "55-70", ">= 70", "missing"} and len(bands) >= 2
    csv = pd.read_csv(run / "evaluate" / "subgroups.csv")
    assert {"variable", "subgroup", "model", "metric", "estimate", "low", "high", "p_holm"} <= set(csv.columns)


def test_bad_evaluate_options_are_one_line(reviewed, monkeypatch, tmp_path):
    monkeypatch.chdir(reviewed["work"])
    res = _cli("evaluate", "--subgroup", "age=40,60", code=2)
    assert "--subgroup age: no column 'age'" in res.output and "age_at_scan" in res.output
    assert "prepare" in _cli("evaluate", "--external", "nowhere", code=2).output
    res = _cli("evaluate", "--recalibrate-on", "val", code=2)
    assert "--external" in res.output
    res = _cli("evaluate", "--external", str(reviewed["external"]), "--recalibrate-on", "calibration", code=2)
    assert "no such split" in res.output
    table = tmp_path / "new.csv"
    table.write_text("anon_id\nanon_00001\n")
    res = _cli("predict", "--table", str(table), "--stage", "baseline-gbdt-seed2022", code=2)
    assert "scikit-learn baseline" in res.output and "explain --method permutation" in res.output
    res = _cli("explain", "--method", "permutation", "--stage", "finetune-concat-frozen-seed2022", code=2)
    assert "explain --method ig" in res.output


# ---------------------------------------------------------------------------------------------- explain, report


def test_permutation_importance_of_the_best_baseline(reviewed):
    run = reviewed["run"]
    (folder,) = list((run / "explain").glob("permutation-baseline-*"))
    table = pd.read_csv(folder / "importance.csv")
    summary = json.loads((folder / "summary.json").read_text())
    assert {"name", "importance", "importance_sd", "importance_pct", "rank", "informative"} <= set(table.columns)
    assert summary["split"] == "val" and summary["stage"] in folder.name
    assert "Permutation importance" in (run / "report.md").read_text()


def _section(report: str) -> dict[str, dict[str, str]]:
    out, current = {}, None
    for line in report.split("## Reporting checklists", 1)[1].splitlines():
        if line.startswith("### "):
            current = out.setdefault(line[4:].strip(), {})
        elif current is not None and line.startswith("| ") and not line.startswith("| Item"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            current[cells[0]] = cells[2]
        elif line.startswith("## "):
            break
    return out


def test_report_holds_both_checklists_with_the_published_item_numbers(reviewed):
    report = (reviewed["run"] / "report.md").read_text()
    items = _section(report)
    assert list(items["TRIPOD+AI"]) == TRIPOD_ITEMS and list(items["CLAIM 2024"]) == CLAIM_ITEMS
    for name, rows in items.items():
        for number, text in rows.items():
            marked = f"[TO FILL: {name} {number}]" in text
            assert marked or "TO FILL" not in text, (name, number, text)
    assert items["TRIPOD+AI"]["5b"] == "not applicable (synthetic cohort)"  # the data spec's [source] dates, as given
    assert "site-b" in items["CLAIM 2024"]["33"] and "sex" in items["TRIPOD+AI"]["14"]
    card = (reviewed["run"] / "model_card.md").read_text()
    assert "sha256" in card and "[TO FILL: model card, intended use" in card


def _copy(reviewed, tmp_path):
    """The run and its dataset copied, the run pointed at the copy of its dataset."""
    from amfmedit.train import rundir

    data = tmp_path / "data"
    shutil.copytree(reviewed["data"], data / reviewed["data"].name)
    run_dir = tmp_path / "runs" / reviewed["run"].name
    shutil.copytree(reviewed["run"], run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    info["data_dir"] = str(data)
    (run_dir / "run.json").write_text(json.dumps(info))
    return rundir.Run(run_dir), data / reviewed["data"].name


def _auto_items():
    from amfmedit.stages.checklist import CHECKLISTS

    return [(g, it.number) for g, items in CHECKLISTS.items() for it in items if it.auto]


@pytest.mark.parametrize("guideline,number", _auto_items())
def test_each_auto_filled_item_comes_from_the_runs_own_files(reviewed, tmp_path, guideline, number):
    """Change the run (remove the files an item reads) and the item changes."""
    from amfmedit.stages.checklist import CHECKLISTS, filled
    from amfmedit.stages.runfacts import RunFacts

    (item,) = [it for it in CHECKLISTS[guideline] if it.number == number]
    run, data = _copy(reviewed, tmp_path)
    before = filled(item, RunFacts(run))
    if before is None:
        pytest.skip(f"{guideline} {number}: this run cannot fill it (its placeholder is checked elsewhere)")
    for pattern in item.sources:
        base, pat = (data, pattern[len("<data>/"):]) if pattern.startswith("<data>/") else (run.root, pattern)
        for p in list(base.glob(pat)):
            p.unlink()
    assert filled(item, RunFacts(run)) != before


def test_auto_filled_items_follow_changed_values(reviewed, tmp_path):
    from amfmedit.stages.checklist import CHECKLISTS, filled
    from amfmedit.stages.runfacts import RunFacts

    run, data = _copy(reviewed, tmp_path)
    item = {(g, it.number): it for g, items in CHECKLISTS.items() for it in items}
    prov = json.loads((data / "provenance.json").read_text())
    prov["spec"]["source"]["dates"] = "2011-01 to 2016-12"
    prov["counts"]["test"]["rows"] = 12345
    (data / "provenance.json").write_text(json.dumps(prov))
    env = json.loads((run.root / "environment.json").read_text())
    env["torch"] = "9.9.9"
    (run.root / "environment.json").write_text(json.dumps(env))
    facts = RunFacts(run)
    assert filled(item[("TRIPOD+AI", "5b")], facts) == "2011-01 to 2016-12"
    assert "test 12345 rows" in filled(item[("TRIPOD+AI", "10")], facts)
    assert "torch 9.9.9" in filled(item[("CLAIM 2024", "23")], facts)
