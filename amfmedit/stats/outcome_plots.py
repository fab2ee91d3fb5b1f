"""Figures of time-to-event and continuous outcomes: Kaplan-Meier curves by risk group, calibration
at each horizon, predicted against observed values.

Plain arrays in, one PNG out, drawn with :mod:`amfmedit.stats.plots`'s helpers (Agg backend,
atomic writes, the same colours and line styles).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from amfmedit.stats.plots import _plt, _save, _style


def _unit(time_unit: str) -> str:
    return f" ({time_unit})" if time_unit else ""


def km_figure(time, event, groups: np.ndarray, names: list[str], path, *, title: str, logrank=None,
              time_unit: str = "") -> Path:
    """Kaplan-Meier curves with 95% log-log bands, one per risk group (``groups``: (N,) index into ``names``);
    ``logrank``: (chi-square, p, degrees of freedom) for the title."""
    from sksurv.nonparametric import kaplan_meier_estimator

    plt = _plt()
    time, event = np.asarray(time, dtype=np.float64), np.asarray(event, dtype=bool)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=150)
    for k, name in enumerate(names):
        rows = groups == k
        if not rows.any():
            continue
        st = _style(k)
        if event[rows].any():
            x, s, (lo, hi) = kaplan_meier_estimator(event[rows], time[rows], conf_type="log-log")
        else:
            x, s = np.array([time[rows].max()]), np.array([1.0])
            lo = hi = s
        x, s, lo, hi = np.r_[0.0, x], np.r_[1.0, s], np.r_[1.0, lo], np.r_[1.0, hi]
        ax.step(x, s, where="post", lw=1.6, label=f"{name} (n = {int(rows.sum())}, {int(event[rows].sum())} events)",
                **st)
        ax.fill_between(x, lo, hi, step="post", color=st["color"], alpha=0.15, linewidth=0)
    test = ""
    if logrank is not None and np.isfinite(logrank[1]):
        p = logrank[1]
        test = f"; log-rank chi2 {logrank[0]:.1f} ({logrank[2]} df), p {'< 0.001' if p < 0.001 else f'= {p:.3f}'}"
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time" + _unit(time_unit))
    ax.set_ylabel("event-free probability (Kaplan-Meier)")
    ax.set_title(f"{title}\nn = {len(time)}, {int(event.sum())} events{test}; 95% log-log bands", fontsize=9.5)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="lower left", frameon=True, framealpha=0.9)
    return _save(fig, path)


def survival_calibration_figure(cals, path, *, title: str, time_unit: str = "") -> Path:
    """One panel per horizon: mean predicted event probability by then against 1 - Kaplan-Meier,
    per risk group, with the observed value's 95% interval (``cals``: GroupCalibration records)."""
    plt = _plt()
    n = max(1, len(cals))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.9), dpi=150, squeeze=False)
    for ax, c in zip(axes[0], cals):
        top = float(np.nanmax(np.r_[c.predicted, c.high, 0.05])) * 1.08
        ax.plot([0, top], [0, top], color="0.6", lw=0.8, ls=":", label="perfect calibration")
        ok = np.isfinite(c.observed)
        err = np.vstack([c.observed[ok] - c.low[ok], c.high[ok] - c.observed[ok]])
        err = np.where(np.isfinite(err), np.clip(err, 0, None), 0.0)
        ax.errorbar(c.predicted[ok], c.observed[ok], yerr=err, fmt="o", ms=4, lw=1, capsize=2,
                    color=_style(0)["color"], label=f"risk groups (n {int(c.counts.min())}-{int(c.counts.max())})")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel(f"predicted P(event by {c.horizon:g}{' ' + time_unit if time_unit else ''})")
        mae = c.mean_abs_error
        ax.set_title(f"t = {c.horizon:g}{_unit(time_unit)}; mean |pred - obs| "
                     f"{mae:.3f}" if math.isfinite(mae) else f"t = {c.horizon:g}", fontsize=9)
        ax.grid(alpha=0.25)
    axes[0][0].set_ylabel("observed (1 - Kaplan-Meier)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def predicted_observed_figure(y, preds: dict[str, np.ndarray], path, *, title: str, unit: str = "") -> Path:
    """Observed against predicted values of each model, the identity line and each model's
    calibration line (least squares of observed on predicted)."""
    plt = _plt()
    y = np.asarray(y, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.6, 5.6), dpi=150)
    lo = min([y.min(), *(np.min(p) for p in preds.values())])
    hi = max([y.max(), *(np.max(p) for p in preds.values())])
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, ls=":", label="identity (perfect calibration)")
    for i, (name, p) in enumerate(preds.items()):
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        st = _style(i)
        ax.scatter(p, y, s=8, alpha=0.45, color=st["color"], linewidths=0)
        if np.ptp(p) > 0:
            slope, intercept = np.polyfit(p, y, 1)
            xs = np.array([p.min(), p.max()])
            ax.plot(xs, intercept + slope * xs, lw=1.6, label=f"{name}: slope {slope:.2f}, intercept {intercept:.2f}",
                    **st)
    ax.set_xlabel("predicted" + _unit(unit))
    ax.set_ylabel("observed" + _unit(unit))
    ax.set_title(f"{title}\nn = {len(y)}", fontsize=9.5)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="upper left", frameon=True, framealpha=0.9)
    return _save(fig, path)
