"""Stratified bootstrap: vectorised metrics equal scikit-learn on the resampled rows; coverage."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as M

from amfmedit.stats import bootstrap as bs
from amfmedit.stats import weighted
from amfmedit.stats.delong import delong_paired
from amfmedit.train.metrics import classification_metrics, expected_calibration_error


def _binary(n=400, prevalence=0.25, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    p = np.round(1 / (1 + np.exp(-(rng.normal(size=n) + 1.3 * y - 0.8))), 2)  # rounded: ties
    return y, p


def _multiclass(n=300, k=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.0
    return y, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_stratified_counts_keep_class_sizes_and_are_seeded():
    y = np.r_[np.zeros(30, int), np.ones(7, int), np.full(5, 2)]
    W = bs.stratified_counts(y, 500, seed=3)
    assert W.shape == (500, 42)
    for c, size in [(0, 30), (1, 7), (2, 5)]:
        assert np.all(W[:, y == c].sum(axis=1) == size)
    assert np.array_equal(W, bs.stratified_counts(y, 500, seed=3))
    assert not np.array_equal(W, bs.stratified_counts(y, 500, seed=4))
    assert W.std() > 0.5  # rows are really redrawn, not copied


def _sklearn_binary(y, p, thr):
    pred = (p >= thr).astype(int)
    return {
        "auc": M.roc_auc_score(y, p), "auprc": M.average_precision_score(y, p),
        "balanced_acc": M.balanced_accuracy_score(y, pred), "sensitivity": M.recall_score(y, pred),
        "specificity": M.recall_score(1 - y, 1 - pred), "ppv": M.precision_score(y, pred),
        "npv": M.precision_score(1 - y, 1 - pred), "brier": M.brier_score_loss(y, p),
        "ece": expected_calibration_error(np.stack([1 - p, p], axis=1), y),
    }


def test_binary_replicates_equal_a_slow_sklearn_loop():
    y, p = _binary()
    W = bs.stratified_counts(y, 6, seed=1)
    reps = bs.replicates(y, p, W, threshold=0.35)
    assert set(reps) == set(bs.BINARY_METRICS)
    for b in range(W.shape[0]):
        rows = np.repeat(np.arange(len(y)), W[b].astype(int))
        ref = _sklearn_binary(y[rows], p[rows], 0.35)
        for name, value in ref.items():
            assert reps[name][b] == pytest.approx(value, abs=1e-12), name


def test_binary_point_estimates_match_project_metrics():
    y, p = _binary(seed=5)
    # The project's arg-max calls p = 0.5 negative; here a row is positive when p >= threshold.
    argmax_cut = np.nextafter(0.5, 1.0)
    point = bs.point_estimates(y, np.stack([1 - p, p], axis=1), threshold=argmax_cut)  # (N, 2) read as binary
    old = classification_metrics(np.stack([1 - p, p], axis=1), y)
    for name in ("auc", "auprc", "balanced_acc", "ece"):
        assert point[name] == pytest.approx(old[name], abs=1e-12), name


def test_multiclass_replicates_equal_a_slow_sklearn_loop():
    y, probs = _multiclass()
    W = bs.stratified_counts(y, 5, seed=2)
    reps = bs.replicates(y, probs, W)
    assert set(reps) == set(bs.MULTICLASS_METRICS)
    for b in range(W.shape[0]):
        rows = np.repeat(np.arange(len(y)), W[b].astype(int))
        yy, pp = y[rows], probs[rows]
        ref = {"acc": M.accuracy_score(yy, pp.argmax(1)), "balanced_acc": M.balanced_accuracy_score(yy, pp.argmax(1)),
               "macro_auc": M.roc_auc_score(yy, pp, multi_class="ovr"), "brier": M.brier_score_loss(yy, pp),
               "ece": expected_calibration_error(pp, yy)}
        for name, value in ref.items():
            assert reps[name][b] == pytest.approx(value, abs=1e-12), name
    old = classification_metrics(probs, y)
    point = bs.point_estimates(y, probs)
    assert point["macro_auc"] == pytest.approx(old["auc"]) and point["acc"] == pytest.approx(old["acc"])


def test_intervals_bracket_estimates_and_count_undefined_resamples():
    y, p = _binary()
    ivs = bs.bootstrap_metrics(y, p, threshold=0.35, n_boot=2000, seed=0)
    for name, iv in ivs.items():
        assert iv.n_boot == 2000
        assert iv.low <= iv.estimate <= iv.high, name
    assert 0.05 < ivs["auc"].high - ivs["auc"].low < 0.25
    top = bs.bootstrap_metrics(y, p, threshold=p.max(), n_boot=500, seed=0)["ppv"]
    assert top.n_undefined > 0  # resamples that drew none of the top-scored rows have no positive call


def test_bootstrap_auc_interval_covers_true_auc_at_nominal_rate():
    """Binormal scores (separation d) have AUC = Phi(d / sqrt 2); 2,000-resample intervals cover it ~95%."""
    rng = np.random.default_rng(11)
    d, m, n, reps = 1.0, 60, 90, 200
    true_auc = stats.norm.cdf(d / math.sqrt(2))
    y = np.r_[np.ones(m, int), np.zeros(n, int)]
    hits = 0
    for r in range(reps):
        s = np.r_[rng.normal(d, 1, m), rng.normal(0, 1, n)]
        W = bs.stratified_counts(y, 2000, seed=r)
        lo, hi = np.percentile(weighted.auc(s, y.astype(bool), W), [2.5, 97.5])
        hits += lo <= true_auc <= hi
    assert abs(hits / reps - 0.95) < 0.04, hits / reps


def test_paired_bootstrap_same_model_and_agreement_with_delong():
    y, p = _binary(n=600, seed=7)
    same = bs.paired_bootstrap(y, p, p, n_boot=500)
    assert all(v.diff == 0 and v.low == 0 and v.high == 0 and v.p == 1.0 for v in same.values())

    rng = np.random.default_rng(8)
    q = np.clip(p + rng.normal(0, 0.1, len(p)), 0, 1)  # a correlated second model
    pair = bs.paired_bootstrap(y, p, q, n_boot=2000, seed=1)["auc"]
    dl = delong_paired(y, p, q)
    assert pair.diff == pytest.approx(dl.diff)
    # Same question, two methods: the intervals of the AUC difference agree in width within 25%.
    assert (pair.high - pair.low) == pytest.approx(dl.high - dl.low, rel=0.25)
    # Pairing matters: the paired interval is far narrower than one ignoring the correlation.
    unpaired = bs.bootstrap_metrics(y, p, n_boot=2000)["auc"]
    assert pair.high - pair.low < 0.7 * (unpaired.high - unpaired.low)
