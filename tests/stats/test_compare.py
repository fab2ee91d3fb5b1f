"""Paired comparisons across a run's classifiers, Holm adjustment, small-split flags, rendering."""

import csv
import io

import numpy as np
import pytest
from scipy import stats

from amfmedit.stats import bootstrap as bs
from amfmedit.stats import compare, splits
from amfmedit.stats.decision import decision_curve, net_benefit, treat_all
from amfmedit.stats.delong import delong_paired
from amfmedit.stats.summary import summarise_run


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.04 -> 4*.01, 3*.02, 2*.03, 1*.04 = .04, .06, .06, .04 -> monotone .04 .06 .06 .06
    np.testing.assert_allclose(compare.holm([0.03, 0.01, 0.04, 0.02]), [0.06, 0.04, 0.06, 0.06])
    np.testing.assert_allclose(compare.holm([0.5, 0.9]), [1.0, 1.0])  # 2 * .5 = 1, then max(1, .9)
    np.testing.assert_allclose(compare.holm([0.01, 0.9]), [0.02, 0.9])
    out = compare.holm([np.nan, 0.01, 0.2])
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.02) and out[2] == pytest.approx(0.2)


def _models(n, prevalence, seed, strengths):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    shared = rng.normal(size=n)
    return y, {f"m{i}": 1 / (1 + np.exp(-(0.7 * shared + rng.normal(size=n) + s * y - 1))) for i, s in
               enumerate(strengths)}


def test_compare_uses_delong_for_auc_and_holm_within_metric():
    y, preds = _models(1200, 0.3, 0, [0.3, 1.0, 2.0])
    t = compare.compare_models(y, preds, {k: 0.3 for k in preds}, n_boot=1000)
    aucs = [r for r in t.rows if r.metric == "auc"]
    assert [(r.a, r.b) for r in aucs] == [("m0", "m1"), ("m0", "m2"), ("m1", "m2")]
    for r in aucs:
        d = delong_paired(y, preds[r.a], preds[r.b])
        assert r.method == "DeLong" and (r.diff, r.p) == pytest.approx((d.diff, d.p))
    np.testing.assert_allclose([r.p_holm for r in aucs], compare.holm([r.p for r in aucs]))
    assert {r.method for r in t.rows if r.metric != "auc"} == {"paired bootstrap"}
    assert aucs[1].verdict == "m2 better"  # a large, real difference on 1,200 rows
    brier = [r for r in t.rows if r.metric == "brier" and r.p_holm < 0.05]
    assert all(r.verdict == f"{r.a if r.diff < 0 else r.b} better" for r in brier)  # lower Brier wins
    assert not t.too_small and t.note == ""


def test_small_split_is_flagged_in_words():
    y, preds = _models(80, 0.1, 1, [1.0, 1.2])  # ~8 positives
    t = compare.compare_models(y, preds, n_boot=500)
    assert t.too_small and "too small to tell these models apart" in t.note
    assert all(r.verdict in ("cannot tell apart (test set too small)",) or r.verdict.endswith("better") for r in t.rows)

    y, preds = _models(160, 0.15, 2, [1.0, 1.1])  # enough events, but wide intervals
    t = compare.compare_models(y, preds, n_boot=500)
    width = [r.high - r.low for r in t.rows if r.metric == "auc"][0]
    assert width > compare.MAX_DIFF_WIDTH and t.too_small and "wide" in t.note
    # the detectable difference comes from the measured width, not from the 0.20 cut-off
    mdd = compare.detectable_difference(width)
    assert f"{width:.2f}-{width:.2f} wide" in t.note and f"about {mdd:.2f} or larger" in t.note and "80% power" in t.note
    assert mdd > compare.MAX_DIFF_WIDTH / 2 + 0.03


def test_detectable_difference_with_known_numbers():
    z, z80 = 1.959963984540054, 0.8416212335729143  # normal quantiles 0.975 and 0.80
    # a 95% interval 0.27 wide: SE = 0.27 / (2 * 1.96) = 0.0689; (1.96 + 0.84) * SE = 0.193 (half-width: 0.135)
    assert compare.detectable_difference(0.27) == pytest.approx((z + z80) * 0.27 / (2 * z), rel=1e-12)
    assert compare.detectable_difference(0.27) == pytest.approx(0.19297, abs=5e-6)
    assert compare.detectable_difference(0.20) == pytest.approx(0.14294, abs=5e-6)  # at the cut-off
    assert compare.detectable_difference(0.20, power=0.5) == pytest.approx(0.10)  # 50% power: the half-width
    # pROC's roc.test(ndka, s100b) on aSAH: Wald 95% CI -0.2877 to 0.0489, so SE = half-width / z = 0.0859
    lo, hi = -0.2876917446341914, 0.0488706064228094
    se = (hi - lo) / (2 * z)
    assert compare.detectable_difference(hi - lo) == pytest.approx((z + z80) * se, rel=1e-12)
    assert compare.detectable_difference(hi - lo) == pytest.approx(0.24054, abs=5e-5)
    with pytest.raises(ValueError, match="power"):
        compare.detectable_difference(0.2, power=1.0)


