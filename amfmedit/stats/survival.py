"""Survival metrics of a risk score, with every bootstrap resample at once.

Point estimates come from scikit-survival (``sksurv.metrics``; Pölsterl 2020, JMLR 21:212):

- Harrell's C-index (``concordance_index_censored``; Harrell et al. 1982, JAMA 247:2543);
- Uno's C-index (``concordance_index_ipcw``; Uno et al. 2011, Stat Med 30:1105), truncated at the
  last horizon ``tau``, inverse-probability-of-censoring weights (IPCW) from the Kaplan-Meier
  estimate of the censoring distribution on the training split;
- the cumulative/dynamic time-dependent AUC at each horizon (``cumulative_dynamic_auc``;
  Uno et al. 2007, JASA 102:1197; Hung & Chiang 2010): cases are events by ``t``, controls are
  patients still event-free after ``t``; a patient censored before ``t`` is neither;
- the IPCW Brier score at each horizon and the integrated Brier score (``brier_score``,
  ``integrated_brier_score``; Graf et al. 1999, Stat Med 18:2529) of the survival probabilities
  ``S(t | x) = exp(-H0(t) exp(risk))``, ``H0`` the Breslow baseline cumulative hazard fitted on the
  training split (``sksurv.linear_model.coxph.BreslowEstimator``).

Bootstrap replicates: a resample is a count vector ``w`` (how often each test row was drawn;
:func:`amfmedit.stats.bootstrap.stratified_counts`, stratified by event), and every metric above
is a ratio of sums over rows or pairs of rows of the test split, so a resample's value is the same
ratio with the pair (i, j) counted ``w_i w_j`` times: for B resamples at once the pair sums are
matrix products ``W @ K`` (:class:`Resampler`). The IPCW weights and the baseline hazard stay
those of the training split (the test rows are resampled, not the model or the censoring
estimate). ``tests/stats/test_survival_metrics.py`` checks each replicate against scikit-survival
on the explicitly resampled rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TIED_TOL = 1e-8  # scikit-survival's tolerance for tied risk scores
IBS_POINTS = 50  # time points of the integrated Brier score's grid


def surv(time, event):
    """scikit-survival's structured outcome array from (N,) times and (N,) 0/1 events."""
    from sksurv.util import Surv

    return Surv.from_arrays(np.asarray(event, dtype=bool), np.asarray(time, dtype=np.float64))


# ---------------------------------------------------------------------------------------------- baseline


