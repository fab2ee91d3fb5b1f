"""Figures for a paper: ROC and PR curves overlaying models, reliability diagram, decision curve.

Every function takes plain arrays keyed by display name (e.g. "AMF + FT-Mamba, trainable"),
knows nothing of runs or folders, and writes one PNG atomically (``amfmedit.io.atomic_path``,
as ``amfmedit.explain.plots``); matplotlib runs on the Agg backend. Binary tasks only; ``p`` is
the probability of class 1, a row is positive when ``p >= threshold``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amfmedit.figures import pyplot, save
from amfmedit.stats import bootstrap, calibration, decision, weighted
from amfmedit.stats.delong import delong_auc

COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974",
           "#64B5CD"]
LINESTYLES = ["-", "--", "-.", ":"]  # a second cue for grey-scale print


def _plt():
    return pyplot()


def _save(fig, path) -> Path:
    return save(fig, path, tight=True)


def _style(i: int) -> dict:
    return {"color": COLOURS[i % len(COLOURS)], "linestyle": LINESTYLES[(i // len(COLOURS)) % len(LINESTYLES)]}


def _counts_line(y) -> str:
    y = np.asarray(y).astype(bool)
    return f"n = {len(y)}: {int(y.sum())} positive, {int((~y).sum())} negative"


def _ci(est: float, lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.3f} (no interval)"
    return f"{est:.3f} ({lo:.2f}\u2013{hi:.2f})"


def _legend(ax, n_entries: int, loc: str):
    # Beyond four models the legend goes under the axes so it never hides a curve.
    if n_entries > 4:
        return ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    return ax.legend(fontsize=8, loc=loc, frameon=True, framealpha=0.9)


def roc_figure(y, scores: dict[str, np.ndarray], path, *, title: str = "ROC curves",
               auc_ci: dict[str, tuple[float, float, float]] | None = None,
               operating_points: dict[str, float] | None = None, level: float = 0.95) -> Path:
    """ROC curves of several models on the same rows.

    Args:
        y: (N,) 0/1; scores: name -> (N,) probability of class 1.
        auc_ci: name -> (auc, low, high); DeLong intervals at ``level`` when omitted.
        operating_points: name -> threshold, marked on that model's curve.
    """
    from sklearn.metrics import roc_curve

    plt = _plt()
    y = np.asarray(y).astype(int)
    fig, ax = plt.subplots(figsize=(5.6, 5.6), dpi=150)
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="chance")
    for i, (name, s) in enumerate(scores.items()):
        s = np.asarray(s, dtype=np.float64)
        est = auc_ci[name] if auc_ci and name in auc_ci else None
        if est is None:
            d = delong_auc(y, s, level)
            est = (d.auc, d.low, d.high)
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.6, label=f"{name}  AUC {_ci(*est)}", **_style(i))
        if operating_points and name in operating_points:
            thr = operating_points[name]
            pred = s >= thr
            ax.plot(np.mean(pred[y == 0]), np.mean(pred[y == 1]), "o", ms=7, mec="black", mew=0.8,
                    color=_style(i)["color"], zorder=5)
    if operating_points:
        ax.plot([], [], "o", ms=7, mec="black", mfc="white", mew=0.8, label="operating point (chosen on validation)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 \u2212 specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title(f"{title}\n{_counts_line(y)}; AUC with {100 * level:g}% DeLong interval", fontsize=9.5)
    ax.grid(alpha=0.25)
    _legend(ax, len(scores) + 1 + bool(operating_points), "lower right")
    return _save(fig, path)


def pr_figure(y, scores: dict[str, np.ndarray], path, *, title: str = "Precision-recall curves",
              ap_ci: dict[str, tuple[float, float, float]] | None = None,
              operating_points: dict[str, float] | None = None, level: float = 0.95,
              n_boot: int = bootstrap.DEFAULT_N_BOOT, seed: int = 0) -> Path:
    """Precision-recall curves with the prevalence (a random model's precision) as reference.

    ``ap_ci``: name -> (average precision, low, high); stratified bootstrap when omitted.
    """
    from sklearn.metrics import precision_recall_curve

    plt = _plt()
    y = np.asarray(y).astype(int)
    prev = float(y.mean())
    fig, ax = plt.subplots(figsize=(5.6, 5.6), dpi=150)
    ax.axhline(prev, color="0.6", lw=0.8, ls=":", label=f"prevalence {prev:.3f} (random model)")
    W = None
    for i, (name, s) in enumerate(scores.items()):
        s = np.asarray(s, dtype=np.float64)
        est = ap_ci[name] if ap_ci and name in ap_ci else None
        if est is None:
            W = bootstrap.stratified_counts(y, n_boot, seed) if W is None else W
            pos = y.astype(bool)
            lo, hi = np.percentile(weighted.average_precision(s, pos, W), [50 * (1 - level), 50 * (1 + level)])
            est = (float(weighted.average_precision(s, pos, np.ones((1, len(y))))[0]), lo, hi)
        precision, recall, _ = precision_recall_curve(y, s)
        ax.step(recall, precision, where="post", lw=1.6, label=f"{name}  AUPRC {_ci(*est)}", **_style(i))
        if operating_points and name in operating_points:
            pred = s >= operating_points[name]
            if pred.any():
                ax.plot(np.mean(pred[y == 1]), np.mean(y[pred] == 1), "o", ms=7, mec="black", mew=0.8,
                        color=_style(i)["color"], zorder=5)
    if operating_points:
        ax.plot([], [], "o", ms=7, mec="black", mfc="white", mew=0.8, label="operating point (chosen on validation)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.set_title(f"{title}\n{_counts_line(y)}; AUPRC with {100 * level:g}% bootstrap interval", fontsize=9.5)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)  # PR curves fill any corner
    return _save(fig, path)


def reliability_figure(y, probs: dict[str, np.ndarray], path, *, title: str = "Reliability diagram",
                       n_bins: int = calibration.N_BINS) -> Path:
    """Observed event rate against predicted probability per bin (top), rows per bin (bottom).

    Args:
        y: (N,) 0/1; probs: name -> (N,) probability of class 1 (e.g. before / after
            temperature scaling, or several models).
    """
    plt = _plt()
    y = np.asarray(y).astype(int)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5.6, 6.6), dpi=150, sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08})
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="perfect calibration")
    width = 1.0 / n_bins / max(1, len(probs))
    max_count = 1
    for i, (name, p) in enumerate(probs.items()):
        p = np.asarray(p, dtype=np.float64)
        r = calibration.reliability(y, p, n_bins)
        ok = r.counts > 0
        max_count = max(max_count, int(r.counts.max()))
        st = _style(i)
        ax.plot(r.mean_predicted[ok], r.observed[ok], marker="o", ms=4, lw=1.3,
                label=f"{name}  ECE {calibration.ece(y, p, n_bins):.3f}, Brier {calibration.brier(y, p):.3f}", **st)
        left = r.edges[:-1] + i * width
        axc.bar(left, r.counts, width=width, align="edge", color=st["color"], alpha=0.85, linewidth=0)
        if len(probs) == 1:
            for x, c in zip(left[ok], r.counts[ok]):
                axc.annotate(str(int(c)), (x + width / 2, c), xytext=(0, 2), textcoords="offset points",
                             ha="center", fontsize=6.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("observed share of positives")
    ax.set_title(f"{title}\n{_counts_line(y)}; {n_bins} equal-width bins", fontsize=9.5)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="upper left", frameon=True, framealpha=0.9)
    axc.set_yscale("symlog", linthresh=10)
    axc.set_ylim(0, max(20.0, 4.0 * float(max_count)))  # headroom for the count labels
    axc.set_ylabel("rows per bin (log)")
    axc.set_xlabel("predicted probability of the positive class")
    axc.grid(alpha=0.25, axis="y")
    return _save(fig, path)


def decision_figure(y, risks: dict[str, np.ndarray], path, *, title: str = "Decision curve",
                    thresholds=None) -> Path:
    """Net benefit against threshold probability, with treat-all and treat-none (Vickers & Elkin 2006).

    Without ``thresholds`` the x-axis runs from 0.01 to ``max(0.2, 5 x prevalence)`` (at most
    0.99): for a rare outcome, cuts far above the prevalence are not ones a clinician would
    pick, and the curves there are noise around 0. Net benefit below ``-0.3 x`` the top of the
    plot is not shown (treat-all falls steeply).
    """
    plt = _plt()
    y = np.asarray(y).astype(int)
    if thresholds is None:
        x_max = min(0.99, max(0.2, float(np.ceil(5 * np.mean(y) * 20) / 20)))
        t = decision.DEFAULT_THRESHOLDS[decision.DEFAULT_THRESHOLDS <= x_max + 1e-9]
    else:
        t = np.asarray(thresholds, dtype=np.float64)
    dc = decision.decision_curve(y, risks, t)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=150)
    ax.plot(t, dc.treat_all, color="0.45", lw=1.2, label="treat all")
    ax.plot(t, dc.treat_none, color="black", lw=1.2, label="treat none")
    for i, (name, nb) in enumerate(dc.models.items()):
        ax.plot(t, nb, lw=1.6, label=name, **_style(i))
    top = max(dc.prevalence, max((float(np.max(v)) for v in dc.models.values()), default=0.0)) * 1.1 + 0.005
    ax.set_ylim(-max(0.01, 0.3 * top), top)
    ax.set_xlim(float(t.min()), float(t.max()))
    ax.set_xlabel("threshold probability (treat when predicted risk \u2265 it)")
    ax.set_ylabel("net benefit")
    ax.set_title(f"{title}\n{_counts_line(y)}; prevalence {dc.prevalence:.3f}", fontsize=9.5)
    ax.grid(alpha=0.25)
    _legend(ax, len(risks) + 2, "upper right")
    return _save(fig, path)