def test_seed_metrics_at_each_seeds_own_threshold():
    """The spread over seeds scores seed i at the threshold chosen on seed i's validation prediction (what
    ``predict`` applies with it), not at the seed-averaged model's threshold."""
    rng = np.random.default_rng(7)
    y = (rng.random(200) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=(3, 200)) + 1.5 * y - 1 + np.array([[-1.0], [0.0], [1.0]]))))
    own = [0.2, 0.4, 0.6]
    r = summarise_run(y, {"m": p}, {"m": 0.4}, seed_thresholds={"m": own}, n_boot=100)
    m = r.models["m"]
    for metric in ("sensitivity", "specificity", "ppv", "npv", "balanced_acc", "auc"):
        per_seed = [bs.point_estimates(y, q, t)[metric] for q, t in zip(p, own)]
        assert m.seed_mean[metric] == pytest.approx(np.mean(per_seed)), metric
        assert m.seed_std[metric] == pytest.approx(np.std(per_seed, ddof=1)), metric
    assert m.seed_thresholds == own and m.threshold == 0.4 and m.to_dict()["seed_thresholds"] == own
    shared = summarise_run(y, {"m": p}, {"m": 0.4}, n_boot=100).models["m"]  # no per-seed thresholds given
    assert shared.seed_thresholds == [0.4] * 3 and shared.seed_mean["sensitivity"] != m.seed_mean["sensitivity"]
    assert shared.intervals["sensitivity"] == m.intervals["sensitivity"]  # the averaged model is unchanged
    with pytest.raises(ValueError, match="2 seed thresholds for 3 seeds"):
        summarise_run(y, {"m": p}, {"m": 0.4}, seed_thresholds={"m": own[:2]}, n_boot=10)


def test_one_positive_in_the_test_split_reports_auc_without_an_interval(recwarn):
    rng = np.random.default_rng(8)
    y = np.r_[1, np.zeros(59, int)]
    preds = {k: rng.random((2, 60)) for k in ("a", "b")}
    r = summarise_run(y, preds, n_boot=100)
    auc = r.models["a"].intervals["auc"]
    assert np.isfinite(auc.estimate) and np.isnan(auc.low) and np.isnan(auc.high)
    assert auc.text() == f"{auc.estimate:.3f} (no interval)"
    assert any("DeLong's variance of the AUC needs at least 2 of each class" in w for w in r.warnings)
    assert r.comparisons.warnings == r.warnings
    row = [x for x in r.comparisons.rows if x.metric == "auc"][0]
    assert np.isnan(row.p) and np.isnan(row.p_holm) and row.verdict == "cannot tell apart (test set too small)"
    assert not recwarn.list  # said once, in the run's warnings, not also as Python warnings
    from amfmedit.stats.summary import render_models_markdown

    assert "(no interval)" in render_models_markdown(r) and "nan" not in render_models_markdown(r)


def test_rendered_tables():
    y, preds = _models(400, 0.3, 3, [0.5, 1.5])
    t = compare.compare_models(y, {"AMF + FT-Mamba, trainable": preds["m0"], "Concatenation": preds["m1"]}, n_boot=300)
    md = compare.render_markdown(t)
    assert "## AUC (paired DeLong test; higher is better)" in md and "| AMF + FT-Mamba, trainable | Concatenation |" in md
    assert "## Brier (paired stratified bootstrap, 300 resamples; lower is better)" in md
    rows = list(csv.DictReader(io.StringIO(compare.render_csv(t))))
    assert len(rows) == len(compare.BINARY_COMPARED)
    assert rows[0]["a"] == "AMF + FT-Mamba, trainable" and float(rows[0]["diff"]) == pytest.approx(t.rows[0].diff)


def test_split_warnings():
    one = splits.split_warnings(np.zeros(40, int), "test")
    assert len(one) == 1 and "test split: only class 0 present (40 rows)" in one[0]
    assert "AUC, AUPRC, balanced accuracy, sensitivity, specificity, PPV, NPV skipped" in one[0]
    few = splits.split_warnings(np.r_[np.zeros(50, int), np.ones(7, int)], "validation")
    assert few == ["validation split: only 7 positive rows (fewer than 10); intervals will be wide and differences "
                   "between models are unlikely to be resolved"]
    assert splits.split_warnings(np.r_[np.zeros(50, int), np.ones(10, int)], "test") == []
    multi = splits.split_warnings(np.r_[np.zeros(20, int), np.ones(20, int)], "test", n_classes=3,
                                  class_names=["sedan", "suv", "van"])
    assert "class(es) van absent" in multi[0]


