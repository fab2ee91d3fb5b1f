"""Clopper-Pearson intervals of the proportion metrics: hand values, scipy, coverage, the run summary."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import confusion_matrix

from amfmedit.stats import proportions
from amfmedit.stats.summary import summarise_run


def test_all_of_twelve_by_hand_and_scipy():
    """12 of 12: the lower bound solves P(X = 12 | p) = 0.025, i.e. p = 0.025 ** (1/12) = 0.735."""
    iv = proportions.proportion_interval(12, 12)
    assert (iv.estimate, iv.high, iv.method) == (1.0, 1.0, "Clopper-Pearson")
    assert iv.low == pytest.approx(0.025 ** (1 / 12), rel=1e-12) and f"{iv.low:.3f}" == "0.735"
    ref = stats.binomtest(12, 12).proportion_ci(confidence_level=0.95, method="exact")
    assert (iv.low, iv.high) == (ref.low, ref.high)
    none = proportions.proportion_interval(0, 12)
    assert none.low == 0.0 and none.high == pytest.approx(1 - 0.025 ** (1 / 12), rel=1e-12)


@pytest.mark.parametrize("k,n,level", [(3, 10, 0.95), (25, 38, 0.95), (14, 20, 0.9), (288, 340, 0.99)])
def test_bounds_are_the_beta_quantiles(k, n, level):
    """Clopper-Pearson: low = Beta(k, n - k + 1) quantile a/2, high = Beta(k + 1, n - k) quantile 1 - a/2."""
    a = 1 - level
    iv = proportions.proportion_interval(k, n, level)
    assert iv.estimate == k / n and iv.level == level
    assert iv.low == pytest.approx(stats.beta.ppf(a / 2, k, n - k + 1), rel=1e-9)
    assert iv.high == pytest.approx(stats.beta.ppf(1 - a / 2, k + 1, n - k), rel=1e-9)


def test_coverage_is_at_least_nominal_for_every_proportion():
    """The reason for Clopper-Pearson: exact coverage sum_k P(k) [p in CI(k)] >= 0.95 for all p (n = 12)."""
    n = 12
    ivs = [proportions.proportion_interval(k, n) for k in range(n + 1)]
    low, high = np.array([iv.low for iv in ivs]), np.array([iv.high for iv in ivs])
    for p in np.linspace(0.001, 0.999, 999):
        covered = stats.binom.pmf(np.arange(n + 1), n, p)[(low <= p) & (p <= high)].sum()
        assert covered >= 0.95 - 1e-12, p


def test_nobody_called_positive_leaves_ppv_undefined():
    iv = proportions.proportion_interval(0, 0)
    assert math.isnan(iv.estimate) and math.isnan(iv.low) and math.isnan(iv.high)
    with pytest.raises(ValueError, match="k=5 n=3"):
        proportions.proportion_interval(5, 3)


def test_exact_intervals_count_the_confusion_matrix():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=200) + 1.5 * y - 1)))
    ivs = proportions.exact_intervals(y, p, 0.4)
    tn, fp, fn, tp = confusion_matrix(y, (p >= 0.4).astype(int)).ravel()
    for name, (k, n) in {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp), "ppv": (tp, tp + fp),
                         "npv": (tn, tn + fn)}.items():
        assert ivs[name] == proportions.proportion_interval(int(k), int(n)), name
    assert proportions.exact_intervals(y, np.stack([1 - p, p], axis=1), 0.4) == ivs  # (N, 2) read as binary

    yk = rng.integers(0, 3, 90)
    probs = rng.dirichlet(np.ones(3), 90)
    acc = proportions.exact_intervals(yk, probs)
    assert set(acc) == {"acc"}
    assert acc["acc"] == proportions.proportion_interval(int(np.sum(probs.argmax(1) == yk)), 90)


def test_run_summary_sensitivity_at_12_of_12_is_not_a_point():
    """The issue's case: every one of 12 test positives called positive. A percentile bootstrap of 12/12
    reads 1.000 (1.000-1.000); the exact interval is 0.735-1.000."""
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(12, int), np.zeros(60, int)]
    p = np.where(y == 1, rng.uniform(0.6, 1.0, (2, 72)), rng.uniform(0.0, 0.8, (2, 72)))
    run = summarise_run(y, {"m": p}, {"m": 0.55}, n_boot=300)
    sens = run.models["m"].intervals["sensitivity"]
    assert (sens.estimate, sens.high, sens.method) == (1.0, 1.0, "Clopper-Pearson")
    assert sens.low == pytest.approx(0.025 ** (1 / 12))
    c = proportions.exact_intervals(y, p.mean(axis=0), 0.55)
    for name in ("specificity", "ppv", "npv"):
        assert run.models["m"].intervals[name] == c[name], name
    for name in ("auprc", "balanced_acc", "brier", "ece"):  # not proportions of counted rows: bootstrap
        assert run.models["m"].intervals[name].method == "bootstrap", name
    assert run.models["m"].intervals["auc"].method == "DeLong"
