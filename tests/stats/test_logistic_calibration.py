"""Calibration-in-the-large and calibration slope against a hand-written Newton-Raphson fit of the
logistic likelihood, and the unpaired subgroup differences against their definitions."""

import math

import numpy as np
import pytest
from scipy import special, stats

from amfmedit.stats import bootstrap
from amfmedit.stats.calibration import apply_logistic_recalibration, logistic_calibration
from amfmedit.stats.delong import delong_auc
from amfmedit.stats.groups import auc_difference, bootstrap_differences


def _newton(y, X, offset=None, iters=50):
    """Maximum likelihood of logit P(y=1) = X beta + offset by plain Newton-Raphson; (beta, covariance)."""
    beta = np.zeros(X.shape[1])
    off = np.zeros(len(y)) if offset is None else offset
    for _ in range(iters):
        m = special.expit(X @ beta + off)
        info = X.T @ (X * (m * (1 - m))[:, None])
        beta = beta + np.linalg.solve(info, X.T @ (y - m))
    m = special.expit(X @ beta + off)
    return beta, np.linalg.inv(X.T @ (X * (m * (1 - m))[:, None]))


def _cohort(n, a, b, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.5, 1.2, n)
    y = (rng.random(n) < special.expit(a + b * z)).astype(int)
    return y, special.expit(z)


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (0.4, 0.6), (-0.5, 1.8)])
def test_slope_and_calibration_in_the_large_match_newton(a, b):
    y, p = _cohort(3000, a, b, 1)
    z = special.logit(p)
    res = logistic_calibration(y, p)
    beta, cov = _newton(y, np.stack([np.ones_like(z), z], 1))
    assert res.intercept == pytest.approx(beta[0], abs=1e-5) and res.slope == pytest.approx(beta[1], abs=1e-5)
    q = stats.norm.ppf(0.975)
    assert res.slope_low == pytest.approx(beta[1] - q * math.sqrt(cov[1, 1]), abs=1e-4)
    (citl,), cov1 = _newton(y, np.ones((len(y), 1)), offset=z)
    assert res.citl == pytest.approx(citl, abs=1e-8)
    assert res.citl_high == pytest.approx(citl + q * math.sqrt(cov1[0, 0]), abs=1e-6)


def test_a_calibrated_model_has_slope_one_and_no_shift_and_recalibration_fixes_one():
    y, p = _cohort(50_000, 0.0, 1.0, 2)
    good = logistic_calibration(y, p)
    assert good.slope_low < 1 < good.slope_high and good.citl_low < 0 < good.citl_high
    y, p = _cohort(50_000, 0.7, 0.5, 3)  # risks too extreme and too low on average
    bad = logistic_calibration(y, p)
    assert bad.slope < 0.6 and bad.citl > 0.3
    fixed = logistic_calibration(y, apply_logistic_recalibration(p, bad.intercept, bad.slope))
    assert fixed.slope == pytest.approx(1.0, abs=1e-4) and fixed.citl == pytest.approx(0.0, abs=1e-3)


def test_one_class_is_undefined_not_an_error():
    res = logistic_calibration(np.zeros(10, int), np.linspace(0.1, 0.9, 10))
    assert math.isnan(res.slope) and math.isnan(res.citl) and res.n == 10


def test_unpaired_auc_difference_is_the_delong_wald_test():
    ya, pa = _cohort(400, 0.0, 1.0, 4)
    yb, pb = _cohort(300, 0.0, 0.4, 5)
    d = auc_difference(ya, pa, yb, pb)
    A, B = delong_auc(ya, pa), delong_auc(yb, pb)
    sd = math.sqrt(A.var + B.var)
    assert d.diff == pytest.approx(A.auc - B.auc)
    assert d.p == pytest.approx(2 * stats.norm.sf(abs(A.auc - B.auc) / sd))
    assert d.low == pytest.approx(d.diff - stats.norm.ppf(0.975) * sd)
    assert math.isnan(auc_difference(np.zeros(5, int), np.ones(5) / 2, yb, pb).diff)


def test_unpaired_bootstrap_differences_resample_each_group_alone():
    ya, pa = _cohort(300, 0.0, 1.0, 6)
    yb, pb = _cohort(200, 0.0, 1.0, 7)
    d = bootstrap_differences(ya, pa, yb, pb, threshold=0.2, n_boot=500, seed=3)
    point_a, point_b = bootstrap.point_estimates(ya, pa, 0.2), bootstrap.point_estimates(yb, pb, 0.2)
    assert d["brier"].diff == pytest.approx(point_a["brier"] - point_b["brier"])
    reps = (bootstrap.replicates(ya, pa, bootstrap.stratified_counts(ya, 500, 3), 0.2)["sensitivity"]
            - bootstrap.replicates(yb, pb, bootstrap.stratified_counts(yb, 500, 4), 0.2)["sensitivity"])
    assert d["sensitivity"].low == pytest.approx(np.percentile(reps, 2.5))
    assert 0 < d["sensitivity"].p <= 1
