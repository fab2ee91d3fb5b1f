"""One call for a run's test split: per-model uncertainty and all paired comparisons.

For each classifier trained with several seeds, two kinds of spread are reported:

- **over seeds** (as the AMF-MedIT paper's tables): mean and standard deviation (ddof 1) of
  each metric computed per seed - how much training randomness moves the result. The
  threshold-based metrics (sensitivity, specificity, PPV, NPV, balanced accuracy) score each
  seed at its own operating point, the one chosen on that seed's validation predictions and
  applied by ``predict`` with that seed's model;
- **over patients**: the metric of the seed-averaged prediction (mean probability over
  seeds, at the operating point chosen on the seed-averaged validation prediction) with a 95%
  interval - DeLong for binary AUC, Clopper-Pearson for the proportions (sensitivity,
  specificity, PPV, NPV, top-1 accuracy; :mod:`amfmedit.stats.proportions`), stratified
  bootstrap otherwise - how much the result would move on another test sample of the same size.

All models share one resample matrix, so the same bootstrap replicates feed each model's
intervals and every paired comparison (:mod:`amfmedit.stats.compare`; paired differences of
the proportions stay bootstrap ones).
"""

from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass, field

import numpy as np

from amfmedit.stats import bootstrap, compare, proportions, splits
from amfmedit.stats.delong import UndefinedVarianceWarning, delong_auc, undefined_reason


@dataclass
class ModelSummary:
    """One classifier: spread over seeds and intervals of the seed-averaged prediction."""

    name: str
    n_seeds: int
    threshold: float
    seed_mean: dict[str, float]
    seed_std: dict[str, float]
    intervals: dict[str, bootstrap.Interval]  # metric of the seed-averaged prediction
    binary: bool = True
    seed_thresholds: list[float] = field(default_factory=list)  # each seed's own operating point (binary)

    def to_dict(self) -> dict:
        return {"name": self.name, "binary": self.binary, "n_seeds": self.n_seeds, "threshold": self.threshold,
                "seed_thresholds": self.seed_thresholds, "seed_mean": self.seed_mean, "seed_std": self.seed_std,
                "intervals": {k: v.to_dict() for k, v in self.intervals.items()}}


@dataclass
class RunSummary:
    models: dict[str, ModelSummary]
    comparisons: compare.ComparisonTable | None
    warnings: list[str] = field(default_factory=list)
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"models": {k: v.to_dict() for k, v in self.models.items()},
                "comparisons": self.comparisons.to_dict() if self.comparisons else None,
                "warnings": self.warnings, "skipped": list(self.skipped)}


def _per_seed(preds) -> tuple[np.ndarray, bool, int]:
    """(S, N) / (S, N, 2) binary -> (S, N) class-1 probabilities; (S, N, K > 2) kept."""
    p = np.asarray(preds, dtype=np.float64)
    if p.ndim == 3 and p.shape[2] == 2:
        p = p[:, :, 1]
    if p.ndim not in (2, 3):
        raise ValueError(f"per-model predictions must be (seeds, N) or (seeds, N, K), got shape {p.shape}")
    return p, p.ndim == 2, (2 if p.ndim == 2 else p.shape[2])


