"""Stratified bootstrap intervals and paired bootstrap differences, vectorised over resamples.

Each resample draws, with replacement, as many rows of every class as that class has
(Efron & Tibshirani 1993, ch. 8, the stratified bootstrap), so class counts - and with them
prevalence - are the same in every resample and AUC is defined in all of them. Resamples are
represented as a count matrix ``W`` (B, N) (how often row ``i`` was drawn in resample ``b``)
and every metric is evaluated on all resamples at once (:mod:`amfmedit.stats.weighted`).

Intervals are percentile intervals: the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles
of the ``B`` replicates. Resamples where a metric is undefined (e.g. PPV with no predicted
positive) are left out and counted in ``n_undefined``.

A paired comparison uses the same ``W`` for both classifiers, so the replicate differences
keep the correlation of two models scored on the same patients. Its two-sided p-value is
``min(1, 2 * min((1 + #{d_b <= 0}) / (B + 1), (1 + #{d_b >= 0}) / (B + 1)))``, the bootstrap
percentile test of "no difference".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from amfmedit.stats import weighted

DEFAULT_N_BOOT = 2000
BINARY_METRICS = ("auc", "auprc", "balanced_acc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece")
MULTICLASS_METRICS = ("acc", "balanced_acc", "macro_auc", "brier", "ece")


@dataclass(frozen=True)
class Interval:
    """Point estimate on all rows and its interval (percentile bootstrap unless ``method`` says otherwise)."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    n_undefined: int = 0
    method: str = "bootstrap"  # "DeLong" (amfmedit.stats.delong), "Clopper-Pearson" (amfmedit.stats.proportions)

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self, digits: int = 3) -> str:
        """``0.750 (0.600–0.880)``; ``0.750 (no interval)`` where the interval is undefined; ``n/a``."""
        if not np.isfinite(self.estimate):
            return "n/a"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.estimate:.{digits}f} (no interval)"
        return f"{self.estimate:.{digits}f} ({self.low:.{digits}f}\u2013{self.high:.{digits}f})"


@dataclass(frozen=True)
class PairedInterval:
    """``metric(a) - metric(b)`` on all rows, its paired bootstrap interval and p-value."""

    estimate_a: float
    estimate_b: float
    diff: float
    low: float
    high: float
    p: float
    level: float
    n_boot: int

    def to_dict(self) -> dict:
        return asdict(self)


def stratified_counts(y, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """Resampling counts (n_boot, N): each class resampled with replacement to its own size.

    Args:
        y: (N,) class labels (any hashable values).
        seed: seeds a ``numpy.random.Generator``; the same seed gives the same resamples.
    """
    y = np.asarray(y)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    W = np.zeros((n_boot, len(y)))
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = len(rows)
        draws = rng.integers(0, k, size=(n_boot, k)) + (np.arange(n_boot) * k)[:, None]
        W[:, rows] = np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k)
    return W


def _as_task(p) -> tuple[np.ndarray, bool]:
    """(N,) or (N, 2) -> binary probability of class 1; (N, K>2) -> multiclass probabilities."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:
        return p[:, 1], True
    if p.ndim == 1:
        return p, True
    if p.ndim == 2 and p.shape[1] > 2:
        return p, False
    raise ValueError(f"predictions must be (N,), (N, 2) or (N, K), got shape {p.shape}")


def replicates(y, p, W: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Every metric of :data:`BINARY_METRICS` / :data:`MULTICLASS_METRICS` per row of ``W`` (B, N).

    ``p``: (N,) or (N, 2) binary probabilities (``threshold`` applies), or (N, K) multiclass.
    """
    q, binary = _as_task(p)
    if len(q) != len(y) or W.shape[1] != len(y):
        raise ValueError(f"rows differ: labels {len(y)}, predictions {len(q)}, weights {W.shape[1]}")
    if binary:
        y = np.asarray(y)
        if not np.all(np.isin(np.unique(y), [0, 1])):
            raise ValueError(f"binary labels must be 0/1, got values {np.unique(y)[:5].tolist()}")
        return weighted.binary_metrics(y, q, W, threshold)
    return weighted.multiclass_metrics(np.asarray(y), q, W)


def point_estimates(y, p, threshold: float = 0.5) -> dict[str, float]:
    """The metrics on the rows as they are (weights all one)."""
    reps = replicates(y, p, np.ones((1, len(y))), threshold)
    return {k: float(v[0]) for k, v in reps.items()}


def _percentile(values: np.ndarray, level: float) -> tuple[float, float, int]:
    ok = np.isfinite(values)
    if not ok.any():
        return float("nan"), float("nan"), int(len(values))
    lo, hi = np.percentile(values[ok], [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    return float(lo), float(hi), int((~ok).sum())


def intervals_from(point: dict[str, float], reps: dict[str, np.ndarray], level: float = 0.95) -> dict[str, Interval]:
    """Percentile intervals from replicates computed elsewhere (e.g. shared across models)."""
    out = {}
    for name, values in reps.items():
        lo, hi, n_bad = _percentile(values, level)
        out[name] = Interval(point[name], lo, hi, level, len(values), n_bad)
    return out


def bootstrap_metrics(y, p, threshold: float = 0.5, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                      level: float = 0.95) -> dict[str, Interval]:
    """Stratified bootstrap percentile intervals for every metric of one classifier.

    Args:
        y: (N,) labels; p: (N,) / (N, 2) binary or (N, K) multiclass probabilities.
    """
    W = stratified_counts(y, n_boot, seed)
    return intervals_from(point_estimates(y, p, threshold), replicates(y, p, W, threshold), level)


def paired_from(point_a: dict[str, float], point_b: dict[str, float], reps_a: dict[str, np.ndarray],
                reps_b: dict[str, np.ndarray], level: float = 0.95) -> dict[str, PairedInterval]:
    """Paired intervals and p-values from replicates of two models on the same ``W``."""
    out = {}
    for name in reps_a:
        d = reps_a[name] - reps_b[name]
        d = d[np.isfinite(d)]
        B = len(d)
        diff = point_a[name] - point_b[name]
        if B == 0:
            out[name] = PairedInterval(point_a[name], point_b[name], diff, np.nan, np.nan, np.nan, level, 0)
            continue
        lo, hi = np.percentile(d, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
        p = min(1.0, 2.0 * min((1 + np.sum(d <= 0)) / (B + 1), (1 + np.sum(d >= 0)) / (B + 1)))
        out[name] = PairedInterval(point_a[name], point_b[name], diff, float(lo), float(hi), float(p), level, B)
    return out


def paired_bootstrap(y, p_a, p_b, threshold_a: float = 0.5, threshold_b: float = 0.5,
                     n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95) -> dict[str, PairedInterval]:
    """Paired stratified bootstrap of ``metric(a) - metric(b)`` (same resamples for both models)."""
    W = stratified_counts(y, n_boot, seed)
    return paired_from(point_estimates(y, p_a, threshold_a), point_estimates(y, p_b, threshold_b),
                       replicates(y, p_a, W, threshold_a), replicates(y, p_b, W, threshold_b), level)
