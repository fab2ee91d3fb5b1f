"""IG tells the truth about itself: rank intervals, the share of the output the explained branch moves,
and on a synthetic cohort what a logistic regression on the same rows finds (issue 25, item 2)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from explain_cli import ok  # noqa: E402  (tests/explain/explain_cli.py)


def test_rank_intervals_over_row_resamples_and_models():
    from amfmedit.explain.stability import rank_stability

    rng = np.random.default_rng(0)
    n = 300
    # feature 0 dominates every row; 1 and 2 are equal in distribution (their order is a coin flip);
    # 3 and 4 are noise far below
    values = np.stack([10 + rng.normal(size=n), 2 + rng.normal(size=n), 2 + rng.normal(size=n),
                       0.1 * rng.normal(size=n), 0.1 * rng.normal(size=n)], axis=1)
    names = ["a", "b", "c", "d", "e"]
    stab = rank_stability([values], names, top_k=2, n_boot=200, seed=1)
    assert stab.rank[0] == 1 and stab.interval("a") == (1, 1)
    assert stab.interval("b") == (2, 3) and stab.interval("c") == (2, 3)  # they swap across resamples
    assert stab.interval("d")[0] >= 4 and stab.resamples == 200 and stab.models == 1 and stab.rows == n
    # by hand: the share of the top 2 a resample's top 2 keeps = (1 + P(top-2 feature of b/c stays)) / 2
    assert 0.6 < stab.overlap < 0.95 and stab.stable == 1
    # a second model ranking d above b and c (another seed) widens their intervals
    other = values[:, [0, 3, 4, 1, 2]]
    both = rank_stability([values, other], names, top_k=2, n_boot=200, seed=1)
    assert both.resamples == 400 and both.models == 2
    assert both.interval("b")[1] >= 4 and both.interval("d")[0] == 2
    assert not both.is_stable and "the top 2 is not stable" in both.warning()
    assert "400 resamples: a bootstrap of the 300 explained rows x 2 seeds' models" in both.warning()
    steady = rank_stability([values[:, [0, 1, 3, 4]]], names[:4], top_k=2)
    assert steady.is_stable and steady.warning() is None and steady.overlap == 1.0


def test_a_branch_that_moves_almost_nothing_is_said():
    from amfmedit.explain.stability import output_share
    from amfmedit.stages.explain import _trust_warnings

    rng = np.random.default_rng(2)
    outputs = rng.uniform(0.05, 0.95, 200)  # the image drives the probability
    change = rng.normal(scale=0.0066, size=200)  # the tabular branch barely moves it
    share = output_share(change, outputs)
    assert share["share"] == pytest.approx(np.abs(change).mean() / outputs.std()) and share["small"]
    assert not output_share(outputs - outputs.mean(), outputs)["small"]  # a tabular-only model moves it all

    class Ex:  # the tabular branch of a fusion model
        info = {"modality": None}

    class Stable:
        @staticmethod
        def warning():
            return None

    from amfmedit.explain.ig import IGConfig

    (text,) = _trust_warnings(share, Stable(), Ex(), IGConfig())
    assert text.startswith(f"the explained tabular branch moves the attributed output (prob) by "
                           f"{np.abs(change).mean():.3g} on average")
    assert "percentages of almost nothing" in text


def test_reference_ranking_is_a_logistic_regression_on_the_same_rows():
    from sklearn.linear_model import LogisticRegression

    from amfmedit.explain.reference import logistic_reference

    rng = np.random.default_rng(3)
    n = 400
    x_cont = rng.normal(size=(n, 4)).astype(np.float32)
    x_cat = rng.integers(0, 3, size=(n, 1))
    logit = 2.0 * x_cont[:, 2] - 1.0 * x_cont[:, 0] + 1.5 * (x_cat[:, 0] == 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    ref = logistic_reference(x_cont, x_cat, y, ["c0", "c1", "c2", "c3", "cat"], [3])
    assert ref.n_rows == n and ref.top(3) == ["c2", "c0", "cat"]
    # by hand: one-hot the category (codes 0, 1, 2), fit, weight = sum |coef| x column sd per feature
    onehot = pd.get_dummies(pd.Series(x_cat[:, 0]).astype(str), dtype=float).to_numpy()
    x = np.concatenate([x_cont.astype(np.float64), onehot], axis=1)
    coef = np.abs(LogisticRegression(C=0.1, max_iter=5000).fit(x, y).coef_[0]) * x.std(axis=0)
    want = dict(zip(["c0", "c1", "c2", "c3"], coef[:4])) | {"cat": coef[4:].sum()}
    assert ref.weights == pytest.approx(want, rel=1e-6)


def test_top10_and_report_carry_intervals_the_share_moved_and_the_reference(trained_run):
    # a second seed of the supervised tabular model: the rank intervals go through both
    ok("finetune", "--fusion", "none", "--modality", "tabular", "--epochs", "2", "--lr", "0.01", "--seeds", "2023",
       "--quiet")
    res = ok("explain", "--method", "ig", "--max-samples", "40", "--steps", "8", "--stage",
             "supervised-tabular-seed2022", "--rank-seeds", "2")
    folder = trained_run.root / "explain" / "ig-supervised-tabular-seed2022"
    summary = json.loads((folder / "summary.json").read_text())
    stab = summary["rank_stability"]
    assert stab["seed_stages"] == ["supervised-tabular-seed2022", "supervised-tabular-seed2023"]
    assert stab["models"] == 2 and stab["resamples"] == 400 and stab["rows"] == 40
    table = pd.read_csv(folder / "importance.csv")
    assert (table["rank_low"] <= table["rank"]).all() and (table["rank"] <= table["rank_high"]).all()
    top = (folder / "top10.md").read_text()
    first = table.iloc[0]
    assert re.search(rf"^\| 1 \(1–{first['rank_high']}\) \| `{first['name']}` \|", top, re.M)
    share = summary["output_share"]
    assert share["mean_abs_change"] == pytest.approx(summary["completeness"]["mean_abs_output_change"])
    assert f"Share of the output moved: mean |f(x) − f(baseline)| {share['mean_abs_change']:.3g}" in top
    assert "Rank stability: a resample's top 10 keeps" in top
    syn = summary["synthetic"]
    assert syn["reference_rows"] == 154 and len(syn["reference_top"]) == 10  # the training rows
    said = f"a logistic regression on the same 154 training rows puts {syn['reference_in_top_k']} in its top 10"
    assert said in top and said in " ".join(res.output.split())
    assert stab["stable_top"] == (stab["overlap"] >= 0.8)
    assert any("is not stable" in w for w in summary["warnings"]) == (not stab["stable_top"])
    report = (trained_run.root / "report.md").read_text()
    assert "Rank stability:" in report and said in report and "Rank (95% interval)" in report


@pytest.fixture(scope="module")
def sized_cohort(tmp_path_factory):
    """Synthetic OL3I large enough for its informative features to stand out of the noise: 2,000
    patients (1,284 training rows), 40 features (12 informative), prevalence 0.3, 16-pixel images."""
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.data.spec import load_spec
    from amfmedit.stages.prepare import prepare

    data_dir = tmp_path_factory.mktemp("sized-data")
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=16)
    prepare(spec, data_dir=data_dir, synthetic=dict(patients=2000, seed=11, features=40, prevalence=0.3))
    return data_dir


def test_ig_finds_the_informative_features_where_a_logistic_regression_does(sized_cohort, tmp_path, monkeypatch):
    """Issue 19: at a size where the right model family (a logistic regression on the same training rows)
    puts most informative features in its top 10, IG on a trained tabular model does too."""
    monkeypatch.setenv("AMFMEDIT_DATA", str(sized_cohort))
    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path / "runs"))
    ok("finetune", "--data", "synthetic-ol3i", "--run", "sized", "--fusion", "none", "--modality", "tabular",
       "--tabular-encoder", "mlp", "--tabular-dim", "32", "--epochs", "8", "--lr", "0.001", "--seeds", "2022",
       "--loss-weights", "none", "--sampler-weights", "none", "--batch-size", "64", "--quiet")
    ok("explain", "--run", "sized", "--method", "ig", "--stage", "supervised-tabular-seed2022", "--max-samples", "300",
       "--steps", "16", "--quiet")
    summary = json.loads((tmp_path / "runs" / "sized" / "explain" / "ig-supervised-tabular-seed2022" /
                          "summary.json").read_text())
    syn = summary["synthetic"]
    assert syn["n_informative"] == 12 and syn["reference_rows"] == 1284
    assert syn["reference_in_top_k"] >= 7  # the sample supports finding them
    assert syn["in_top_k"] >= 7 and syn["in_top_k"] >= syn["reference_in_top_k"] - 1
    assert summary["rank_stability"]["stable_top"]  # and the ranking is not an accident of the rows drawn