def test_summarise_run_spread_over_seeds_and_patients():
    rng = np.random.default_rng(4)
    y = (rng.random(500) < 0.3).astype(int)
    preds = {name: 1 / (1 + np.exp(-(rng.normal(size=(3, 500)) + s * y - 1))) for name, s in [("a", 1.0), ("b", 1.5)]}
    r = summarise_run(y, preds, {"a": 0.3, "b": 0.4}, n_boot=500)
    a = r.models["a"]
    assert a.n_seeds == 3 and a.threshold == 0.3 and a.intervals["auc"].method == "DeLong"
    assert a.seed_std["auc"] > 0 and a.intervals["auc"].low < a.intervals["auc"].estimate < a.intervals["auc"].high
    # The averaged prediction of 3 noisy seeds ranks better than a typical seed.
    assert a.intervals["auc"].estimate > a.seed_mean["auc"]
    assert r.comparisons is not None and r.comparisons.rows[0].a == "a"

    one = summarise_run(np.zeros(30, int), {k: v[:, :30] for k, v in preds.items()}, n_boot=100)
    assert set(one.models["a"].intervals) == {"brier", "ece"} and "only class 0 present" in one.warnings[0]
    assert {row.metric for row in one.comparisons.rows} == {"brier", "ece"}


def test_net_benefit_by_hand_and_references():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.4, 0.6, 0.1, 0.2])
    # p_t = 0.5: treated 0.9 (TP), 0.6 (FP): NB = 1/5 - 1/5 * 1 = 0
    # p_t = 0.25: treated 0.9, 0.4 (TP), 0.6 (FP): NB = 2/5 - 1/5 * (1/3)
    np.testing.assert_allclose(net_benefit(y, p, [0.5, 0.25]), [0.0, 0.4 - 0.2 / 3])
    np.testing.assert_allclose(treat_all(y, [0.5]), [0.4 - 0.6])
    np.testing.assert_allclose(net_benefit(y, np.ones(5), [0.3]), treat_all(y, [0.3]))  # treat-all = everyone >= p_t
    dc = decision_curve(y, {"m": p})
    assert dc.models["m"].shape == dc.thresholds.shape == (99,) and np.all(dc.treat_none == 0)


def test_summarise_run_multiclass():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 240)
    preds = {}
    for name, s in [("a", 0.5), ("b", 2.0)]:
        z = rng.normal(size=(2, 240, 3))
        z[:, np.arange(240), y] += s
        preds[name] = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    r = summarise_run(y, preds, n_boot=300)
    assert set(r.models["a"].intervals) == {"acc", "balanced_acc", "macro_auc", "brier", "ece"}
    assert r.comparisons.headline == "acc"
    acc = [row for row in r.comparisons.rows if row.metric == "acc"][0]
    assert acc.method == "paired bootstrap" and acc.verdict == "b better"
    iv = r.models["a"].intervals["acc"]  # a proportion of counted rows: exact interval
    correct = int(np.sum(preds["a"].mean(axis=0).argmax(axis=1) == y))
    assert iv.method == "Clopper-Pearson" and iv.estimate == correct / 240
    assert (iv.low, iv.high) == pytest.approx(tuple(stats.binomtest(correct, 240).proportion_ci(method="exact")))


def test_models_table_rows_and_intervals():
    from amfmedit.stats.summary import render_models_markdown

    rng = np.random.default_rng(6)
    y = (rng.random(300) < 0.3).astype(int)
    preds = {"AMF + FT-Mamba, trainable": 1 / (1 + np.exp(-(rng.normal(size=(2, 300)) + y - 1)))}
    run = summarise_run(y, preds, {"AMF + FT-Mamba, trainable": 0.3}, n_boot=200)
    md = render_models_markdown(run, {"AMF + FT-Mamba, trainable": "youden"})
    lines = md.strip().splitlines()
    assert lines[0].startswith("| Model | AUC over seeds | Threshold | AUC |") and len(lines) == 3
    auc = run.models["AMF + FT-Mamba, trainable"].intervals["auc"]
    assert f"{auc.estimate:.3f} ({auc.low:.3f}\u2013{auc.high:.3f})" in lines[2] and "0.300 (youden)" in lines[2]
