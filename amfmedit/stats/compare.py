"""Every pair of classifiers on the same test rows: paired tests, Holm adjustment, plain verdicts.

- AUC (binary): paired DeLong test (:func:`amfmedit.stats.delong.delong_paired`).
- Every other metric, and all multiclass metrics: paired stratified bootstrap, the same
  resamples for both models (:mod:`amfmedit.stats.bootstrap`). Confusion-based metrics use
  each model's own operating point.
- p-values are Holm-adjusted (Holm 1979, Scand J Statist 6:65-70) across the pairs, separately
  for each metric: each metric answers its own question, and within one the family-wise error
  over all pairs stays below ``alpha``.

"Too small to tell apart" — a pair is flagged when either

1. the rarer class has fewer than 10 rows (:data:`amfmedit.stats.splits.MIN_EVENTS`; see
   there), or
2. the 95% interval of the headline difference (AUC, or top-1 accuracy for multiclass) is
   wider than :data:`MAX_DIFF_WIDTH` = 0.20. "No difference" there describes the test set,
   not the models.

The note says how large a true difference the split could detect, from the measured widths:
the minimal detectable difference at 80% power (:func:`detectable_difference`),
``(z_{0.975} + z_{0.80}) * SE`` with ``SE = width / (2 z_{0.975})``, i.e. 0.715 times the width
of the 95% interval. A true difference of that size gives a two-sided p below 0.05 (before the
Holm adjustment, which only raises it) in 80% of test sets of this size. At the 0.20 cut-off
that is 0.14, three times the largest gap between fusion methods the AMF-MedIT paper reports
(4.88 AUC points, Sec. 4.3). The SE is exact for the DeLong interval (a Wald interval; up to
clipping at +-1) and the normal approximation for a bootstrap percentile interval.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from amfmedit.stats import bootstrap, splits
from amfmedit.stats.delong import delong_paired

MAX_DIFF_WIDTH = 0.20
POWER = 0.80  # of the minimal detectable difference the small-split note reports
LOWER_IS_BETTER = frozenset({"brier", "ece"})
BINARY_COMPARED = ("auc", "auprc", "balanced_acc", "sensitivity", "specificity", "brier", "ece")
MULTICLASS_COMPARED = ("acc", "macro_auc", "balanced_acc", "brier", "ece")
LABELS = {"auc": "AUC", "auprc": "AUPRC", "balanced_acc": "balanced accuracy", "sensitivity": "sensitivity",
          "specificity": "specificity", "ppv": "PPV", "npv": "NPV", "brier": "Brier", "ece": "ECE",
          "acc": "top-1 accuracy", "macro_auc": "macro AUC"}


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (m,), in the input order; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def detectable_difference(width: float, level: float = 0.95, power: float = POWER) -> float:
    """The minimal detectable difference at ``power`` from the width of a two-sided ``level`` interval.

    ``SE = width / (2 z_{(1+level)/2})`` (a normal interval ``diff +- z SE``); the difference a
    two-sided test at ``alpha = 1 - level`` declares with probability ``power`` is
    ``(z_{(1+level)/2} + z_{power}) * SE`` (the chance of a declaration in the wrong direction
    neglected). E.g. width 0.27 at 95% and 80% power: 0.193.
    """
    if not 0.0 < level < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"level and power must be in (0, 1), got {level=} {power=}")
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    return float((z + stats.norm.ppf(power)) * width / (2.0 * z))


@dataclass(frozen=True)
class Comparison:
    """``metric(a) - metric(b)`` on the same rows."""

    a: str
    b: str
    metric: str
    method: str  # "DeLong" or "paired bootstrap"
    estimate_a: float
    estimate_b: float
    diff: float
    low: float
    high: float
    p: float
    p_holm: float
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ComparisonTable:
    """All pairwise comparisons of one run's classifiers on one split."""

    rows: list[Comparison]
    headline: str  # "auc" or "acc"
    n: int
    class_counts: dict[int, int]
    too_small: bool
    note: str  # the plain-words flag, "" when the split can tell models apart
    level: float = 0.95
    n_boot: int = bootstrap.DEFAULT_N_BOOT
    alpha: float = 0.05
    warnings: list[str] = field(default_factory=list)
    # metrics of other prediction kinds (compare_replicates): their names, which are lower-is-better,
    # and what the counted strata are called (survival: censored / event)
    labels: dict[str, str] = field(default_factory=dict)
    lower_is_better: tuple[str, ...] = ()
    count_names: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = [r.to_dict() for r in self.rows]
        return d

    def label(self, metric: str) -> str:
        return self.labels.get(metric) or LABELS.get(metric, metric)

    def lower(self, metric: str) -> bool:
        return metric in LOWER_IS_BETTER or metric in self.lower_is_better


def _verdict(metric: str, diff: float, p_holm: float, a: str, b: str, alpha: float, too_small: bool,
             lower: frozenset | tuple = LOWER_IS_BETTER) -> str:
    if np.isfinite(p_holm) and p_holm < alpha:
        a_better = (diff < 0) if metric in lower else (diff > 0)
        return f"{a if a_better else b} better"
    return "cannot tell apart (test set too small)" if too_small else "no detectable difference"


