"""Classification metrics from predicted probabilities (scikit-learn where it has them).

AUC (one-vs-rest macro average for more than two classes), AUPRC, top-1 and balanced accuracy
and the expected calibration error; which one heads a task is its prediction kind's choice
(:mod:`amfmedit.stages.kinds`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: sum over equal-width confidence bins of |accuracy - confidence| × bin share.

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) int class labels.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return math.nan
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    nz = count > 0
    return float(np.sum(np.abs(acc_sum[nz] - conf_sum[nz])) / len(labels))


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC, AUPRC, top-1 accuracy, balanced accuracy and ECE; NaN where undefined (one class only).

    Args:
        probs: (N, C) class probabilities, C >= 2.
        labels: (N,) int labels in [0, C).
    """
    from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score, roc_auc_score

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = probs.shape[1]
    pred = probs.argmax(axis=1)
    out = {
        "acc": float(accuracy_score(labels, pred)) if len(labels) else math.nan,
        "balanced_acc": math.nan,
        "auc": math.nan,
        "auprc": math.nan,
        "ece": expected_calibration_error(probs, labels),
        "n": int(len(labels)),
    }
    present = np.unique(labels)
    if len(present) < 2:
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced accuracy warns when a class is never predicted
        out["balanced_acc"] = float(balanced_accuracy_score(labels, pred))
    if n_classes == 2:
        out["auc"] = float(roc_auc_score(labels, probs[:, 1]))
        out["auprc"] = float(average_precision_score(labels, probs[:, 1]))
    else:
        # One-vs-rest macro averages over the classes present (absent classes have no curve).
        sub = probs[:, present]
        sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
        onehot = (labels[:, None] == present[None, :]).astype(np.int64)
        out["auc"] = float(roc_auc_score(onehot, sub, average="macro"))
        out["auprc"] = float(average_precision_score(onehot, sub, average="macro"))
    return out
