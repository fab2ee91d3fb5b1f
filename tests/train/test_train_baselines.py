"""`amfmedit baseline`: logistic regression, gradient-boosted trees and late fusion, ranked by `evaluate`
beside a neural model with the same statistics code (tiny pretrained run of tests/train/conftest.py)."""

from __future__ import annotations

import json

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


def _cli(*args, code: int = 0):
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, res.output
    return res


def _stored(run, stage: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run / stage / "predictions.npz") as z:
        return z[f"{split}_rows"], z[f"{split}_preds"]


@pytest.fixture
def fitted(pretrained_run):
    """The tiny run with a neural classifier and all three baselines (two seeds), evaluated."""
    _cli("finetune", "--fusion", "concat", "--strategy", "frozen", "--seeds", "2022", *FINETUNE)
    _cli("baseline", "--model", "logistic", "--model", "gbdt", "--model", "late-fusion", "--seeds", "2022,2023",
         "--pca-components", "4", "--quiet")
    _cli("evaluate")
    return pretrained_run


def test_baselines_are_stages_ranked_with_the_neural_models(fitted, tiny_ol3i):
    run = fitted.root
    for model in BASELINES:
        for seed in (2022, 2023):
            folder = run / f"baseline-{model}-seed{seed}"
            marker = json.loads((folder / "COMPLETE").read_text())
            assert {"best_val", "best_epoch", "model_sha256", "params"} <= set(marker)
            cfg = json.loads((folder / "config.json").read_text())
            assert cfg["title"] == BASELINES[model].title and cfg["seed"] == seed
        search = json.loads((run / f"baseline-{model}-search" / "selection.json").read_text())
        assert search["chosen"] in [c["params"] for c in search["candidates"]] and search["seed"] == 2022
    late = json.loads((run / "baseline-late-fusion-seed2022" / "config.json").read_text())
    assert late["pca"]["components"] == 4 and late["features"][-1] == "image_pc4"
    m = json.loads((run / "evaluate" / "metrics.json").read_text())
    titles = {g["title"]: g for g in m["groups"]}
    assert set(titles) == {CONCAT} | {b.title for b in BASELINES.values()}
    assert {titles[b.title]["kind"] for b in BASELINES.values()} == {"baseline"}
    ops = json.loads((run / "evaluate" / "operating_points.json").read_text())["stages"]
    assert "baseline-gbdt-seed2023" in ops and ops["baseline-gbdt-seed2023"]["threshold"] is not None
    comparisons = pd.read_csv(run / "evaluate" / "comparisons.csv")
    pairs = set(zip(comparisons["a"], comparisons["b"])) | set(zip(comparisons["b"],
                                                                      comparisons["a"]))
    assert (CONCAT, BASELINES["gbdt"].title) in pairs and (BASELINES["logistic"].title, CONCAT) in pairs
    results = (run / "evaluate" / "results.md").read_text()
    assert "## Baselines" in results and BASELINES["late-fusion"].title in results
    table2 = results.split("## Baselines")[0]
    assert BASELINES["gbdt"].title not in table2  # Table 2 keeps the paper's rows


def test_logistic_auc_equals_scikit_learns_on_the_same_prepared_rows(fitted, tiny_ol3i):
    run = fitted.root
    chosen = json.loads((run / "baseline-logistic-search" / "selection.json").read_text())["chosen"]["C"]
    ds = load_prepared(tiny_ol3i)
    table = pd.read_parquet(tiny_ol3i.path / "tabular.parquet")
    cont = [f.name for f in ds.schema.continuous]
    cats = [f for f in ds.schema.categorical]
    onehot = [pd.get_dummies(pd.Categorical(table[f.name], categories=range(f.cardinality)), prefix=f.name)
              for f in cats]
    X = pd.concat([table[cont], *onehot], axis=1).to_numpy(float)
    y = table["label"].to_numpy()
    train, test = (table["split"] == "train").to_numpy(), (table["split"] == "test").to_numpy()
    ref = LogisticRegression(C=chosen, max_iter=5000).fit(X[train], y[train])
    expected = roc_auc_score(y[test], ref.predict_proba(X[test])[:, 1])
    m = json.loads((run / "evaluate" / "metrics.json").read_text())
    (g,) = [g for g in m["groups"] if g["baseline"] == "logistic"]
    assert g["intervals"]["auc"]["estimate"] == pytest.approx(expected, abs=1e-6)
    assert g["values"] == pytest.approx([expected, expected], abs=1e-6)


def test_gbdt_is_scored_by_the_same_delong_code(fitted):
    run = fitted.root
    rows, p22 = _stored(run, "baseline-gbdt-seed2022", "test")
    _, p23 = _stored(run, "baseline-gbdt-seed2023", "test")
    y = load_prepared(fitted.data, fitted.data_dir).labels[rows]
    ref = delong_auc(y, (p22[:, 1] + p23[:, 1]) / 2)
    m = json.loads((run / "evaluate" / "metrics.json").read_text())
    (g,) = [g for g in m["groups"] if g["baseline"] == "gbdt"]
    iv = g["intervals"]["auc"]
    assert iv["method"] == "DeLong"
    assert (iv["estimate"], iv["low"], iv["high"]) == pytest.approx((ref.auc, ref.low, ref.high))


def test_baselines_refuse_what_they_cannot_do(fitted, tmp_path):
    res = _cli("baseline", "--model", "svm", code=2)
    assert "--model svm: not a baseline" in res.output and "logistic" in res.output
    res = _cli("baseline", "--model", "gbdt", "--seeds", "2022", code=2)
    assert "baseline-gbdt-seed2022" in res.output and "--force" in res.output
    res = _cli("predict", "--table", str(tmp_path / "x.csv"), "--stage", "baseline-gbdt-seed2022", code=2)
    assert res.output.count("\n") <= 2
    raw = tmp_path / "x.csv"
    raw.write_text("anon_id\nanon_00001\n")
    res = _cli("predict", "--table", str(raw), "--stage", "baseline-gbdt-seed2022", code=2)
    assert "scikit-learn baseline" in res.output and "explain --method permutation" in res.output