def compare_from(y, preds: dict[str, np.ndarray], points: dict[str, dict], reps: dict[str, dict],
                 metrics=None, level: float = 0.95, alpha: float = 0.05,
                 max_width: float = MAX_DIFF_WIDTH) -> ComparisonTable:
    """Comparisons from per-model point estimates and replicates computed on one shared ``W``.

    Args:
        y: (N,) labels; preds: name -> (N,) / (N, 2) / (N, K) probabilities, in display order.
        points: name -> metric -> value; reps: name -> metric -> (B,) replicates.
    """
    y = np.asarray(y)
    names = list(preds)
    first = np.asarray(preds[names[0]])
    binary = first.ndim == 1 or first.shape[1] == 2
    metrics = tuple(metrics or (BINARY_COMPARED if binary else MULTICLASS_COMPARED))
    headline = "auc" if binary else "acc"
    values, counts = np.unique(y, return_counts=True)
    few_events = len(values) < 2 or int(counts.min()) < splits.MIN_EVENTS
    n_boot = len(next(iter(reps[names[0]].values()))) if names else 0

    raw: dict[str, list] = {m: [] for m in metrics}
    pairs = list(itertools.combinations(names, 2))
    for a, b in pairs:
        boot = bootstrap.paired_from(points[a], points[b], reps[a], reps[b], level)
        for m in metrics:
            if m == "auc" and binary and len(values) == 2:
                sa = np.asarray(preds[a], dtype=np.float64)
                sb = np.asarray(preds[b], dtype=np.float64)
                t = delong_paired(y, sa if sa.ndim == 1 else sa[:, 1], sb if sb.ndim == 1 else sb[:, 1], level)
                raw[m].append((a, b, "DeLong", t.auc_a, t.auc_b, t.diff, t.low, t.high, t.p))
            else:
                r = boot[m]
                raw[m].append((a, b, "paired bootstrap", r.estimate_a, r.estimate_b, r.diff, r.low, r.high, r.p))

    widths = {(r[0], r[1]): r[7] - r[6] for r in raw.get(headline, [])}
    rows = []
    for m in metrics:
        adjusted = holm([r[8] for r in raw[m]]) if raw[m] else []
        for r, ph in zip(raw[m], adjusted):
            small = few_events or not widths.get((r[0], r[1]), 0.0) <= max_width
            rows.append(Comparison(r[0], r[1], m, *r[2:], float(ph), _verdict(m, r[5], ph, r[0], r[1], alpha, small)))

    note = ""
    wide = [w for w in widths.values() if not w <= max_width]
    cls = ", ".join(f"{int(c)} rows of class {v}" for v, c in zip(values, counts))
    if pairs and len(values) < 2:
        note = (f"The test split has one class only ({cls}): models cannot be compared on it beyond Brier and ECE.")
    elif pairs and few_events:
        note = (f"The test split ({cls}) has fewer than {splits.MIN_EVENTS} rows of its rarer class: it is too small "
                "to tell these models apart; read every difference below as undetermined.")
    elif wide:
        lo, hi = (detectable_difference(w, level) for w in (min(wide), max(wide)))
        span = f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"
        pct = f"{100 * level:g}%"
        note = (f"The test split ({cls}) is too small to tell {len(wide)} of {len(pairs)} pairs apart: their {pct} "
                f"intervals of the {LABELS[headline]} difference are {min(wide):.2f}-{max(wide):.2f} wide (more than "
                f"{max_width:.2f}), so a true difference would need to be about {span} or larger to be detected "
                f"with {100 * POWER:g}% power.")
    return ComparisonTable(rows, headline, int(len(y)), {int(v): int(c) for v, c in zip(values, counts)},
                           bool(note), note, level, n_boot, alpha)


