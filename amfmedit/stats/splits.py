"""Warnings for splits too degenerate for the metrics: one class present, or very few events.

Rules (also used by :mod:`amfmedit.stats.compare`):

- **One class present**: AUC, AUPRC, balanced accuracy, sensitivity, specificity, PPV and NPV
  are undefined (they compare the classes); they are skipped, with a warning naming the split.
  Brier and ECE are still defined and reported.
- **Fewer than** :data:`MIN_EVENTS` (10) **rows of the rarer class**: intervals will be wide.
  With under 10 events the AUC takes few distinct values under resampling and DeLong's normal
  approximation is poor; 10 events per parameter is also the usual floor for fitting
  (Peduzzi et al. 1996, J Clin Epidemiol 49:1373), and validation guidance asks for far more
  (>= 100 events, Vergouwe et al. 2005, J Clin Epidemiol 58:475; Collins et al. 2016,
  Stat Med 35:214). Below 10, no comparison between models on that split means much.
"""

from __future__ import annotations

import numpy as np

MIN_EVENTS = 10
NEED_BOTH_CLASSES = ("auc", "auprc", "balanced_acc", "sensitivity", "specificity", "ppv", "npv")
NEED_TWO_CLASSES_MULTI = ("macro_auc", "balanced_acc")

_LABELS = {"auc": "AUC", "auprc": "AUPRC", "balanced_acc": "balanced accuracy", "sensitivity": "sensitivity",
           "specificity": "specificity", "ppv": "PPV", "npv": "NPV", "macro_auc": "macro AUC"}


def skipped_metrics(y, n_classes: int = 2) -> tuple[str, ...]:
    """Metric names undefined on labels ``y`` (N,): those needing two classes when only one is present."""
    if len(np.unique(np.asarray(y))) >= 2:
        return ()
    return NEED_BOTH_CLASSES if n_classes == 2 else NEED_TWO_CLASSES_MULTI


def split_warnings(y, split: str, n_classes: int = 2, class_names=None, min_events: int = MIN_EVENTS) -> list[str]:
    """One-line warnings for the labels ``y`` (N,) of ``split`` ("test", "validation", ...).

    Args:
        n_classes: classes of the task (2 for binary).
        class_names: optional display names, indexed by label.
    """
    y = np.asarray(y)
    name = (lambda c: str(class_names[int(c)])) if class_names is not None else (lambda c: str(c))
    if len(y) == 0:
        return [f"{split} split: no rows; every metric skipped"]
    values, counts = np.unique(y, return_counts=True)
    out = []
    if len(values) < 2:
        skipped = ", ".join(_LABELS[m] for m in skipped_metrics(y, n_classes))
        out.append(f"{split} split: only class {name(values[0])} present ({len(y)} rows); {skipped} skipped "
                   "(they need both classes); Brier and ECE still reported")
        return out
    if n_classes > 2 and len(values) < n_classes:
        missing = sorted(set(range(n_classes)) - {int(v) for v in values})
        out.append(f"{split} split: class(es) {', '.join(name(c) for c in missing)} absent; macro AUC and balanced "
                   f"accuracy average over the {len(values)} classes present")
    rare = int(np.argmin(counts))
    if counts[rare] < min_events:
        if n_classes == 2 and class_names is None:
            what = "positive" if values[rare] == 1 else "negative"
        else:
            what = f"class {name(values[rare])}"
        out.append(f"{split} split: only {counts[rare]} {what} rows (fewer than {min_events}); intervals will be "
                   "wide and differences between models are unlikely to be resolved")
    return out
