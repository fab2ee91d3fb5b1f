"""One group of test rows against the others (a subgroup against the rest of the split): unpaired
differences with intervals and two-sided p-values.

The two groups hold different rows, so nothing is paired:

- AUC: the difference of two independent DeLong AUCs (:func:`amfmedit.stats.delong.delong_auc`),
  ``z = (AUC_a - AUC_b) / sqrt(var_a + var_b)``, a Wald interval and a normal p-value;
- every other metric: each group resampled on its own (stratified bootstrap,
  :func:`amfmedit.stats.bootstrap.stratified_counts`, independent draws), the difference of the
  replicates giving a percentile interval and the two-sided bootstrap p-value of
  :func:`amfmedit.stats.bootstrap.paired_from` (its arithmetic holds for any two replicate sets).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from amfmedit.stats import bootstrap
from amfmedit.stats.delong import UndefinedVarianceWarning, delong_auc


@dataclass(frozen=True)
class GroupDifference:
    """``metric(group) - metric(rest)`` with its interval and two-sided p-value (NaN where undefined)."""

    metric: str
    group: float
    rest: float
    diff: float
    low: float
    high: float
    p: float
    method: str
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def auc_difference(y_a, s_a, y_b, s_b, level: float = 0.95) -> GroupDifference:
    """Unpaired DeLong difference of the AUCs of two groups of rows ((N_a,), (N_b,) labels and scores)."""
    nan = math.nan
    parts = []
    for y, s in ((y_a, s_a), (y_b, s_b)):
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) < 2:  # no AUC at all; with one row of a class the AUC stands without a variance
            return GroupDifference("auc", nan, nan, nan, nan, nan, nan, "DeLong (unpaired)", level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedVarianceWarning)
            parts.append(delong_auc(y, s, level))
    a, b = parts
    diff = a.auc - b.auc
    var = a.var + b.var
    if not math.isfinite(var):
        return GroupDifference("auc", a.auc, b.auc, diff, nan, nan, nan, "DeLong (unpaired)", level)
    sd = math.sqrt(max(var, 0.0))
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    p = float(2.0 * stats.norm.sf(abs(diff) / sd)) if sd > 0 else (1.0 if diff == 0 else 0.0)
    return GroupDifference("auc", a.auc, b.auc, diff, max(-1.0, diff - z * sd), min(1.0, diff + z * sd), p,
                           "DeLong (unpaired)", level)


def bootstrap_differences(y_a, p_a, y_b, p_b, threshold: float = 0.5, n_boot: int = bootstrap.DEFAULT_N_BOOT,
                          seed: int = 0, level: float = 0.95) -> dict[str, GroupDifference]:
    """Every bootstrap metric of :mod:`amfmedit.stats.bootstrap`: group ``a`` minus group ``b``, each
    resampled on its own (``p``: (N,) / (N, 2) binary at ``threshold``, or (N, K) multiclass)."""
    W_a = bootstrap.stratified_counts(y_a, n_boot, seed)
    W_b = bootstrap.stratified_counts(y_b, n_boot, seed + 1)
    point_a, point_b = bootstrap.point_estimates(y_a, p_a, threshold), bootstrap.point_estimates(y_b, p_b, threshold)
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = bootstrap.paired_from(point_a, point_b, bootstrap.replicates(y_a, p_a, W_a, threshold),
                                      bootstrap.replicates(y_b, p_b, W_b, threshold), level)
    return {k: GroupDifference(k, d.estimate_a, d.estimate_b, d.diff, d.low, d.high, d.p, "bootstrap (unpaired)",
                               level) for k, d in diffs.items()}