def compare_replicates(names: list[str], points: dict[str, dict], reps: dict[str, dict], metrics, *, headline: str,
                       n: int, counts: dict[int, int], few_events: bool, labels: dict[str, str] | None = None,
                       lower_is_better: tuple[str, ...] = (), count_names: dict[int, str] | None = None,
                       level: float = 0.95, alpha: float = 0.05, max_width: float = MAX_DIFF_WIDTH) -> ComparisonTable:
    """Every pair of ``names`` on every metric by the paired bootstrap (replicates on one shared ``W``),
    Holm-adjusted per metric, with the same too-small rule as :func:`compare_from`.

    For prediction kinds whose metrics are not the classification ones (C-index, RMSE, ...):
    ``headline`` sizes the too-small note, ``few_events`` says the split has too few events to tell
    models apart whatever the widths, ``counts`` are its strata (e.g. censored / event).
    """
    labels = dict(labels or {})
    n_boot = len(next(iter(reps[names[0]].values()))) if names else 0
    raw: dict[str, list] = {m: [] for m in metrics}
    pairs = list(itertools.combinations(names, 2))
    for a, b in pairs:
        boot = bootstrap.paired_from(points[a], points[b], reps[a], reps[b], level)
        for m in metrics:
            r = boot[m]
            raw[m].append((a, b, "paired bootstrap", r.estimate_a, r.estimate_b, r.diff, r.low, r.high, r.p))
    widths = {(r[0], r[1]): r[7] - r[6] for r in raw.get(headline, [])}
    lower = frozenset(lower_is_better)
    rows = []
    for m in metrics:
        adjusted = holm([r[8] for r in raw[m]]) if raw[m] else []
        for r, ph in zip(raw[m], adjusted):
            small = few_events or not widths.get((r[0], r[1]), 0.0) <= max_width
            rows.append(Comparison(r[0], r[1], m, *r[2:], float(ph),
                                   _verdict(m, r[5], ph, r[0], r[1], alpha, small, lower)))
    note = ""
    wide = [w for w in widths.values() if not w <= max_width]
    names_of = count_names or {}
    cls = ", ".join(f"{c} {names_of.get(k, f'rows of stratum {k}')}" for k, c in counts.items())
    if pairs and few_events:
        note = (f"The test split ({cls}) is too small to tell these models apart; read every difference below as "
                "undetermined.")
    elif wide:
        lo, hi = (detectable_difference(w, level) for w in (min(wide), max(wide)))
        span = f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"
        note = (f"The test split ({cls}) is too small to tell {len(wide)} of {len(pairs)} pairs apart: their "
                f"{100 * level:g}% intervals of the {labels.get(headline, headline)} difference are "
                f"{min(wide):.2f}-{max(wide):.2f} wide (more than {max_width:.2f}), so a true difference would need "
                f"to be about {span} or larger to be detected with {100 * POWER:g}% power.")
    return ComparisonTable(rows, headline, int(n), {int(k): int(v) for k, v in counts.items()}, bool(note), note,
                           level, n_boot, alpha, labels=labels, lower_is_better=tuple(lower_is_better),
                           count_names=dict(names_of))


def compare_models(y, preds: dict[str, np.ndarray], thresholds: dict[str, float] | None = None, metrics=None,
                   n_boot: int = bootstrap.DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95,
                   alpha: float = 0.05) -> ComparisonTable:
    """All pairs of ``preds`` (name -> (N,) / (N, 2) / (N, K)) on labels ``y`` (N,).

    ``thresholds``: name -> operating point for the confusion-based metrics (default 0.5).
    """
    thresholds = thresholds or {}
    W = bootstrap.stratified_counts(y, n_boot, seed)
    points = {k: bootstrap.point_estimates(y, p, thresholds.get(k, 0.5)) for k, p in preds.items()}
    reps = {k: bootstrap.replicates(y, p, W, thresholds.get(k, 0.5)) for k, p in preds.items()}
    return compare_from(y, preds, points, reps, metrics, level, alpha)


# ---------------------------------------------------------------- rendering


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _fmt_diff(c: Comparison) -> str:
    return f"{c.diff:+.3f} ({c.low:+.3f} to {c.high:+.3f})"


def render_markdown(table: ComparisonTable, title: str = "Paired comparisons") -> str:
    """``comparisons.md``: the headline table, then every other metric; the flag in words on top."""
    pct = f"{100 * table.level:g}%"
    counts = ", ".join(f"{table.count_names.get(k, f'class {k}')}: {v}" for k, v in table.class_counts.items())
    lines = [f"# {title}", "", f"Test rows: {table.n} ({counts}). Differences are model A minus model B "
             f"(A - B) with {pct} intervals; p-values Holm-adjusted across the pairs for each metric "
             f"(alpha {table.alpha:g}).", ""]
    if table.note:
        lines += [f"**{table.note}**", ""]
    for w in table.warnings:
        lines += [f"- Warning: {w}"]
    if table.warnings:
        lines.append("")
    by_metric: dict[str, list[Comparison]] = {}
    for r in table.rows:
        by_metric.setdefault(r.metric, []).append(r)
    for metric, rows in by_metric.items():
        method = rows[0].method
        how = "paired DeLong test" if method == "DeLong" else f"paired stratified bootstrap, {table.n_boot} resamples"
        better = "lower is better" if table.lower(metric) else "higher is better"
        label = table.label(metric)
        lines += [f"## {label} ({how}; {better})", "",
                  f"| A | B | {label} A | {label} B | A - B ({pct} CI) | p | p (Holm) | verdict |",
                  "|---|---|--:|--:|---|--:|--:|---|"]
        for r in rows:
            lines.append(f"| {r.a} | {r.b} | {r.estimate_a:.3f} | {r.estimate_b:.3f} | {_fmt_diff(r)} | "
                         f"{_fmt_p(r.p)} | {_fmt_p(r.p_holm)} | {r.verdict} |")
        lines.append("")
    return "\n".join(lines)


CSV_COLUMNS = ("a", "b", "metric", "method", "estimate_a", "estimate_b", "diff", "low", "high", "p", "p_holm", "verdict")


def render_csv(table: ComparisonTable) -> str:
    """``comparisons.csv``: one row per (pair, metric), full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in table.rows:
        d = r.to_dict()
        w.writerow([d[k] if isinstance(d[k], str) else repr(float(d[k])) for k in CSV_COLUMNS])
    return buf.getvalue()
