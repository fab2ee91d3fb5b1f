"""Classification metrics for many resamples at once, each resample given as row weights.

A bootstrap resample of ``N`` rows is the same as the original rows weighted by how often each
was drawn; ``W`` (B, N) holds those counts for ``B`` resamples (all ones for the point
estimate). Every metric here is then a few matrix products and cumulative sums over ``W``,
so 2,000 resamples cost about what 2,000 NumPy vector operations do, not 2,000 scikit-learn
calls. Each function equals its scikit-learn counterpart on the resampled rows (tests check
this against a slow loop): ``roc_auc_score``, ``average_precision_score``,
``balanced_accuracy_score``, ``brier_score_loss`` and the project's top-label ECE
(``amfmedit.train.metrics.expected_calibration_error``, 15 equal-width bins).

Conventions: binary ``p`` (N,) is the probability (or score) of class 1; a row is called
positive when ``p >= threshold``. Multiclass ``probs`` (N, K) rows sum to 1; the prediction
is the arg-max.
"""

from __future__ import annotations

import numpy as np

N_BINS = 15  # equal-width confidence bins, as amfmedit.train.metrics


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def auc(score: np.ndarray, pos: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count 1/2) per resample.

    Args:
        score: (N,) scores; pos: (N,) bool, True for class 1; W: (B, N) row weights.

    Returns:
        (B,) AUC; NaN where a resample has no weight on one class.
    """
    neg = ~pos
    order = np.argsort(score[neg], kind="stable")
    s_neg = score[neg][order]
    w_neg = W[:, neg][:, order]
    # cum[:, k] = weight of the k lowest-scored negatives.
    cum = np.concatenate([np.zeros((W.shape[0], 1)), np.cumsum(w_neg, axis=1)], axis=1)
    lo = np.searchsorted(s_neg, score[pos], side="left")
    hi = np.searchsorted(s_neg, score[pos], side="right")
    below = cum[:, lo] + 0.5 * (cum[:, hi] - cum[:, lo])  # (B, m) negatives under each positive
    w_pos = W[:, pos]
    return _safe_div(np.sum(w_pos * below, axis=1), w_pos.sum(axis=1) * cum[:, -1])


def average_precision(score: np.ndarray, pos: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds, per resample (B,)."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    y = pos[order].astype(np.float64)
    Ws = W[:, order]
    tp = np.cumsum(Ws * y, axis=1)
    fp = np.cumsum(Ws, axis=1) - tp
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last row of each tie group
    tp, fp = tp[:, ends], fp[:, ends]
    precision = np.nan_to_num(_safe_div(tp, tp + fp))  # undefined only where recall has not moved
    recall = _safe_div(tp, tp[:, -1:])
    d_recall = np.diff(np.concatenate([np.zeros((W.shape[0], 1)), recall], axis=1), axis=1)
    return np.sum(d_recall * precision, axis=1)


def confusion(p: np.ndarray, pos: np.ndarray, W: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Weighted TP, FP, TN, FN (each (B,)) for "positive when p >= threshold"."""
    pred = p >= threshold
    return {
        "tp": W @ (pos & pred).astype(np.float64),
        "fp": W @ (~pos & pred).astype(np.float64),
        "tn": W @ (~pos & ~pred).astype(np.float64),
        "fn": W @ (pos & ~pred).astype(np.float64),
    }


def rates(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV and balanced accuracy from :func:`confusion` counts."""
    sens = _safe_div(c["tp"], c["tp"] + c["fn"])
    spec = _safe_div(c["tn"], c["tn"] + c["fp"])
    return {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": _safe_div(c["tp"], c["tp"] + c["fp"]),
        "npv": _safe_div(c["tn"], c["tn"] + c["fn"]),
        "balanced_acc": 0.5 * (sens + spec),
    }


def ece(conf: np.ndarray, correct: np.ndarray, W: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Top-label ECE ``sum_b |sum_{i in b} w_i (correct_i - conf_i)| / sum_i w_i`` per resample.

    Args:
        conf: (N,) confidence of the predicted class; correct: (N,) bool; W: (B, N).
    """
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    gap = np.zeros((len(conf), n_bins))
    gap[np.arange(len(conf)), bins] = correct.astype(np.float64) - conf
    return _safe_div(np.abs(W @ gap).sum(axis=1), W.sum(axis=1))


def binary_top_label(p: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and correctness of the arg-max of ``[1 - p, p]`` (class 0 wins a 0.5 tie)."""
    pred = p > 0.5
    return np.where(pred, p, 1.0 - p), pred == pos


def binary_metrics(y: np.ndarray, p: np.ndarray, W: np.ndarray, threshold: float = 0.5,
                   n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """AUC, AUPRC, balanced accuracy, sensitivity, specificity, PPV, NPV, Brier, ECE per resample.

    Args:
        y: (N,) 0/1; p: (N,) probability of class 1; W: (B, N) weights; threshold: the cut for
            the confusion-based metrics (ECE uses the arg-max, as the project's ECE does).

    Returns:
        metric name -> (B,) array.
    """
    pos = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    conf, correct = binary_top_label(p, pos)
    out = {"auc": auc(p, pos, W), "auprc": average_precision(p, pos, W)}
    out.update(rates(confusion(p, pos, W, threshold)))
    out["brier"] = _safe_div(W @ (p - pos) ** 2, W.sum(axis=1))
    out["ece"] = ece(conf, correct, W, n_bins)
    return out


def multiclass_metrics(y: np.ndarray, probs: np.ndarray, W: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Top-1 accuracy, balanced accuracy, macro one-vs-rest AUC, Brier and ECE per resample.

    Macro AUC and balanced accuracy average over the classes present in ``y``; for the AUC the
    probabilities are renormalised over those classes, as ``amfmedit.train.metrics`` does.
    Brier is ``mean_i sum_k (p_ik - [y_i = k])^2`` (scikit-learn's multiclass Brier).

    Args:
        y: (N,) int labels; probs: (N, K); W: (B, N).
    """
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    correct = pred == y
    total = W.sum(axis=1)
    present = np.unique(y)
    recalls = [_safe_div(W[:, y == c] @ correct[y == c].astype(np.float64), W[:, y == c].sum(axis=1))
               for c in present]
    sub = probs[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    aucs = [auc(sub[:, j], y == c, W) for j, c in enumerate(present)]
    onehot = np.eye(probs.shape[1])[y]
    return {
        "acc": _safe_div(W @ correct.astype(np.float64), total),
        "balanced_acc": np.mean(recalls, axis=0),
        "macro_auc": np.mean(aucs, axis=0) if len(present) > 1 else np.full(W.shape[0], np.nan),
        "brier": _safe_div(W @ ((probs - onehot) ** 2).sum(axis=1), total),
        "ece": ece(probs.max(axis=1), correct, W, n_bins),
    }
