"""DeLong's variance of the AUC and the paired test for two correlated AUCs.

One implementation, following the fast midrank algorithm of Sun & Xu (2014), "Fast
implementation of DeLong's algorithm for comparing the areas under correlated receiver
operating characteristic curves", IEEE Signal Processing Letters 21(11):1389-1393, for the
method of DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44(3):837-845.

For ``k`` score vectors on the same ``m`` positives and ``n`` negatives:

- midranks ``T_x`` of the positives among themselves, ``T_y`` of the negatives among
  themselves, and ``T_z`` of all ``m + n`` scores together (ties share the mean rank);
- placement values ``V10_i = (T_z_i - T_x_i) / n`` (share of negatives below positive ``i``,
  ties counted 1/2) and ``V01_j = 1 - (T_z_j - T_y_j) / m`` (share of positives above
  negative ``j``);
- ``AUC = mean(V10) = mean(V01)``; ``S = cov(V10) / m + cov(V01) / n`` (``k x k``, sample
  covariances with ``m - 1`` and ``n - 1`` in the denominators, as DeLong et al.).

The AUC reported is scikit-learn's ``roc_auc_score``; the placement-value AUC equals it to
rounding (tests check this). Intervals are Wald intervals on the AUC scale,
``AUC +- z * sqrt(var)``, clipped to [0, 1], without a logit transform: the same convention
as pROC's ``ci.auc`` / ``roc.test``, whose published values the tests reproduce. A score is
read as "higher means more likely positive"; no direction is guessed.

With a single positive (or a single negative) the sample covariance of its placement values
has ``m - 1 = 0`` degrees of freedom: the variance is undefined, not zero. The AUC is still
reported; variance, interval, ``z`` and ``p`` are NaN and an :class:`UndefinedVarianceWarning`
is issued (pROC's ``ci.auc`` returns NA there, and its ``roc.test`` NaN).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

MIN_PER_CLASS = 2  # rows of each class DeLong's sample covariances need


class UndefinedVarianceWarning(UserWarning):
    """DeLong's variance is undefined: fewer than two rows of one class."""


def undefined_reason(n_pos: int, n_neg: int) -> str:
    """Why DeLong's variance is undefined for these class counts, in words ("" when it is defined)."""
    if min(n_pos, n_neg) >= MIN_PER_CLASS:
        return ""
    return (f"{n_pos} positive and {n_neg} negative rows: DeLong's variance of the AUC needs at least "
            f"{MIN_PER_CLASS} of each class, so the AUC has no interval and no test")


@dataclass(frozen=True)
class AucCI:
    """AUC with DeLong variance and a two-sided Wald interval at ``level`` (NaN where undefined)."""

    auc: float
    var: float
    low: float
    high: float
    n_pos: int
    n_neg: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedAuc:
    """Paired DeLong comparison of ``auc_a - auc_b`` on the same rows (variance onwards NaN where undefined)."""

    auc_a: float
    auc_b: float
    diff: float
    var: float
    low: float
    high: float
    z: float
    p: float
    n_pos: int
    n_neg: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def _binary_labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    values = np.unique(y)
    if not np.all(np.isin(values, [0, 1])):
        raise ValueError(f"binary labels must be 0/1, got values {values[:5].tolist()}")
    return y.astype(bool)


def placements(y, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sun & Xu's midrank placement values.

    Args:
        y: (N,) 0/1 labels with both classes present.
        scores: (N,) or (k, N) scores, higher = more likely positive.

    Returns:
        auc (k,), v10 (k, m) positive placements, v01 (k, n) negative placements.
    """
    pos = _binary_labels(y)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != len(pos):
        raise ValueError(f"scores have {s.shape[1]} rows, labels {len(pos)}")
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        raise ValueError("DeLong needs both classes present")
    x, yneg = s[:, pos], s[:, ~pos]
    tx = stats.rankdata(x, axis=1)
    ty = stats.rankdata(yneg, axis=1)
    tz = stats.rankdata(np.concatenate([x, yneg], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    auc = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    return auc, v10, v01


def delong_covariance(y, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k) for ``scores`` (k, N) on labels ``y``.

    The matrix is all NaN with fewer than :data:`MIN_PER_CLASS` rows of a class (no warning here;
    :func:`delong_auc` and :func:`delong_paired` warn).
    """
    auc, v10, v01 = placements(y, scores)
    m, n = v10.shape[1], v01.shape[1]
    if min(m, n) < MIN_PER_CLASS:
        return auc, np.full((len(auc), len(auc)), np.nan)
    # np.cov of a single row is a 0-d array; atleast_2d keeps the (k, k) contract.
    return auc, np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n


def _warn_if_undefined(n_pos: int, n_neg: int) -> bool:
    reason = undefined_reason(n_pos, n_neg)
    if reason:
        warnings.warn(reason, UndefinedVarianceWarning, stacklevel=3)
    return bool(reason)


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(stats.norm.ppf(0.5 + level / 2.0))


def delong_auc(y, score, level: float = 0.95) -> AucCI:
    """AUC (scikit-learn) with DeLong variance and a Wald interval clipped to [0, 1].

    Args:
        y: (N,) 0/1 labels, both classes present.
        score: (N,) score or probability of class 1.

    With one row of a class: variance and interval NaN, and an :class:`UndefinedVarianceWarning`.
    """
    from sklearn.metrics import roc_auc_score

    y = _binary_labels(y)
    _, cov = delong_covariance(y, score)
    auc = float(roc_auc_score(y, np.asarray(score, dtype=np.float64)))
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if _warn_if_undefined(n_pos, n_neg):
        return AucCI(auc, math.nan, math.nan, math.nan, n_pos, n_neg, level)
    var = float(cov[0, 0])
    half = _z(level) * math.sqrt(max(var, 0.0))
    return AucCI(auc, var, max(0.0, auc - half), min(1.0, auc + half), n_pos, n_neg, level)


def delong_paired(y, score_a, score_b, level: float = 0.95) -> PairedAuc:
    """Paired DeLong test of ``AUC(a) - AUC(b)`` for two scores on the same rows.

    ``z = diff / sqrt(var_a + var_b - 2 cov_ab)``; two-sided normal p-value. Identical
    scores give ``z = 0, p = 1`` (zero variance of the difference, as pROC reports). With one
    row of a class: variance, interval, ``z`` and ``p`` NaN, and an :class:`UndefinedVarianceWarning`.
    """
    from sklearn.metrics import roc_auc_score

    y = _binary_labels(y)
    sa = np.asarray(score_a, dtype=np.float64)
    sb = np.asarray(score_b, dtype=np.float64)
    _, cov = delong_covariance(y, np.stack([sa, sb]))
    auc_a, auc_b = float(roc_auc_score(y, sa)), float(roc_auc_score(y, sb))
    diff = auc_a - auc_b
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if _warn_if_undefined(n_pos, n_neg):
        nan = math.nan
        return PairedAuc(auc_a, auc_b, diff, nan, nan, nan, nan, nan, n_pos, n_neg, level)
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) < 1e-12 else (math.copysign(math.inf, diff), 0.0)
        sd = 0.0
    else:
        sd = math.sqrt(var)
        z = diff / sd
        p = float(2.0 * stats.norm.sf(abs(z)))
    half = _z(level) * sd
    return PairedAuc(auc_a, auc_b, diff, max(var, 0.0), max(-1.0, diff - half), min(1.0, diff + half), float(z), p,
                     n_pos, n_neg, level)
