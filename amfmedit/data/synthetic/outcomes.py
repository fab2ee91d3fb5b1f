"""Outcomes of the synthetic OL3I cohort beyond its 1- and 5-year labels, from the same linear predictor.

The OL3I generator's risk model has a tabular and an image part, ``eta = tab + img``
(:func:`amfmedit.data.synthetic.ol3i._logit_terms`, scaled by the modality strengths). With
``outcome`` other than ``label`` it also writes, drawn from its own random stream (so the labels,
features and images of a seed are the same whatever the outcome):

- ``time_to_event``: a proportional-hazards time to ischaemic heart disease, Weibull baseline,
  ``S(t | x) = exp(-lambda t^k exp(eta))`` with shape ``k`` = :data:`WEIBULL_SHAPE` and ``lambda``
  set so that the mean 1-year risk is the cohort's ``prevalence``; censored by loss to follow-up
  (exponential, ``censoring`` per year, independent of everything else) and by the end of the
  study (uniform staggered entry: administrative follow-up between :data:`FOLLOW_UP` years).
  Columns ``time_to_ihd_years`` and ``ihd_event``; the oracle is the C-index of the true ``eta``.
- ``continuous``: a cardiometabolic score ``50 + 10 z``, ``z = sqrt(R2) * std(eta) + sqrt(1 - R2) * noise``
  with :data:`R2` the share of variance the features and image explain; column
  ``cardiometabolic_score``; the oracle is the RMSE (and R²) of the true mean ``E[y | x]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from amfmedit.errors import UserError

OUTCOMES = ("label", "time_to_event", "continuous")
WEIBULL_SHAPE = 1.2  # hazard rising slowly with time since the scan
FOLLOW_UP = (3.0, 8.0)  # years of administrative follow-up (uniform staggered entry)
R2 = 0.6  # continuous outcome: variance share of E[y | x]
SCORE_MEAN, SCORE_SD = 50.0, 10.0
TIME_COLUMN, EVENT_COLUMN, SCORE_COLUMN = "time_to_ihd_years", "ihd_event", "cardiometabolic_score"
_STREAM = 0x5A1  # the outcome's random stream, apart from the generator's


@dataclass
class Drawn:
    """An outcome drawn for every generated patient."""

    columns: dict[str, np.ndarray]  # clinical_data.csv columns
    record: dict  # provenance: how it was drawn
    finish: Callable  # (rows kept (patient indices), split (N,)) -> (truth (N,), oracle dict)
    truth_name: str = "risk"
    extra: dict = field(default_factory=dict)


def check(outcome: str, censoring: float) -> None:
    if outcome not in OUTCOMES:
        raise UserError(f"--outcome {outcome}: use one of {', '.join(OUTCOMES)}")
    if not (math.isfinite(censoring) and censoring >= 0):
        raise UserError(f"--censoring {censoring}: a yearly rate of loss to follow-up, a finite number >= 0")


def _scale_for(eta: np.ndarray, prevalence: float) -> float:
    """log lambda such that the mean 1-year risk 1 - exp(-lambda exp(eta)) equals ``prevalence`` (bisection)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        risk = -np.expm1(-np.exp(mid + eta))
        lo, hi = (mid, hi) if risk.mean() < prevalence else (lo, mid)
    return (lo + hi) / 2


def _harrell(time, event, score) -> float | None:
    from sksurv.metrics import concordance_index_censored

    if not event.any() or len(time) < 2:
        return None
    return float(concordance_index_censored(event.astype(bool), time, score)[0])