@dataclass(frozen=True)
class Baseline:
    """Breslow's baseline cumulative hazard H0, a right-continuous step function (``times`` ascending)."""

    times: np.ndarray  # (K,) distinct times of the training split (H0 steps up at the event times)
    cumhaz: np.ndarray  # (K,) H0 at each

    def at(self, t) -> np.ndarray:
        """H0 at times ``t`` (0 before the first event time, the last value after the last)."""
        idx = np.searchsorted(self.times, np.asarray(t, dtype=np.float64), side="right") - 1
        return np.where(idx >= 0, self.cumhaz[np.clip(idx, 0, None)], 0.0) if len(self.times) else \
            np.zeros(np.shape(t))

    def survival(self, risk, times) -> np.ndarray:
        """(N, T) survival probabilities S(t | x) = exp(-H0(t) exp(risk)) of (N,) risk scores."""
        risk = np.asarray(risk, dtype=np.float64).reshape(-1)
        return np.exp(-np.exp(risk)[:, None] * self.at(times)[None, :])

    def to_dict(self) -> dict:
        return {"times": self.times.tolist(), "cumhaz": self.cumhaz.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Baseline":
        return cls(np.asarray(d["times"], dtype=np.float64), np.asarray(d["cumhaz"], dtype=np.float64))


def breslow(risk, time, event) -> Baseline:
    """The Breslow estimate of H0 from (N,) risk scores, times and events (a training split)."""
    from sksurv.linear_model.coxph import BreslowEstimator

    est = BreslowEstimator().fit(np.asarray(risk, dtype=np.float64).reshape(-1), np.asarray(event, dtype=bool),
                                 np.asarray(time, dtype=np.float64))
    step = est.cum_baseline_hazard_
    return Baseline(np.asarray(step.x, dtype=np.float64), np.asarray(step.y, dtype=np.float64))


# ---------------------------------------------------------------------------------------------- points


def harrell_c(time, event, risk) -> float:
    """Harrell's C of (N,) risk scores (higher = earlier event); NaN without a comparable pair."""
    from sksurv.metrics import concordance_index_censored

    event = np.asarray(event, dtype=bool)
    if not event.any() or len(np.unique(time)) < 2:
        return math.nan
    try:
        return float(concordance_index_censored(event, np.asarray(time, dtype=np.float64),
                                                np.asarray(risk, dtype=np.float64).reshape(-1))[0])
    except Exception:  # noqa: BLE001 - sksurv's "no comparable pairs": undefined
        return math.nan


def ibs_grid(time, horizons) -> np.ndarray:
    """The integrated Brier score's time points: from the first observed test time to the last horizon."""
    return np.linspace(float(np.min(time)), float(max(horizons)), IBS_POINTS)


def point_metrics(train, time, event, risk, horizons, baseline: Baseline, grid=None) -> dict[str, float]:
    """Every survival metric of one risk score on the test rows (scikit-survival).

    ``train``: :func:`surv` of the training split (the censoring distribution for IPCW);
    ``horizons``: ascending times within the test follow-up. Keys: ``c_index`` (Harrell),
    ``c_uno`` (truncated at the last horizon), ``auc@<h>``, ``brier@<h>`` and ``ibs`` (over ``grid``,
    default :func:`ibs_grid` of these rows).
    """
    from sksurv.metrics import brier_score, concordance_index_ipcw, cumulative_dynamic_auc, integrated_brier_score

    risk = np.asarray(risk, dtype=np.float64).reshape(-1)
    test = surv(time, event)
    horizons = np.asarray(horizons, dtype=np.float64)
    out = {"c_index": harrell_c(time, event, risk),
           "c_uno": float(concordance_index_ipcw(train, test, risk, tau=float(horizons[-1]))[0])}
    auc, _ = cumulative_dynamic_auc(train, test, risk, horizons)
    _, brier = brier_score(train, test, baseline.survival(risk, horizons), horizons)
    for h, a, b in zip(horizons, auc, brier):
        out[f"auc@{h:g}"], out[f"brier@{h:g}"] = float(a), float(b)
    grid = ibs_grid(time, horizons) if grid is None else np.asarray(grid, dtype=np.float64)
    out["ibs"] = float(integrated_brier_score(train, test, baseline.survival(risk, grid), grid))
    return out


def metric_keys(horizons) -> list[str]:
    return ["c_index", "c_uno", *(f"auc@{h:g}" for h in horizons), *(f"brier@{h:g}" for h in horizons), "ibs"]


# ---------------------------------------------------------------------------------------------- resamples


class Resampler:
    """The metrics of :func:`point_metrics` for every resample ``W`` (B, N) at once.

    Built once per test split (times, events, horizons, the training split's censoring
    distribution); :meth:`replicates` then takes one model's risk scores and baseline.
    """

    def __init__(self, time, event, W: np.ndarray, *, train=None, horizons=()) -> None:
        self.time = np.asarray(time, dtype=np.float64)
        self.event = np.asarray(event, dtype=bool)
        self.horizons = np.asarray(horizons, dtype=np.float64)
        self.train = train
        self.W = np.asarray(W, dtype=np.float32)
        self.n = self.W.sum(axis=1, dtype=np.float64)
        self.events = np.flatnonzero(self.event)
        te = self.time[self.events][:, None]
        # Harrell's comparable pairs (event i, row j): t_j > t_i, or t_j = t_i with j censored
        self.comparable = (self.time[None, :] > te) | ((self.time[None, :] == te) & ~self.event[None, :])
        self.comp_counts = self._pair_sums(self.comparable)  # (B, E): sum_j w_j comparable(i, j)
        self._weights = None

    def _censoring(self):
        """IPCW pieces from the training split's censoring distribution (computed once, when first needed)."""
        if self._weights is None:
            from sksurv.nonparametric import CensoringDistributionEstimator

            if self.train is None or not len(self.horizons):
                raise ValueError("Uno's C, the time-dependent AUC and the Brier scores need train= and horizons=")
            cens = CensoringDistributionEstimator().fit(self.train)

            def inverse(t):
                g = cens.predict_proba(np.asarray(t, dtype=np.float64))
                return np.where(g > 0, 1.0 / np.where(g > 0, g, 1.0), 0.0)

            grid = ibs_grid(self.time, self.horizons)
            self._weights = {"ipcw": cens.predict_ipcw(surv(self.time, self.event)),  # 1/G(t_i) events, 0 censored
                             "y": inverse(self.time), "h": inverse(self.horizons), "grid": grid,
                             "g_grid": inverse(grid)}
        return self._weights

    @property
    def grid(self) -> np.ndarray:
        return self._censoring()["grid"]

    def _pair_sums(self, pairs: np.ndarray) -> np.ndarray:
        """(B, E) = W @ pairs.T: each resample's weighted sum over j for every event row i."""
        return self.W @ np.ascontiguousarray(pairs.T, dtype=np.float32)

    @staticmethod
    def _concordance(r_i: np.ndarray, r: np.ndarray) -> np.ndarray:
        """(I, N): 1 where row i's risk is above row j's, 0.5 for tied risks, else 0."""
        diff = r_i[:, None] - r[None, :]
        return np.where(np.abs(diff) <= TIED_TOL, 0.5, (diff > 0).astype(np.float64))

    def replicates(self, risk, baseline: Baseline, which: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """(B,) replicates of every metric (``which``: a subset, e.g. ``("c_index",)`` for a probe)."""
        r = np.asarray(risk, dtype=np.float64).reshape(-1)
        W, out = self.W, {}
        want = set(which) if which is not None else None
        if want is not None and want <= {"c_index"}:
            conc = self._pair_sums(self._concordance(r[self.events], r) * self.comparable)
            w_ev = W[:, self.events].astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                return {"c_index": (w_ev * conc).sum(axis=1) / (w_ev * self.comp_counts).sum(axis=1)}
        cw = self._censoring()
        ev = self.events
        k = self._concordance(r[ev], r) * self.comparable
        conc = self._pair_sums(k)  # (B, E)
        w_ev = W[:, ev].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["c_index"] = (w_ev * conc).sum(axis=1) / (w_ev * self.comp_counts).sum(axis=1)
            if want is None or "c_uno" in want:
                tau = self.horizons[-1]
                uno_w = np.where(self.time[ev] < tau, cw['ipcw'][ev] ** 2, 0.0)
                out["c_uno"] = (w_ev * uno_w * conc).sum(axis=1) / (w_ev * uno_w * self.comp_counts).sum(axis=1)
            if want is not None and want <= {"c_index", "c_uno"}:
                return {m: out[m] for m in want}
            for h in self.horizons:
                cases = np.flatnonzero(self.event & (self.time <= h))
                controls = (self.time > h).astype(np.float64)
                kk = self._concordance(r[cases], r) * controls[None, :]
                wc = W[:, cases].astype(np.float64) * cw['ipcw'][cases][None, :]
                num = (wc * self._pair_sums(kk)).sum(axis=1)
                out[f"auc@{h:g}"] = num / (wc.sum(axis=1) * (W @ controls.astype(np.float32)))
            s_h = baseline.survival(r, self.horizons)  # (N, H)
            for i, h in enumerate(self.horizons):
                out[f"brier@{h:g}"] = (W @ self._brier_terms(s_h[:, i], h, cw['h'][i]).astype(np.float32)) / self.n
            grid = cw["grid"]
            s_grid = baseline.survival(r, grid)
            terms = np.stack([self._brier_terms(s_grid[:, i], t, cw["g_grid"][i]) for i, t in enumerate(grid)],
                             axis=1)  # (N, G)
            per_row = np.trapezoid(terms, grid, axis=1) / (grid[-1] - grid[0])
            out["ibs"] = (W @ per_row.astype(np.float32)) / self.n
        return {m: v for m, v in out.items() if want is None or m in want}

    def _brier_terms(self, s: np.ndarray, t: float, inv_g_t: float) -> np.ndarray:
        """(N,) each row's term of the IPCW Brier score at ``t`` (Graf et al. 1999): an event by ``t``
        weighs S^2 / G(t_i), a row still event-free after ``t`` (1 - S)^2 / G(t), a row censored
        before ``t`` nothing (its weight goes to the others through G)."""
        case = self.event & (self.time <= t)
        control = self.time > t
        inv_g_y = self._censoring()["y"]
        return np.where(case, s ** 2 * inv_g_y, 0.0) + np.where(control, (1.0 - s) ** 2 * inv_g_t, 0.0)


# ---------------------------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class GroupCalibration:
    """Predicted against Kaplan-Meier observed event probability by ``t``, per risk group."""

    horizon: float
    predicted: np.ndarray  # (G,) mean predicted 1 - S(t | x)
    observed: np.ndarray  # (G,) 1 - KM(t)
    low: np.ndarray  # (G,) 95% interval of the observed (log-log)
    high: np.ndarray
    counts: np.ndarray  # (G,) rows per group

    @property
    def mean_abs_error(self) -> float:
        """Row-weighted mean |predicted - observed| over the groups."""
        ok = np.isfinite(self.observed)
        return float(np.average(np.abs(self.predicted[ok] - self.observed[ok]), weights=self.counts[ok])) \
            if ok.any() else math.nan


def km_at(time, event, t: float) -> tuple[float, float, float]:
    """Kaplan-Meier S(t) with its 95% log-log interval; NaN beyond the last observed time (nobody is
    followed there, so patients censored earlier are not taken as event-free)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    time, event = np.asarray(time, dtype=np.float64), np.asarray(event, dtype=bool)
    if len(time) == 0 or t > time.max():
        return math.nan, math.nan, math.nan
    if not event.any():
        return 1.0, math.nan, math.nan
    x, s, (lo, hi) = kaplan_meier_estimator(event, time, conf_type="log-log")
    i = np.searchsorted(x, t, side="right") - 1
    if i < 0:
        return 1.0, 1.0, 1.0
    return float(s[i]), float(lo[i]), float(hi[i])


def calibration_by_group(time, event, surv_h: np.ndarray, horizons, n_groups: int = 10) -> list[GroupCalibration]:
    """Per horizon: rows grouped by predicted risk (deciles by default, at least 5 rows a group), mean
    predicted event probability against 1 - Kaplan-Meier (censoring handled by KM, so a patient
    censored before the horizon is never counted as event-free)."""
    time, event = np.asarray(time, dtype=np.float64), np.asarray(event, dtype=bool)
    k = int(max(1, min(n_groups, len(time) // 5)))
    out = []
    for i, h in enumerate(horizons):
        p = 1.0 - surv_h[:, i]
        groups = np.array_split(np.argsort(p, kind="stable"), k)
        pred, obs, lo, hi = [], [], [], []
        for g in groups:
            s, s_lo, s_hi = km_at(time[g], event[g], h)
            pred.append(float(p[g].mean()))
            obs.append(1.0 - s)
            lo.append(1.0 - s_hi)
            hi.append(1.0 - s_lo)
        out.append(GroupCalibration(float(h), np.array(pred), np.array(obs), np.array(lo), np.array(hi),
                                    np.array([len(g) for g in groups])))
    return out


def risk_groups(risk, cuts) -> np.ndarray:
    """(N,) group index 0..len(cuts) of each risk score (0 = lowest risk)."""
    return np.searchsorted(np.asarray(cuts, dtype=np.float64), np.asarray(risk, dtype=np.float64).reshape(-1),
                           side="right")


def group_cuts(risk, n_groups: int = 3) -> list[float]:
    """Cut points splitting ``risk`` (a validation split's scores) into ``n_groups`` equal-sized groups."""
    return [float(q) for q in np.quantile(np.asarray(risk, dtype=np.float64), np.arange(1, n_groups) / n_groups)]


def logrank(time, event, groups) -> tuple[float, float, int]:
    """Log-rank test across the groups present: (chi-square, p-value, degrees of freedom);
    NaN with fewer than two groups (``sksurv.compare.compare_survival``)."""
    from sksurv.compare import compare_survival

    present = np.unique(groups)
    if len(present) < 2 or not np.asarray(event, dtype=bool).any():
        return math.nan, math.nan, 0
    chisq, p = compare_survival(surv(time, event), np.asarray(groups))
    return float(chisq), float(p), int(len(present) - 1)
