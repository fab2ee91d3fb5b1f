"""Exact (Clopper-Pearson) intervals for the metrics that are proportions of counted rows.

At one threshold, sensitivity ``TP / (TP + FN)``, specificity ``TN / (TN + FP)``, PPV
``TP / (TP + FP)`` and NPV ``TN / (TN + FN)`` are each ``k`` rows out of ``n``; so is the top-1
accuracy of a multiclass prediction (correct rows out of all). Their interval is the
Clopper-Pearson interval of a binomial proportion (Clopper & Pearson 1934, Biometrika
26:404-413), computed by ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``.

Why not the bootstrap: a percentile bootstrap of ``k / n`` collapses to a point at ``k = 0`` or
``k = n`` (12 of 12 positives called positive reads 1.000 (1.000-1.000)), exactly where a
small test split most needs its interval; Clopper-Pearson gives 0.735-1.000 there. Why not
Wilson: Clopper-Pearson inverts the binomial tests themselves, so its coverage is at least
the nominal level for every true proportion and every ``n`` (it errs on the wide side), and
it is the interval diagnostic-accuracy studies usually report; Wilson's is narrower and covers
about the nominal level on average, but less than it for some proportions at small ``n``
(Brown, Cai & DasGupta 2001, Statistical Science 16:101-133).

PPV and NPV are read conditionally on how many rows were called positive (negative), the
usual convention; ``n = 0`` (nobody called positive) leaves the metric and its interval
undefined (NaN), as the point estimate is.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from amfmedit.stats import weighted
from amfmedit.stats.bootstrap import Interval

METHOD = "Clopper-Pearson"
BINARY = ("sensitivity", "specificity", "ppv", "npv")
MULTICLASS = ("acc",)


def proportion_interval(k: int, n: int, level: float = 0.95) -> Interval:
    """``k / n`` with its two-sided Clopper-Pearson interval at ``level`` (NaN for ``n = 0``)."""
    if not 0 <= k <= n:
        raise ValueError(f"a proportion needs 0 <= k <= n, got {k=} {n=}")
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, level, 0, 0, METHOD)
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return Interval(k / n, float(ci.low), float(ci.high), level, 0, 0, METHOD)


def exact_intervals(y, p, threshold: float = 0.5, level: float = 0.95) -> dict[str, Interval]:
    """Clopper-Pearson intervals of the proportion metrics of one prediction.

    Args:
        y: (N,) labels; p: (N,) / (N, 2) binary probabilities (positive when the class-1
            probability is ``>= threshold``) or (N, K > 2) multiclass (arg-max).

    Returns:
        sensitivity, specificity, PPV, NPV (binary) or top-1 accuracy ``acc`` (multiclass).
    """
    y = np.asarray(y)
    q = np.asarray(p, dtype=np.float64)
    if q.ndim == 2 and q.shape[1] == 2:
        q = q[:, 1]
    if q.ndim == 2:
        correct = int(np.sum(q.argmax(axis=1) == y))
        return {"acc": proportion_interval(correct, len(y), level)}
    c = {k: int(round(float(v[0]))) for k, v in weighted.confusion(q, y.astype(bool), np.ones((1, len(y))),
                                                                      threshold).items()}
    return {"sensitivity": proportion_interval(c["tp"], c["tp"] + c["fn"], level),
            "specificity": proportion_interval(c["tn"], c["tn"] + c["fp"], level),
            "ppv": proportion_interval(c["tp"], c["tp"] + c["fp"], level),
            "npv": proportion_interval(c["tn"], c["tn"] + c["fn"], level)}