def time_to_event(tab: np.ndarray, img: np.ndarray, *, seed: int, prevalence: float, censoring: float) -> Drawn:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM]))
    eta = tab + img
    eta = eta - eta.mean()
    log_lam = _scale_for(eta, prevalence)
    n = len(eta)
    t_event = (-np.log(rng.random(n)) / np.exp(log_lam + eta)) ** (1.0 / WEIBULL_SHAPE)
    t_loss = rng.exponential(1.0 / censoring, n) if censoring > 0 else np.full(n, np.inf)
    t_end = rng.uniform(*FOLLOW_UP, n)
    time = np.round(np.minimum.reduce([t_event, t_loss, t_end]), 4)
    time = np.maximum(time, 1e-4)  # a day-scale floor: no zero times after rounding
    event = (t_event <= np.minimum(t_loss, t_end)).astype(np.int64)
    record = {"outcome": "time_to_event", "time_column": TIME_COLUMN, "event_column": EVENT_COLUMN,
              "time_unit": "years",
              "model": "S(t|x) = exp(-lambda t^k exp(eta)), eta = tabular part + image part of the risk logit (centred)",
              "weibull_shape": WEIBULL_SHAPE, "log_lambda": log_lam,
              "censoring": {"loss_to_follow_up_per_year": censoring, "administrative_years": list(FOLLOW_UP)},
              "events": int(event.sum()), "censored": int((1 - event).sum()),
              "mean_1y_risk": float(-np.expm1(-np.exp(log_lam + eta)).mean())}

    def finish(rows: np.ndarray, split: np.ndarray):
        e, t, score = event[rows] == 1, time[rows], eta[rows]
        oracle = {"metric": "c_index",
                  **{s: _harrell(t[split == s], e[split == s], score[split == s]) for s in ("train", "val", "test")},
                  "all": _harrell(t, e, score),
                  "tabular_only": _harrell(t, e, tab[rows]), "image_only": _harrell(t, e, img[rows])}
        return score, oracle

    return Drawn({TIME_COLUMN: time, EVENT_COLUMN: event}, record, finish, "log_hazard_ratio")


def continuous(tab: np.ndarray, img: np.ndarray, *, seed: int, prevalence: float, censoring: float) -> Drawn:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM]))
    eta = tab + img
    mu = SCORE_MEAN + SCORE_SD * math.sqrt(R2) * (eta - eta.mean()) / eta.std()
    noise_sd = SCORE_SD * math.sqrt(1.0 - R2)
    y = np.round(mu + noise_sd * rng.normal(size=len(eta)), 2)
    record = {"outcome": "continuous", "column": SCORE_COLUMN,
              "model": "y = 50 + 10 (sqrt(R2) z(eta) + sqrt(1 - R2) noise), eta = tabular + image part of the risk logit",
              "r2": R2, "noise_sd": noise_sd}

    def finish(rows: np.ndarray, split: np.ndarray):
        yy, m = y[rows], mu[rows]

        def rmse(mask):
            return float(np.sqrt(np.mean((yy[mask] - m[mask]) ** 2))) if mask.any() else None

        def r2(mask):
            v = yy[mask]
            return float(1 - np.sum((v - m[mask]) ** 2) / np.sum((v - v.mean()) ** 2)) if mask.sum() > 1 else None

        def part_rmse(part):  # the best linear use of one modality's part alone
            c = np.corrcoef(part[rows], yy)[0, 1]
            return float(yy.std() * math.sqrt(max(0.0, 1 - c * c)))

        everything = np.ones(len(rows), bool)
        oracle = {"metric": "rmse", **{s: rmse(split == s) for s in ("train", "val", "test")}, "all": rmse(everything),
                  "r2": {s: r2(split == s) for s in ("train", "val", "test")},
                  "tabular_only": part_rmse(tab), "image_only": part_rmse(img)}
        return m, oracle

    return Drawn({SCORE_COLUMN: y}, record, finish, "expected_value")


DRAWERS = {"time_to_event": time_to_event, "continuous": continuous}


def draw(outcome: str, tab: np.ndarray, img: np.ndarray, **kw) -> Drawn | None:
    """The outcome ``outcome`` for every patient (None for ``label``: the generator's own labels only)."""
    drawer = DRAWERS.get(outcome)
    return drawer(tab, img, **kw) if drawer is not None else None
