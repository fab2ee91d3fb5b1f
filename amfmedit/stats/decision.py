"""Decision curve analysis: net benefit against threshold probability (Vickers & Elkin 2006).

Vickers AJ, Elkin EB (2006), "Decision curve analysis: a novel method for evaluating
prediction models", Medical Decision Making 26(6):565-574, eq. for net benefit:

    NB(p_t) = TP(p_t) / n - FP(p_t) / n * p_t / (1 - p_t)

where a patient is treated when the predicted risk is ``>= p_t``. The odds ``p_t / (1 - p_t)``
is the harm of an unnecessary treatment relative to the benefit of a necessary one that a
clinician choosing ``p_t`` implies. References: *treat all* ``NB = prev - (1 - prev) p_t /
(1 - p_t)``, *treat none* ``NB = 0``. A model is useful at ``p_t`` where its curve lies above
both. Net benefit needs calibrated risks (it reads ``p`` as a probability), so draw it from
temperature-scaled probabilities where available.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)  # (99,) 0.01 .. 0.99


def net_benefit(y, p, thresholds=DEFAULT_THRESHOLDS) -> np.ndarray:
    """Net benefit (T,) of treating when ``p >= p_t``, for each ``p_t`` in ``thresholds`` (T,), 0 < p_t < 1.

    Args:
        y: (N,) 0/1 outcomes; p: (N,) predicted risk of the outcome.
    """
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    if np.any((t <= 0) | (t >= 1)):
        raise ValueError("threshold probabilities must lie in (0, 1)")
    treated = p[None, :] >= t[:, None]  # (T, N)
    tp = (treated & y[None, :]).sum(axis=1)
    fp = (treated & ~y[None, :]).sum(axis=1)
    n = len(y)
    return tp / n - fp / n * t / (1.0 - t)


def treat_all(y, thresholds=DEFAULT_THRESHOLDS) -> np.ndarray:
    """Net benefit (T,) of treating everyone: ``prev - (1 - prev) p_t / (1 - p_t)``."""
    prev = float(np.mean(np.asarray(y).astype(bool)))
    t = np.asarray(thresholds, dtype=np.float64)
    return prev - (1.0 - prev) * t / (1.0 - t)


@dataclass(frozen=True)
class DecisionCurve:
    """Net benefit per model and the two references, over ``thresholds`` (T,)."""

    thresholds: np.ndarray
    models: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (T,)
    treat_all: np.ndarray | None = None
    treat_none: np.ndarray | None = None
    prevalence: float = float("nan")
    n: int = 0

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds.tolist(), "models": {k: v.tolist() for k, v in self.models.items()},
                "treat_all": self.treat_all.tolist(), "treat_none": self.treat_none.tolist(),
                "prevalence": self.prevalence, "n": self.n}


def decision_curve(y, risks: dict[str, np.ndarray], thresholds=DEFAULT_THRESHOLDS) -> DecisionCurve:
    """Decision curves for several models on the same rows.

    Args:
        y: (N,) 0/1; risks: display name -> (N,) predicted risk.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    return DecisionCurve(t, {name: net_benefit(y, p, t) for name, p in risks.items()}, treat_all(y, t),
                         np.zeros_like(t), float(np.mean(np.asarray(y).astype(bool))), int(len(y)))