def summarise_run(y, preds: dict[str, np.ndarray], thresholds: dict[str, float] | None = None, split: str = "test",
                  n_boot: int = bootstrap.DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95,
                  class_names=None, seed_thresholds: dict[str, list[float]] | None = None) -> RunSummary:
    """Intervals for every model and every pair, on labels ``y`` (N,).

    Args:
        preds: display name -> (S, N) probability of class 1, (S, N, 2), or (S, N, K) multiclass
            probabilities; seeds first (S = 1 for a single run).
        thresholds: display name -> operating point of the seed-averaged prediction, chosen on
            validation (binary; default 0.5).
        seed_thresholds: display name -> S operating points, seed ``i``'s chosen on seed ``i``'s
            validation prediction (binary); the spread over seeds scores each seed at its own.
            A model left out falls back to ``thresholds`` for every seed.
    """
    y = np.asarray(y)
    thresholds = thresholds or {}
    seed_thresholds = seed_thresholds or {}
    per_seed = {k: _per_seed(v) for k, v in preds.items()}
    n_classes = next(iter(per_seed.values()))[2] if per_seed else 2
    warnings = splits.split_warnings(y, split, n_classes, class_names)
    skipped = splits.skipped_metrics(y, n_classes)
    W = bootstrap.stratified_counts(y, n_boot, seed)
    if n_classes == 2 and not skipped:
        values, counts = np.unique(y, return_counts=True)
        reason = undefined_reason(int(counts[values == 1].sum()), int(counts[values == 0].sum()))
        if reason:
            warnings.append(f"{split} split: {reason}")

    models, points, reps, averaged = {}, {}, {}, {}
    for name, (p, binary, _) in per_seed.items():
        thr = float(thresholds.get(name, 0.5))
        own = [float(t) for t in seed_thresholds.get(name, [thr] * len(p))]
        if len(own) != len(p):
            raise ValueError(f"{name}: {len(own)} seed thresholds for {len(p)} seeds")
        seeds = [bootstrap.point_estimates(y, q, t) for q, t in zip(p, own)]
        mean = p.mean(axis=0)  # seed-averaged prediction
        averaged[name] = mean
        points[name] = bootstrap.point_estimates(y, mean, thr)
        reps[name] = bootstrap.replicates(y, mean, W, thr)
        ivs = bootstrap.intervals_from(points[name], reps[name], level)
        ivs.update(proportions.exact_intervals(y, mean, thr, level))
        if binary and not skipped:
            with _warnings.catch_warnings():  # said once, in the split's warnings above
                _warnings.simplefilter("ignore", UndefinedVarianceWarning)
                d = delong_auc(y, mean, level)
            ivs["auc"] = bootstrap.Interval(d.auc, d.low, d.high, level, 0, 0, "DeLong")
        keep = [m for m in ivs if m not in skipped]
        models[name] = ModelSummary(
            name, len(p), thr,
            {m: float(np.mean([s[m] for s in seeds])) for m in keep},
            {m: float(np.std([s[m] for s in seeds], ddof=1)) if len(seeds) > 1 else 0.0 for m in keep},
            {m: ivs[m] for m in keep}, binary, own if binary else [])

    table = None
    if len(per_seed) > 1:
        first_binary = next(iter(per_seed.values()))[1]
        wanted = compare.BINARY_COMPARED if first_binary else compare.MULTICLASS_COMPARED
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", UndefinedVarianceWarning)
            table = compare.compare_from(y, averaged, points, reps, [m for m in wanted if m not in skipped], level)
        table.warnings = list(warnings)
    return RunSummary(models, table, warnings, skipped)


_COLUMNS_BINARY = ("auc", "auprc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece")
_COLUMNS_MULTI = ("acc", "macro_auc", "balanced_acc", "brier", "ece")
_HEAD = {"auc": "AUC", "auprc": "AUPRC", "sensitivity": "Sens.", "specificity": "Spec.", "ppv": "PPV", "npv": "NPV",
         "brier": "Brier", "ece": "ECE", "acc": "Top-1 acc.", "macro_auc": "Macro AUC", "balanced_acc": "Bal. acc."}


def render_models_markdown(run: RunSummary, threshold_names: dict[str, str] | None = None) -> str:
    """Markdown table, one row per model: each metric of the seed-averaged prediction with its
    95% interval, and the headline metric's mean +- SD over seeds."""
    if not run.models:
        return ""
    first = next(iter(run.models.values()))
    binary = first.binary
    cols = [c for c in (_COLUMNS_BINARY if binary else _COLUMNS_MULTI) if c in first.intervals]
    head = "auc" if binary else "acc"
    header = ["Model", f"{_HEAD[head]} over seeds"] + (["Threshold"] if binary else []) + [_HEAD[c] for c in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    for name, m in run.models.items():
        cells = [name]
        cells.append(f"{m.seed_mean[head]:.3f} \u00b1 {m.seed_std[head]:.3f} (n={m.n_seeds})" if head in m.seed_mean
                     else "n/a")
        if binary:
            label = (threshold_names or {}).get(name)
            cells.append(f"{m.threshold:.3f}" + (f" ({label})" if label else ""))
        cells += [m.intervals[c].text(3) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
