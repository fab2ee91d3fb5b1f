"""Regression metrics of predicted values, with every bootstrap resample at once.

Point estimates from scikit-learn (``mean_squared_error``, ``mean_absolute_error``, ``r2_score``)
and the calibration slope and intercept from ordinary least squares of the observed values on the
predicted ones (Van Calster et al. 2016, J Clin Epidemiol 74:167: slope 1 and intercept 0 for a
calibrated model; a slope below 1 says the predictions spread too far). Each metric is a function
of weighted sums over rows, so the replicates of resamples ``W`` (B, N) (bootstrap counts) are
those sums as matrix products.
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("rmse", "mae", "r2", "calibration_slope", "calibration_intercept")


def point_metrics(y, pred) -> dict[str, float]:
    """RMSE, MAE, R², calibration slope and intercept of (N,) predictions of (N,) observed values."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64).reshape(-1)
    if len(y) < 2:
        return {m: math.nan for m in METRICS}
    out = {"rmse": float(np.sqrt(mean_squared_error(y, pred))), "mae": float(mean_absolute_error(y, pred)),
           "r2": float(r2_score(y, pred)) if np.ptp(y) > 0 else math.nan}
    if np.ptp(pred) > 0:
        slope, intercept = np.polyfit(pred, y, 1)
        out.update(calibration_slope=float(slope), calibration_intercept=float(intercept))
    else:
        out.update(calibration_slope=math.nan, calibration_intercept=math.nan)
    return out


def replicates(y, pred, W: np.ndarray) -> dict[str, np.ndarray]:
    """(B,) replicates of every metric for the resamples ``W`` (B, N) (row counts)."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64).reshape(-1)
    W = np.asarray(W, dtype=np.float64)
    n = W.sum(axis=1)
    e = pred - y
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_y, mean_p = (W @ y) / n, (W @ pred) / n
        sst = W @ (y * y) - n * mean_y ** 2
        spp = W @ (pred * pred) - n * mean_p ** 2
        spy = W @ (pred * y) - n * mean_p * mean_y
        sse = W @ (e * e)
        slope = spy / spp
        return {"rmse": np.sqrt(sse / n), "mae": (W @ np.abs(e)) / n,
                "r2": np.where(sst > 0, 1.0 - sse / sst, np.nan),
                "calibration_slope": np.where(spp > 0, slope, np.nan),
                "calibration_intercept": np.where(spp > 0, mean_y - slope * mean_p, np.nan)}
