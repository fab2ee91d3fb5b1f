"""Regression metrics (amfmedit.stats.regression): point estimates from scikit-learn and least squares,
replicates equal to them on the explicitly resampled rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from amfmedit.stats import bootstrap
from amfmedit.stats import regression as rg


def test_point_metrics_and_replicates():
    rng = np.random.default_rng(0)
    y = rng.normal(50, 10, 300)
    pred = 0.8 * y + 12 + rng.normal(0, 5, 300)
    p = rg.point_metrics(y, pred)
    assert p["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, pred)))
    assert p["mae"] == pytest.approx(mean_absolute_error(y, pred))
    assert p["r2"] == pytest.approx(r2_score(y, pred))
    slope, intercept = np.linalg.lstsq(np.c_[pred, np.ones_like(pred)], y, rcond=None)[0]
    assert p["calibration_slope"] == pytest.approx(slope) and p["calibration_intercept"] == pytest.approx(intercept)
    W = bootstrap.stratified_counts(np.zeros(len(y), int), 5, seed=3)
    reps = rg.replicates(y, pred, W)
    for b in range(len(W)):
        rows = np.repeat(np.arange(len(y)), W[b].astype(int))
        want = rg.point_metrics(y[rows], pred[rows])
        for k, v in want.items():
            assert reps[k][b] == pytest.approx(v, rel=1e-9), k


def test_constant_predictions_have_no_calibration_slope():
    y = np.arange(10.0)
    p = rg.point_metrics(y, np.full(10, 4.5))
    assert np.isnan(p["calibration_slope"]) and p["r2"] == pytest.approx(0.0)
    assert np.isnan(rg.replicates(y, np.full(10, 4.5), np.ones((1, 10)))["calibration_slope"][0])
